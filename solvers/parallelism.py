"""Parallelism planning: enumerate per-replica configurations, cost them, allocate devices by ILP.

The model (after Melange, Griggs et al. 2024, "Melange: Cost Efficient Large Language Model
Serving by Exploiting GPU Heterogeneity", and the disaggregated-serving planners of
DistServe, Zhong et al. 2024):

1. **Candidates.** For every device type of the cluster, every role (``unified``, or
   ``prefill`` / ``decode`` of a disaggregated deployment), every parallelism
   (``tp`` dividing the attention heads and at most one node, ``attention_dp``, ``ep`` = the
   stage's devices or its ``attention_dp`` groups, ``pp``), batch cap (``max_seqs``) and dtype
   (weights fp8/bf16 where the device has an fp8 peak, KV bf16/fp8) whose weights fit is costed
   *per replica* with the cost model (:mod:`hwsim.perf.estimate`'s steady state: no queueing,
   the trace's mean input and output lengths). Candidates whose TTFT (prefill and unified) and
   TPOT (decode and unified) meet the SLOs are kept for the ILP; all are kept for the Pareto front.
2. **ILP.** Integer replicas ``r_c`` and a selection binary ``x_c`` per candidate; one
   *family* binary per (unified | disaggregated, dtypes) since a deployment has one set of
   dtypes and either a unified pool or a prefill and a decode pool; at most one candidate per
   role (the simulator runs one entry pool and one decode pool). With ``s`` the served request
   rate::

       capacity_prefill:  s <= sum_{c unified or prefill} r_c * rate_c
       capacity_decode:   s <= sum_{c unified or decode}  r_c * rate_c
       device_budget_<t>: sum_{c on type t} r_c * devices_c <= N_t   (and device_budget_total)
       usd_budget:        sum_c r_c * usd_c <= budget                (with --budget)
       layout_<k>_<j>:    a pool on the k-th run of devices fills every earlier run j

   ``goodput``: maximize output tokens/s ``s * output_tokens`` with ``s <= demand`` (the trace's
   rate), then, holding that goodput (``goodput_floor``), minimize the price (lexicographic). ``usd``: ``demand_prefill`` / ``demand_decode`` force
   ``s >= demand`` and the objective is the price (USD/h; devices when the cluster has no
   prices), i.e. USD per million tokens at the demanded rate. The prefill:decode ratio emerges
   from the two capacity rows.
3. The K best *distinct* plans come from re-solving with a no-good cut (``exclude_<k>``) on the
   selected candidates of each plan found.

Assumptions: steady state at mean lengths (the simulator checks queueing and the trace's length
spread); a prefill candidate's TTFT includes one prompt's KV transfer to the next device after
the replica (the decode pool's first device in the usual layout), without link contention;
pools lie on consecutive devices of one type from device 0 (the loader's rule), hence the
``layout`` rows on clusters with several device types.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pulp
from hwsim.solvers.common import SolveReport, solve

from hwsim.errors import HwsimError, InfeasibleError, SpecError
from hwsim.perf.collectives import Collectives
from hwsim.perf.estimate import pool_estimate
from hwsim.spec.cluster import Cluster
from hwsim.spec.deployment import Deployment, Dtypes, Parallelism, Pool, SchedulerLimits
from hwsim.spec.model import Model
from hwsim.spec.sharding import weight_share

__all__ = ["Slo", "Demand", "DeviceType", "Candidate", "PlanPool", "ParallelismPlan", "EnumerationSpace",
           "device_types", "enumerate_candidates", "plan_parallelism", "pareto_front", "OBJECTIVES"]

OBJECTIVES = ("goodput", "usd")
ROLES = ("unified", "prefill", "decode")


@dataclass(frozen=True, slots=True, kw_only=True)
class Slo:
    ttft_s: float
    tpot_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Demand:
    """What the trace asks for: mean prompt and output lengths and the arrival rate."""

    input_tokens: int
    output_tokens: int
    requests_per_s: float

    def __post_init__(self) -> None:
        if self.input_tokens < 1 or self.output_tokens < 1 or not 0 < self.requests_per_s < math.inf:
            raise ValueError("demand needs >= 1 input and output tokens and a positive, finite rate")


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceType:
    """A run of consecutive devices of one type (a pool must stay inside one)."""

    name: str
    first_device: int
    count: int
    per_node: int
    fp8: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class EnumerationSpace:
    """The choices enumerated per device type (defaults: a broad but tractable grid)."""

    tp: tuple[int, ...] = (1, 2, 4, 8)
    pp: tuple[int, ...] = (1, 2)
    seqs_per_rank: tuple[int, ...] = (8, 32, 128)
    prefill_tokens: tuple[int, ...] = (8192, 32768)
    weights: tuple[str, ...] = ("fp8", "bf16")
    kv: tuple[str, ...] = ("bf16", "fp8")
    max_replica_devices: int | None = None
    disaggregated: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """One replica configuration and its steady state (per replica)."""

    index: int
    role: str
    device: str
    first_device: int
    weights: str
    kv: str
    tp: int
    attention_dp: int
    ep: int
    pp: int
    max_seqs: int
    max_batched_tokens: int
    devices: int
    batch: int
    requests_per_s: float
    output_tokens_per_s: float
    ttft_s: float | None
    tpot_s: float | None
    usd_per_s: float | None
    power_w: float
    meets_slo: bool

    @property
    def family(self) -> tuple[str, str, str]:
        return ("unified" if self.role == "unified" else "disaggregated", self.weights, self.kv)

    @property
    def tokens_per_s_per_device(self) -> float:
        return self.output_tokens_per_s / self.devices

    @property
    def tokens_per_s_per_user(self) -> float | None:
        return 1.0 / self.tpot_s if self.tpot_s else None

    @property
    def usd_per_million_tokens(self) -> float | None:
        if self.usd_per_s is None or self.output_tokens_per_s <= 0:
            return None
        return self.usd_per_s / self.output_tokens_per_s * 1e6

    def label(self) -> str:
        cap = f"tokens{self.max_batched_tokens}" if self.role == "prefill" else f"seqs{self.max_seqs}"
        return (f"{self.role} {self.device} tp{self.tp} adp{self.attention_dp} ep{self.ep} pp{self.pp} "
                f"{cap} {self.weights}/{self.kv}")

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanPool:
    candidate: Candidate
    replicas: int

    @property
    def devices(self) -> int:
        return self.replicas * self.candidate.devices


@dataclass(frozen=True, slots=True, kw_only=True)
class ParallelismPlan:
    """A deployment's pools with their predicted steady state, and how the ILP went."""

    rank: int
    objective: str
    pools: tuple[PlanPool, ...]
    demand: Demand
    requests_per_s: float
    report: SolveReport
    cost_report: SolveReport | None = None  # goodput plans: the cheapest plan of that goodput

    @property
    def devices(self) -> int:
        return sum(p.devices for p in self.pools)

    @property
    def output_tokens_per_s(self) -> float:
        return self.requests_per_s * self.demand.output_tokens

    @property
    def usd_per_s(self) -> float | None:
        prices = [p.candidate.usd_per_s for p in self.pools]
        return None if any(x is None for x in prices) else sum(p.replicas * (p.candidate.usd_per_s or 0.0)
                                                                for p in self.pools)

    @property
    def usd_per_million_tokens(self) -> float | None:
        usd = self.usd_per_s
        return None if usd is None or self.output_tokens_per_s <= 0 else usd / self.output_tokens_per_s * 1e6

    @property
    def ttft_s(self) -> float:
        return max((p.candidate.ttft_s or 0.0) for p in self.pools)

    @property
    def tpot_s(self) -> float:
        return max((p.candidate.tpot_s or 0.0) for p in self.pools)

    @property
    def dtypes(self) -> tuple[str, str]:
        c = self.pools[0].candidate
        return c.weights, c.kv

    def layout_gap(self, types: Sequence[DeviceType]) -> str | None:
        """Why the pools cannot lie on consecutive devices from device 0, each inside its own
        device type's run (the loader's layout), or None when they can."""
        pos = 0
        for pool in sorted(self.pools, key=lambda p: p.candidate.first_device):
            c = pool.candidate
            run = next(t for t in types if t.first_device == c.first_device)
            if pos < run.first_device:
                return (f"the {c.role} pool needs {run.name} devices from device {run.first_device}, but the pools "
                        f"before it end at device {pos}: devices {pos}..{run.first_device - 1} would stay idle "
                        "(pools take consecutive devices)")
            if pos + pool.devices > run.first_device + run.count:
                return f"the {c.role} pool does not fit in the {run.name} devices after the pools before it"
            pos += pool.devices
        return None

    def pools_yaml(self, chunked_prefill: int) -> list[dict[str, Any]]:
        """The ``deployment.pools`` list of the plan, in device order, as plain data."""
        out = []
        for pool in sorted(self.pools, key=lambda p: p.candidate.first_device):
            c = pool.candidate
            sched: dict[str, Any] = {"max_seqs": c.max_seqs, "max_batched_tokens": c.max_batched_tokens}
            if c.role == "unified":
                sched["chunked_prefill"] = min(chunked_prefill, c.max_batched_tokens)
            out.append({"name": c.role if c.role != "unified" else "main", "role": c.role, "replicas": pool.replicas,
                        "devices": c.devices,
                        "parallelism": {"tp": c.tp, "attention_dp": c.attention_dp, "ep": c.ep, "pp": c.pp},
                        "scheduler": sched})
        return out

    def patch_set(self, activations: str, chunked_prefill: int) -> dict[str, Any]:
        """The patch (field path -> value) replacing the cluster file's pools and dtypes."""
        w, kv = self.dtypes
        return {"deployment.pools": self.pools_yaml(chunked_prefill),
                "deployment.dtypes": {"weights": w, "activations": activations, "kv": kv}}

    def describe(self) -> str:
        parts = [f"{p.replicas} x [{p.candidate.label()}] ({p.devices} devices)" for p in self.pools]
        usd = self.usd_per_million_tokens
        return (f"#{self.rank}: " + " + ".join(parts) + f"; {self.devices} devices, "
                f"{self.output_tokens_per_s:,.0f} output tok/s ({self.requests_per_s:.3g} req/s of "
                f"{self.demand.requests_per_s:.3g} demanded), TTFT {self.ttft_s * 1e3:.0f} ms, "
                f"TPOT {self.tpot_s * 1e3:.1f} ms" + (f", {usd:.3g} USD per million output tokens" if usd else ""))

    def as_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "objective": self.objective, "devices": self.devices,
                "requests_per_s": self.requests_per_s, "output_tokens_per_s": self.output_tokens_per_s,
                "usd_per_s": self.usd_per_s, "usd_per_million_tokens": self.usd_per_million_tokens,
                "ttft_s": self.ttft_s, "tpot_s": self.tpot_s,
                "pools": [{"replicas": p.replicas, **p.candidate.as_dict()} for p in self.pools],
                "solver": self.report.as_dict(),
                "cost_solver": self.cost_report.as_dict() if self.cost_report is not None else None}


