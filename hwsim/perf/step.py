"""The cost of one engine step of one model replica: :class:`StepCost`.

``StepCost(cluster, model, deployment, pool)`` resolves, once, every operator of a forward
pass on the busiest device of a replica (an operator plan; see :mod:`hwsim.perf.step_kernel`).
Calling it with a :class:`~hwsim.perf.batch.Batch` evaluates the plan in one compiled pass.

What one step runs, per device (attention TP ``tp``, attention DP ``attention_dp``, expert
parallel ``ep`` with ``moe_tp`` devices per expert, ``pp`` stages; the busiest DP rank and the
busiest EP rank set the time):

* head: embedding lookup; final norm, LM head (vocabulary-parallel over ``tp``) and sampling
  for the tokens that need logits;
* every layer: norm, attention input projections (``tp``-split), attention (prefill chunks
  FlashAttention-style, decode KV-read bound; MLA absorbed in decode), output projection,
  TP all-reduce when ``tp > 1``;
* dense layers: gated FFN split over ``tp`` and a TP all-reduce;
* MoE layers: router, EP dispatch, grouped expert GEMMs (contiguous for prefill, masked for
  decode-only steps) over the local experts, shared experts (``tp``-split), EP combine, and
  an expert-TP all-reduce when ``moe_tp > 1``;
* speculative decoding: decode attention verifies ``1 + tokens`` positions per sequence and
  the draft (MTP) module runs ``tokens`` times on the decode sequences.

Routing is uniform in expectation unless ``imbalance`` (busiest EP rank load / mean) is
given; the serving simulator passes per-step loads. Communication rows are alpha-beta lines
fitted on :class:`~hwsim.perf.collectives.Collectives` for this pool's groups and traffic
pattern (two evaluations: exact for an alpha-beta model with a fixed pattern).

Overlap: ``none`` adds compute and communication; ``two-microbatch`` costs every row on half
the batch (the smaller GEMMs' efficiency loss is paid) and runs each layer as DeepSeek's dual
micro-batch schedule, four stages of one micro-batch's compute beside the other's dispatch or
combine, with the SMs that DeepEP's normal-mode kernels hold taken from the compute beside
them (:func:`~hwsim.perf.step_kernel.layer_times`); ``fine-grained`` hides communication
behind compute up to ``FINE_GRAINED_OVERLAP`` (an assumption in the range Comet/FlashMoE
report, not yet calibrated).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.perf import step_kernel as sk
from hwsim.perf.batch import Batch
from hwsim.perf.collectives import Collectives
from hwsim.perf.plan import PlanBuilder, PoolGroups, gather_token_bytes, uniform_dispatch
from hwsim.perf.power import cap_slowdown, device_power_w, utilisation
from hwsim.perf.types import CommCost, OpCost
from hwsim.spec.cluster import Cluster
from hwsim.spec.deployment import Deployment, Pool
from hwsim.spec.dtypes import bytes_per_elem
from hwsim.spec.model import Model

FINE_GRAINED_OVERLAP = 0.9
"""Share of the shorter of compute and communication hidden by fine-grained overlap (assumed)."""

_OVERLAP_CODES = {"none": 0, "two-microbatch": 1, "fine-grained": 2}


@dataclass(frozen=True, slots=True, kw_only=True)
class OpRecord:
    """One operator of a step: its cost per occurrence and how often it runs per step."""

    group: str
    count: float
    cost: OpCost
    communication: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class StepBreakdown:
    """Cost of one step on the busiest device of a replica.

    ``time_s`` is the step's latency through all pipeline stages; ``interval_s`` the time
    between steps when ``pp`` micro-batches are in flight (``time_s / pp``). The category
    times are the raw sums of operator times by what bounds each operator; ``hidden_s`` is the
    part of them that overlap hid. ``flop``, ``hbm_bytes`` and ``comm_bytes`` are per device;
    ``energy_j`` and ``power_w`` too (multiply by the pool's devices for the replica).
    """

    time_s: float
    interval_s: float
    compute_s: float
    memory_s: float
    communication_s: float
    overhead_s: float
    hidden_s: float
    flop: float
    hbm_bytes: float
    comm_bytes: float
    power_w: float
    energy_j: float
    tokens_in: int
    tokens_out: float
    ops: tuple[OpRecord, ...]

    @property
    def bound(self) -> str:
        legs = {"compute": self.compute_s, "memory": self.memory_s,
                "communication": self.communication_s, "overhead": self.overhead_s}
        return max(legs, key=lambda k: legs[k])


class StepCost:
    """How long one engine step of ``pool`` takes on ``cluster`` (see the module docstring).

    ``cap_w`` is a per-device power cap: compute-bound time stretches when it binds.
    """

    def __init__(self, cluster: Cluster, model: Model, deployment: Deployment, pool: Pool, *,
                 imbalance: float | None = None, collectives: Collectives | None = None,
                 cap_w: float | None = None) -> None:
        self.cluster, self.model, self.deployment, self.pool = cluster, model, deployment, pool
        self.imbalance = imbalance
        self.cap_w = cap_w
        groups = PoolGroups.of(cluster, pool)
        self.device = groups.device
        self.groups = groups
        self.collectives = collectives or Collectives(cluster)
        self.plan = PlanBuilder(cluster, model, deployment, pool, groups, self.collectives).build()
        self._overlap = _OVERLAP_CODES[deployment.overlap]
        self._spec = deployment.speculative
        self._table = self.plan.table
        self._count_cache = (self.plan.counts_for(0), self.plan.counts_for(self._spec.tokens))
        moe = model.moe
        self._k_real = moe.real_experts_per_token if moe is not None else 0.0
        self._slots = moe.num_experts + deployment.experts.redundant if moe is not None else 0
        par = pool.parallelism
        self._scalars = (par.attention_dp, par.tp, par.ep, self._k_real, self._slots,
                         -1.0 if imbalance is None else float(imbalance), self._overlap)
        self._args = self.plan.args
        self._out = np.zeros((len(self.plan.names), 6))
        self._weight_cache: dict[tuple[bool, bool], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    # -- evaluation -----------------------------------------------------------------------
    def _evaluate(self, batch: Batch) -> tuple[np.ndarray, float]:
        out = np.empty_like(self._out)
        return out, self._fill(out, batch)

    def _fill(self, out: np.ndarray, batch: Batch, imbalance_now: float | None = None) -> float:
        decoding = batch.decode_kv_tokens.shape[0] > 0
        draft = self._spec.tokens if decoding else 0
        dp, tp, ep, k_real, slots, imbalance, overlap = self._scalars
        if imbalance_now is not None:
            imbalance = float(imbalance_now)
        return float(sk.step_total(
            out, self._table, self._args, self._count_cache[1 if draft else 0], batch.prefill_new_tokens,
            batch.prefill_cached_tokens, batch.prefill_completes, batch.decode_kv_tokens, dp, tp, ep, 1 + draft,
            k_real, slots, imbalance, overlap, FINE_GRAINED_OVERLAP, draft))

    def _counts(self, batch: Batch) -> np.ndarray:
        return self._count_cache[1 if self._spec.tokens and batch.num_decode else 0]

    def _split(self, batch: Batch) -> bool:
        return self._overlap == 1 and batch.num_prefill + batch.num_decode >= 2

    def time_s(self, batch: Batch, imbalance: float | None = None) -> float:
        """Latency of one step (fast path: no breakdown objects).

        ``imbalance`` (busiest EP rank load / mean) overrides the construction-time value for
        this step: the simulator passes the imbalance of the step's sampled routing.
        """
        if batch.decode_kv_tokens.shape[0] == 0 and batch.is_empty:
            return 0.0
        total = self._fill(self._out, batch, imbalance)
        if self.cap_w is None:
            return total
        return total * self._stretch(self._out, batch, total)[0]

    def _weights(self, batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(repetitions of each row in the step, weights of communication rows, weights of work
        rows per pipeline stage): cached per (micro-batch split, draft) case."""
        key = (self._split(batch), bool(self._spec.tokens and batch.num_decode))
        cached = self._weight_cache.get(key)
        if cached is None:
            p = self.plan
            reps = self._counts(batch)[p.groups] * p.mult * (2.0 if key[0] else 1.0)
            comm = (p.comm == 1).astype(float)
            cached = self._weight_cache[key] = (reps, reps * comm, reps * (1.0 - comm) / self.pool.parallelism.pp)
        return cached

    def _per_device(self, out: np.ndarray, batch: Batch) -> tuple[np.ndarray, float, float, float]:
        """Repetitions of each row, and per-device FLOP, HBM bytes and sent bytes (one stage)."""
        reps, comm_w, work_w = self._weights(batch)
        sent = float(out[:, 2] @ comm_w) / self.pool.parallelism.pp
        return reps, float(out[:, 1] @ work_w), float(out[:, 2] @ work_w), sent

    def _utilisation(self, out: np.ndarray, batch: Batch, time_s: float) -> tuple[float, float]:
        _, flop, hbm, _ = self._per_device(out, batch)
        return utilisation(self.device, time_s=time_s, flop=flop, bytes_moved=hbm,
                           dtype=self.deployment.dtypes.activations)

    def last_activity(self, batch: Batch, time_s: float) -> tuple[float, float]:
        """(device power in W, communication seconds before overlap) of the step last costed
        by :meth:`time_s` for ``batch`` (which must be the same batch)."""
        comm_s = float(self._out[:, 0] @ self._weights(batch)[1])
        if time_s <= 0:
            return 0.0, comm_s
        u_c, u_m = self._utilisation(self._out, batch, time_s)
        return device_power_w(self.device, compute_util=u_c, memory_util=u_m, cap_w=self.cap_w), comm_s

    def _stretch(self, out: np.ndarray, batch: Batch, total: float) -> tuple[float, float]:
        """(time stretch under the power cap, device power) for a step of ``total`` seconds."""
        u_c, u_m = self._utilisation(out, batch, total)
        stretch = cap_slowdown(self.device, self.cap_w, compute_util=u_c, memory_util=u_m) if self.cap_w else 1.0
        power = device_power_w(self.device, compute_util=u_c / stretch, memory_util=u_m / stretch, cap_w=self.cap_w)
        return stretch, power

    def __call__(self, batch: Batch) -> StepBreakdown:
        """Full breakdown of one step."""
        if batch.is_empty:
            raise ValueError("an empty batch has no step cost")
        out, total = self._evaluate(batch)
        p = self.plan
        reps, flop, hbm, comm_bytes = self._per_device(out, batch)
        stretch, power = self._stretch(out, batch, total)
        time_s = total * stretch
        records, cats = [], {"compute": 0.0, "memory": 0.0, "communication": 0.0, "overhead": 0.0}
        for i, name in enumerate(p.names):
            if reps[i] == 0 or out[i, 0] == 0.0:
                continue
            cost = OpCost(name=name, time_s=out[i, 0], flop=out[i, 1], bytes_moved=out[i, 2],
                          compute_s=out[i, 3], memory_s=out[i, 4], overhead_s=out[i, 5])
            comm = bool(p.comm[i])
            cats["communication" if comm else cost.bound] += out[i, 0] * reps[i]
            records.append(OpRecord(group=p.group_names[p.groups[i]], count=float(reps[i]), cost=cost,
                                    communication=comm))
        raw = sum(cats.values())
        tokens_out = batch.num_decode * self._spec.tokens_per_step + int(batch.prefill_completes.sum())
        return StepBreakdown(
            time_s=time_s, interval_s=time_s / self.pool.parallelism.pp, compute_s=cats["compute"],
            memory_s=cats["memory"], communication_s=cats["communication"], overhead_s=cats["overhead"],
            hidden_s=max(0.0, raw - total), flop=flop, hbm_bytes=hbm, comm_bytes=comm_bytes, power_w=power,
            energy_j=power * time_s, tokens_in=int(batch.prefill_new_tokens.sum()), tokens_out=tokens_out,
            ops=tuple(records))


def link_traffic(step: StepCost, batch: Batch, *, ep: bool = True) -> dict[tuple[str, str], float]:
    """Bytes each directed link of the cluster carries during one step of ``batch``.

    Sums, over the step's MoE layers, the EP dispatch and combine of the batch's tokens under
    uniform routing (normal mode with prefill, low-latency otherwise; left out with
    ``ep=False``), or their all-gather and reduce-scatter with ``experts.exchange: allgather``
    (whatever the routing, so always counted), and, over all layers, the TP all-reduces; for
    reports (the per-link traffic matrix), not for timing.
    """
    par, model = step.pool.parallelism, step.model
    coll, g = step.collectives, step.groups
    total: dict[tuple[str, str], float] = {}

    def add(cost: CommCost, times: float) -> None:
        for edge, nbytes in cost.link_bytes.items():
            total[edge] = total.get(edge, 0.0) + nbytes * times

    tokens = float(batch.new_tokens)
    h, act = model.hidden_size, bytes_per_elem(step.deployment.dtypes.activations)
    if par.tp > 1:
        per_rank = tokens / par.attention_dp
        add(coll.all_reduce(g.tp, per_rank * h * act), 2 * model.num_layers)
    moe = model.moe
    if moe is not None and par.ep > 1 and step.deployment.experts.exchange == "allgather":
        ranks = list(g.ep)
        add(coll.all_gather(ranks, tokens * gather_token_bytes(model, step.deployment.dtypes)), model.num_moe_layers)
        add(coll.reduce_scatter(ranks, tokens * h * act), model.num_moe_layers)
    elif ep and moe is not None and par.ep > 1:
        ranks = list(g.ep)
        mode = "normal" if batch.num_prefill else "low-latency"
        for combine in (False, True):
            add(uniform_dispatch(coll, ranks, tokens / len(ranks), moe.real_experts_per_token, mode, h * act,
                                 combine=combine, detail=True), model.num_moe_layers)
    return total
