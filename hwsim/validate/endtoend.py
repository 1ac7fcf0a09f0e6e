"""End-to-end rows: runnable scenarios under ``validation/scenarios/`` against published serving numbers.

``validation/cases.yaml`` (our runnable index) maps a published case id to a scenario file, a
mode and a workload, and says which of our metrics maps to which published metric:

.. code-block:: yaml

    cases:
      - id: trtllm-dsr1-b200-maxtput-fp8kv
        scenario: scenarios/trtllm-dsr1-b200-maxtput-fp8kv.yaml
        mode: estimate                 # estimate | simulate | memory
        tier: 1
        workload: {input_tokens: 1042, output_tokens: 2048, concurrency: 7168}
        metrics:
          - {ours: output_tokens_per_s_per_device, published: per_gpu_output_throughput}
      - id: some-case
        missing: "what hwsim would need to express it"

``workload`` gives the request lengths and optionally ``batch`` (sequences per replica) or
``concurrency`` (closed-loop clients, as the source's benchmark client ran). In mode simulate it
gives ``rate_per_s`` and ``duration_s`` (Poisson arrivals), or ``requests`` (an offline run: that
many requests queued at time 0, timed to the last token). ``scheduler: trtllm-bench`` replaces
each pool's ``max_seqs`` / ``max_batched_tokens`` by the limits trtllm-bench's heuristic picks
for the row's lengths (:mod:`hwsim.validate.trtllm_bench`).
``ours`` names an attribute of :class:`hwsim.perf.estimate.Estimate` (or ``<name>_per_device``
of one); ``published`` names a metric (or a ``derived`` entry) of the published case; ``scale``
converts the published unit to ours (``0.001`` for ms -> s). Nothing here is tuned to a case:
the scenario says what the source says and lists what it assumes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.errors import SpecError
from hwsim.io.scenario import load_scenario
from hwsim.io.source import read_document
from hwsim.perf.estimate import Estimate, estimate
from hwsim.sim.routing import imbalance_sampler_factory
from hwsim.sim.run import simulate
from hwsim.validate.memory import trtllm_budget_rows
from hwsim.validate.rows import ValidationRow
from hwsim.validate.shared import REPO, SharedData, published_entry
from hwsim.validate.trtllm_bench import with_bench_limits
from hwsim.workload.generate import (
    LognormalLengths,
    OfflineArrivals,
    PoissonArrivals,
    generate_requests,
)

DEFAULT_INDEX = REPO / "validation" / "cases.yaml"
MODES = ("estimate", "simulate", "memory")


def _published(case: Mapping[str, Any], name: str) -> tuple[float, str]:
    m = published_entry(case, name)
    text = str(m["value"]).rstrip("%").replace(",", "")
    try:
        return float(text), str(m.get("unit", ""))
    except ValueError:
        raise SpecError(f"published case {case.get('id')!r}: metric {name!r} is not a number",
                        path="metrics", expected="a number", found=m["value"]) from None


def _ours(est: Estimate, name: str) -> float:
    """``attribute`` of the estimate or ``pool.attribute`` of one pool; ``_per_device`` divides by
    the devices of that scope."""
    scope: Any = est
    attr = name
    if "." in name:
        pool, attr = name.split(".", 1)
        scope = next((p for p in est.pools if p.pool == pool), None)
        if scope is None:
            raise SpecError(f"no pool {pool!r} in the estimate", path="metrics.ours",
                            expected=", ".join(p.pool for p in est.pools), found=pool)
    per_device = attr.endswith("_per_device") and not hasattr(scope, attr)
    base = attr.removesuffix("_per_device") if per_device else attr
    if not hasattr(scope, base):
        raise SpecError(f"unknown estimate metric {name!r}", path="metrics.ours", expected="an attribute "
                        "of the estimate (output_tokens_per_s, tpot_s, ...) or <pool>.<attribute>", found=name)
    value = float(getattr(scope, base))
    return value / scope.devices if per_device else value


def read_index(path: str | Path | None = None) -> tuple[Path, list[dict[str, Any]]]:
    """The runnable index (``validation/cases.yaml``) as (its folder, its entries)."""
    p = Path(path) if path is not None else DEFAULT_INDEX
    doc = read_document(p)
    data = doc.data or {}
    entries = data.get("cases") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise SpecError("a validation case index needs a 'cases:' list", file=str(p), path="cases",
                        expected="a list of {id, scenario, mode, ...}", found=type(entries).__name__)
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or "id" not in e:
            raise SpecError("each case needs an id", file=str(p), path=f"cases[{i}]", found=e)
        if "missing" not in e and e.get("mode") not in MODES:
            raise SpecError("unknown mode", file=str(p), path=f"cases[{i}].mode",
                            expected=" | ".join(MODES), found=e.get("mode"))
    return p.parent, entries


def case_rows(entry: Mapping[str, Any], folder: Path, shared: SharedData) -> list[ValidationRow]:
    """The rows of one index entry (a row naming the missing feature when it cannot run)."""
    cid = str(entry["id"])
    published = shared.case(cid)
    kind = str(entry.get("kind", "end-to-end"))
    tier = int(entry.get("tier", 2))
    if "missing" in entry:
        missing = " ".join(str(entry["missing"]).split())
        if not entry.get("metrics"):
            return [ValidationRow(kind=kind, case=cid, label="(whole case)", unit="", measured=float("nan"),
                                  predicted=None, tier=tier, missing=missing)]
        rows = []
        for m in entry["metrics"]:
            try:
                value, unit = _published(published, m["published"])
            except SpecError:        # a bound such as '>3' is listed, not compared
                value, unit = float("nan"), ""
            rows.append(ValidationRow(kind=kind, case=cid, label=m["published"], unit=unit,
                                      measured=value, predicted=None, tier=tier, missing=missing))
        return rows
    scenario = folder / str(entry["scenario"])
    work = entry.get("workload") or {}
    if entry["mode"] == "memory":
        return trtllm_budget_rows(published, scenario, input_tokens=int(work.get("input_tokens", 1024)),
                                  output_tokens=int(work.get("output_tokens", 2048)), tier=tier)
    s = load_scenario(scenario)
    if entry.get("scheduler") == "trtllm-bench":
        s = with_bench_limits(s, input_tokens=int(work["input_tokens"]), output_tokens=int(work["output_tokens"]))
    elif "scheduler" in entry:
        raise SpecError("unknown scheduler limits", path=f"cases[{cid}].scheduler", expected="trtllm-bench",
                        found=entry["scheduler"])
    if entry["mode"] == "simulate":
        return _simulate_rows(entry, s, published, kind, tier)
    est = estimate(s.cluster, s.model, s.deployment, input_tokens=int(work["input_tokens"]),
                   output_tokens=int(work["output_tokens"]), batch=work.get("batch"),
                   concurrency=work.get("concurrency"))
    rows = []
    for m in entry.get("metrics") or ():
        value, unit = _published(published, m["published"])
        scale = float(m.get("scale", 1.0))
        ours = m["ours"] if scale == 1.0 or scale < 0.01 else f"{m['ours']} x {1.0 / scale:g}"
        rows.append(ValidationRow(kind=kind, case=cid, label=f"{ours} vs {m['published']}", unit=unit,
                                  measured=value, predicted=_ours(est, m["ours"]) / scale, tier=tier,
                                  note=str(m.get("note", ""))))
    return rows


def served_metrics(requests: Mapping[str, Any], *, window_s: float) -> dict[str, float]:
    """Means and p99 of TTFT and TPOT (vLLM's definitions, README) and the mean end-to-end
    request latency (arrival to last token) over finished requests, and output tokens per
    second over the arrival window."""
    done = requests["status"] == 0
    arrival = requests["arrival_s"][done].astype(float)
    first = requests["first_token_s"][done].astype(float)
    finish = requests["finish_s"][done].astype(float)
    gen = requests["generated_tokens"][done].astype(float)
    ttft = first - arrival
    multi = gen > 1
    tpot = (finish[multi] - first[multi]) / (gen[multi] - 1.0)
    return {"ttft_mean_s": float(np.mean(ttft)), "ttft_p99_s": float(np.percentile(ttft, 99)),
            "tpot_mean_s": float(np.mean(tpot)), "tpot_p99_s": float(np.percentile(tpot, 99)),
            "request_latency_mean_s": float(np.mean(finish - arrival)),
            "output_tokens_per_s": float(gen.sum() / window_s), "finished": float(done.sum())}


def replay(s: Any, workload: Mapping[str, Any]) -> tuple[Mapping[str, Any], float]:
    """Simulate an index row's ``workload`` on scenario ``s``; its requests table and window.

    Lognormal lengths (``sigma`` 0: fixed) replayed by the serving simulator with a fixed seed:
    Poisson arrivals at ``rate_per_s`` for ``duration_s`` (the window), or an offline run of
    ``requests`` sent at once, as ``trtllm-bench throughput`` and MLPerf Offline do (the window
    runs from time 0 to the last request's finish)."""
    w = workload
    lengths = LognormalLengths(input_median=float(w["input_tokens"]), input_sigma=float(w.get("input_sigma", 0.0)),
                               output_median=float(w["output_tokens"]),
                               output_sigma=float(w.get("output_sigma", 0.0)),
                               max_input_tokens=max(32768, int(w["input_tokens"])),
                               max_output_tokens=max(4096, int(w["output_tokens"])))
    seed = int(w.get("seed", 0))
    if "requests" in w:
        reqs = generate_requests(OfflineArrivals(), lengths, seed=seed, count=int(w["requests"]))
        duration = None
    else:
        duration = float(w["duration_s"])
        reqs = generate_requests(PoissonArrivals(rate_per_s=float(w["rate_per_s"])), lengths, seed=seed,
                                 duration_s=duration)
    result = simulate(s, reqs, seed=seed, imbalance_sampler_factory=imbalance_sampler_factory(s))
    if duration is None:  # the run's length: to the last finish
        duration = float(np.nanmax(result.requests["finish_s"]))
    return result.requests, duration


def _simulate_rows(entry: Mapping[str, Any], s: Any, published: Mapping[str, Any], kind: str,
                   tier: int) -> list[ValidationRow]:
    """The rows of a mode-simulate entry (see :func:`replay`)."""
    requests, window = replay(s, entry["workload"])
    got = served_metrics(requests, window_s=window)
    rows = []
    for m in entry.get("metrics") or ():
        value, unit = _published(published, m["published"])
        if m["ours"] not in got:
            raise SpecError(f"unknown simulation metric {m['ours']!r}", path="metrics.ours",
                            expected=", ".join(got), found=m["ours"])
        rows.append(ValidationRow(kind=kind, case=str(entry["id"]), label=f"{m['ours']} vs {m['published']}",
                                  unit=unit, measured=value, predicted=got[m["ours"]] / float(m.get("scale", 1.0)),
                                  tier=tier, note=str(m.get("note", ""))))
    return rows


def end_to_end_rows(shared: SharedData, index: str | Path | None = None,
                    kinds: frozenset[str] | None = None) -> list[ValidationRow]:
    """Every row of the index whose kind is selected."""
    folder, entries = read_index(index)
    out: list[ValidationRow] = []
    for e in entries:
        kind = str(e.get("kind", "end-to-end"))
        if kinds is None or kind in kinds:
            out += case_rows(e, folder, shared)
    return out


__all__ = ["DEFAULT_INDEX", "MODES", "case_rows", "end_to_end_rows", "read_index", "replay", "served_metrics"]