def device_types(cluster: Cluster) -> tuple[DeviceType, ...]:
    """Runs of consecutive devices of one type, in device order."""
    names = cluster.device_names
    out: list[DeviceType] = []
    start = 0
    for i in range(1, len(names) + 1):
        if i == len(names) or names[i] != names[start]:
            node = cluster.node_of_device(start)
            dev = cluster.device_at(start)
            out.append(DeviceType(name=names[start], first_device=start, count=i - start,
                                  per_node=node.device_count, fp8="fp8" in dev.compute_flop_per_s))
            start = i
    return tuple(out)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _parallelisms(model: Model, t: DeviceType, space: EnumerationSpace, redundant: int) -> Iterable[Parallelism]:
    heads, kv_heads = model.attention.num_heads, model.attention.num_kv_heads
    limit = min(t.count, space.max_replica_devices or t.count)
    experts = model.moe.num_experts + redundant if model.moe is not None else 0
    for tp in space.tp:
        if tp > t.per_node or heads % tp or (kv_heads and tp % kv_heads and kv_heads % tp):
            continue
        for pp in space.pp:
            if pp > model.num_layers:
                continue
            adp = 1
            while tp * adp * pp <= limit:
                stage = tp * adp
                eps = {stage, adp} if model.moe is not None else {1}
                for ep in sorted(eps):
                    if experts and experts % ep:
                        continue
                    yield Parallelism(tp=tp, attention_dp=adp, ep=ep, pp=pp)
                adp *= 2


def _fits(model: Model, par: Parallelism, dtypes: Dtypes, dep: Deployment, hbm_bytes: float) -> bool:
    share = weight_share(model, par, dtypes, dep.experts.redundant)
    return share.total_bytes <= hbm_bytes * (1.0 - dep.memory_reserve_fraction)


def enumerate_candidates(cluster: Cluster, model: Model, deployment: Deployment, demand: Demand, slo: Slo, *,
                         space: EnumerationSpace = EnumerationSpace(), max_batched_tokens: int = 16384,
                         chunked_prefill: int = 4096) -> list[Candidate]:
    """Every feasible replica configuration, costed (see the module docstring).

    ``deployment`` supplies what is not enumerated: experts, overlap, memory reserve,
    activations dtype, speculative decoding. A configuration whose weights, activations and
    one KV block per sequence do not fit is dropped (the same memory model the loader and
    :func:`hwsim.perf.memory.footprint` use).
    """
    coll = Collectives(cluster)
    inp, out = demand.input_tokens, demand.output_tokens
    found: list[Candidate] = []
    seen: set[tuple[Any, ...]] = set()
    for t in device_types(cluster):
        hbm = cluster.device_at(t.first_device).hbm_bytes
        weights = [w for w in space.weights if w != "fp8" or t.fp8]
        roles = ROLES if space.disaggregated else ("unified",)
        for w in weights:
            for kv in space.kv:
                if kv == "fp8" and not t.fp8:
                    continue
                dtypes = Dtypes(weights=w, activations=deployment.dtypes.activations, kv=kv)
                for par in _parallelisms(model, t, space, deployment.experts.redundant):
                    if not _fits(model, par, dtypes, deployment, hbm):
                        continue
                    for role in roles:
                        # prefill: a token budget per step (the sequences it admits follow from it);
                        # unified and decode: a cap on running sequences per attention-DP rank
                        options = ([(256, max(n, inp)) for n in sorted(set(space.prefill_tokens))]
                                   if role == "prefill" else
                                   [(s * par.attention_dp, max(max_batched_tokens, s * par.attention_dp
                                                               + (chunked_prefill if role == "unified" else 0)))
                                    for s in space.seqs_per_rank])
                        for seqs, mbt in options:
                            sched = SchedulerLimits(max_seqs=seqs, max_batched_tokens=mbt,
                                                    chunked_prefill_tokens=min(chunked_prefill, mbt)
                                                    if role == "unified" else None)
                            pool = Pool(name=role, role=role, parallelism=par, scheduler=sched,
                                        first_device=t.first_device)
                            dep = replace(deployment, dtypes=dtypes,
                                          pools=(replace(pool, role="unified", name="main"),))
                            try:
                                est = pool_estimate(cluster, model, dep, pool, inp, out, None, coll)
                            except (HwsimError, ValueError):
                                continue
                            key = (t.first_device, role, w, kv, par, est.batch, mbt)
                            if key in seen:  # a larger cap the KV cache cuts back to the same batch
                                continue
                            seen.add(key)
                            rate = est.requests_per_s
                            if role == "unified":
                                # a step prefills at most max_batched_tokens - batch prompt tokens:
                                # requests cannot enter faster than that (the decode-side rate of
                                # the steady state assumes they do)
                                rate = min(rate, max(0, mbt - est.batch) / inp / est.step_s)
                                if rate <= 0:
                                    continue
                            ttft = est.ttft_s if role != "decode" else None
                            if role == "prefill" and ttft is not None:
                                ttft += _kv_handoff_s(coll, cluster, model, dtypes, t, par.devices, inp)
                            tpot = est.tpot_s if role != "prefill" else None
                            ok = (ttft is None or ttft <= slo.ttft_s) and (tpot is None or tpot <= slo.tpot_s)
                            found.append(Candidate(
                                index=len(found), role=role, device=t.name, first_device=t.first_device,
                                weights=w, kv=kv, tp=par.tp, attention_dp=par.attention_dp, ep=par.ep, pp=par.pp,
                                max_seqs=seqs, max_batched_tokens=mbt, devices=par.devices,
                                batch=est.batch, requests_per_s=rate,
                                output_tokens_per_s=rate * out if role != "prefill" else 0.0, ttft_s=ttft, tpot_s=tpot,
                                usd_per_s=est.usd_per_s, power_w=est.power_w, meets_slo=ok))
    return found


def _kv_handoff_s(coll: Collectives, cluster: Cluster, model: Model, dtypes: Dtypes, t: DeviceType,
                  devices: int, inp: int) -> float:
    """Time to send one prompt's KV cache from a prefill replica to the device after it (the
    decode pool's, in the loader's layout), as the estimate and the simulator charge it."""
    dst = (t.first_device + devices) % cluster.num_devices
    if dst == t.first_device:
        return 0.0
    return coll.p2p(t.first_device, dst, model.kv_bytes(inp, dtypes.kv), detail=False).time_s


def pareto_front(cands: Sequence[Candidate]) -> set[int]:
    """Indices of candidates not dominated on (tokens/s per device, tokens/s per user), both
    maximised; candidates without a TPOT (prefill) are never on the front."""
    pts = [(c.index, c.tokens_per_s_per_device, c.tokens_per_s_per_user) for c in cands
           if c.tokens_per_s_per_user is not None]
    pts.sort(key=lambda p: (-p[1], -(p[2] or 0.0)))
    front: set[int] = set()
    best_user = -math.inf
    for idx, _, user in pts:
        assert user is not None
        if user > best_user:
            front.add(idx)
            best_user = user
    return front


def _budget_error(groups: Sequence[str], demand: Demand, n: int) -> InfeasibleError:
    return InfeasibleError(
        f"no plan serves the trace's {demand.requests_per_s:.3g} requests/s "
        f"({demand.requests_per_s * demand.output_tokens:,.0f} output tokens/s) under the SLOs: demand exceeds what "
        f"the device budget can serve (constraint groups: {', '.join(groups)}; {n} candidates meet the SLOs)")


def plan_parallelism(cands: Sequence[Candidate], types: Sequence[DeviceType], demand: Demand, *,
                     objective: str = "goodput", devices: int | None = None, usd_per_h: float | None = None,
                     utilization: float = 0.8, top: int = 1, backend: str = "cbc", time_limit_s: float = 30.0, gap: float = 0.01,
                     write_lp: str | None = None) -> list[ParallelismPlan]:
    """The ``top`` best distinct plans (selected candidates differ), best first.

    Each replica is loaded to at most ``utilization`` of its steady-state rate (headroom for
    queueing and bursts: at a utilization near 1 queues grow without bound).

    Raises :class:`~hwsim.errors.InfeasibleError` naming the constraint groups when no
    candidate meets the SLOs or (``usd``) the budget cannot serve the demand.
    """
    if objective not in OBJECTIVES:
        raise SpecError(f"unknown objective {objective!r}", expected=" or ".join(OBJECTIVES), found=objective)
    ok = [c for c in cands if c.meets_slo]
    usable = [c for c in ok if c.role == "unified"]
    roles = {c.role for c in ok}
    if {"prefill", "decode"} <= roles:
        usable += [c for c in ok if c.role != "unified"]
    if not usable:
        raise InfeasibleError(f"none of the {len(cands)} costed configurations meets the SLOs (constraint group slo); "
                              "relax --slo, allow more devices, or try other dtypes")
    if usd_per_h is not None and any(c.usd_per_s is None for c in usable):
        raise SpecError("--budget needs device prices; the cluster's nodes list none", path="nodes.price",
                        expected="node or device prices", found="none")
    if not 0 < utilization <= 1:
        raise SpecError("utilization must be in (0, 1]", expected="e.g. 0.8", found=utilization)
    prob, x, goodput, cost = _build(usable, types, demand, objective, devices, usd_per_h, utilization)
    plans: list[ParallelismPlan] = []
    for k in range(top):
        second: SolveReport | None = None
        try:
            report = solve(prob, backend=backend, time_limit_s=time_limit_s, gap=gap,
                           write_lp=write_lp if k == 0 else None)
            if objective == "goodput":
                # lexicographic: among plans of (nearly) the best goodput, the cheapest
                prob += goodput >= report.objective * (1 - 1e-6) - 1e-9, "goodput_floor"
                prob.sense = pulp.LpMinimize
                prob.setObjective(cost)
                second = solve(prob, backend=backend, time_limit_s=time_limit_s, gap=gap)
                del prob.constraints["goodput_floor"]
                prob.sense = pulp.LpMaximize
                prob.setObjective(goodput)
        except InfeasibleError:
            if k:
                break
            groups = ["demand_prefill", "demand_decode", *(f"device_budget_{_slug(t.name)}" for t in types)]
            if devices is not None:
                groups.append("device_budget_total")
            if usd_per_h is not None:
                groups.append("usd_budget")
            raise _budget_error(groups, demand, len(usable)) from None
        sel = [c for c in usable if (x[c.index][0].value() or 0) > 0.5 and round(x[c.index][1].value() or 0) > 0]
        if not sel:
            if k == 0:
                raise _budget_error(["device_budget"], demand, len(usable))
            break
        pools = tuple(PlanPool(candidate=c, replicas=round(x[c.index][1].value())) for c in sel)
        plans.append(ParallelismPlan(rank=k + 1, objective=objective, pools=pools, demand=demand,
                                     requests_per_s=min(_capacity(pools) * utilization, demand.requests_per_s),
                                     report=report, cost_report=second))
        prob += (pulp.lpSum(x[c.index][0] for c in sel)
                 - pulp.lpSum(x[c.index][0] for c in usable if c not in sel) <= len(sel) - 1, f"exclude_{k}")
    return plans


def _capacity(pools: Sequence[PlanPool]) -> float:
    pre = sum(p.replicas * p.candidate.requests_per_s for p in pools if p.candidate.role != "decode")
    dec = sum(p.replicas * p.candidate.requests_per_s for p in pools if p.candidate.role != "prefill")
    return min(pre, dec)


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name)


def _build(usable: Sequence[Candidate], types: Sequence[DeviceType], demand: Demand, objective: str,
           devices: int | None, usd_per_h: float | None, util: float) -> tuple[pulp.LpProblem, dict[int, Any], Any, Any]:
    sense = pulp.LpMaximize if objective == "goodput" else pulp.LpMinimize
    prob = pulp.LpProblem("parallelism", sense)
    type_count: dict[str, int] = {}
    for t in types:
        type_count[t.name] = type_count.get(t.name, 0) + t.count
    x: dict[int, Any] = {}
    for c in usable:
        run = next(t for t in types if t.first_device == c.first_device)
        ub = min(type_count[c.device], run.count) // c.devices
        if devices is not None:
            ub = min(ub, devices // c.devices)
        sel = pulp.LpVariable(f"x_{c.index}", cat="Binary")
        reps = pulp.LpVariable(f"r_{c.index}", lowBound=0, upBound=max(ub, 0), cat="Integer")
        x[c.index] = (sel, reps)
        prob += reps <= max(ub, 0) * sel, f"link_{c.index}"
    families = sorted({c.family for c in usable})
    z = {f: pulp.LpVariable("z_" + "_".join(f), cat="Binary") for f in families}
    prob += pulp.lpSum(z.values()) <= 1, "family_one"
    for c in usable:
        prob += x[c.index][0] <= z[c.family], f"family_{c.index}"
    # pools take consecutive devices from device 0 (the loader's layout): a pool on a later run
    # of devices needs every earlier run filled
    runs = sorted(types, key=lambda t: t.first_device)
    for k, run in enumerate(runs[1:], start=1):
        on_run = [c for c in usable if c.first_device == run.first_device]
        if not on_run:
            continue
        y = pulp.LpVariable(f"run_used_{k}", cat="Binary")
        for c in on_run:
            prob += x[c.index][0] <= y, f"layout_use_{c.index}"
        for j, before in enumerate(runs[:k]):
            filled = pulp.lpSum(x[c.index][1] * c.devices for c in usable if c.first_device == before.first_device)
            prob += filled >= before.count * y, f"layout_{k}_{j}"
    for role in ROLES:
        members = [x[c.index][0] for c in usable if c.role == role]
        if members:
            prob += pulp.lpSum(members) <= 1, f"one_pool_{role}"
    s = pulp.LpVariable("served_requests_per_s", lowBound=0)
    pre = pulp.lpSum(x[c.index][1] * (c.requests_per_s * util) for c in usable if c.role != "decode")
    dec = pulp.lpSum(x[c.index][1] * (c.requests_per_s * util) for c in usable if c.role != "prefill")
    for name in sorted(type_count):
        members = [x[c.index][1] * c.devices for c in usable if c.device == name]
        if members:
            prob += pulp.lpSum(members) <= type_count[name], f"device_budget_{_slug(name)}"
    used_devices = pulp.lpSum(x[c.index][1] * c.devices for c in usable)
    if devices is not None:
        prob += used_devices <= devices, "device_budget_total"
    priced = all(c.usd_per_s is not None for c in usable)
    usd_h = pulp.lpSum(x[c.index][1] * (c.usd_per_s or 0.0) * 3600.0 for c in usable)
    if usd_per_h is not None:
        prob += usd_h <= usd_per_h, "usd_budget"
    goodput = s * demand.output_tokens
    cost = usd_h if priced else used_devices
    if objective == "goodput":
        prob += s <= pre, "capacity_prefill"
        prob += s <= dec, "capacity_decode"
        prob += s <= demand.requests_per_s, "demand_cap"
        prob += goodput
    else:
        prob += s == demand.requests_per_s, "served"
        prob += pre >= s, "demand_prefill"
        prob += dec >= s, "demand_decode"
        prob += cost
    return prob, x, goodput, cost
