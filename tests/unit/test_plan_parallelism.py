"""Parallelism planner: ILP against brute force, infeasibility messages, Pareto front, layout."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hwsim.solvers.parallelism import (
    Candidate,
    Demand,
    DeviceType,
    ParallelismPlan,
    PlanPool,
    pareto_front,
    plan_parallelism,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.errors import InfeasibleError

OUT = 100  # output tokens per request in the synthetic demands


def cand(index: int, role: str, devices: int, rate: float, usd_h: float, *, device: str = "X", first: int = 0,
         weights: str = "fp8", kv: str = "bf16", tpot: float | None = 0.05, ok: bool = True) -> Candidate:
    return Candidate(index=index, role=role, device=device, first_device=first, weights=weights, kv=kv, tp=1,
                     attention_dp=devices, ep=devices, pp=1, max_seqs=64, max_batched_tokens=8192, devices=devices,
                     batch=64, requests_per_s=rate, output_tokens_per_s=0.0 if role == "prefill" else rate * OUT,
                     ttft_s=None if role == "decode" else 0.5, tpot_s=None if role == "prefill" else tpot,
                     usd_per_s=usd_h / 3600.0, power_w=100.0, meets_slo=ok)


def brute_force(cands: list[Candidate], budget: dict[str, int], demand: float, util: float,
                objective: str) -> tuple[float, float] | None:
    """(served requests/s, USD/h) of the best plan by enumerating selections and replica counts."""
    best: tuple[float, float] | None = None
    unified = [c for c in cands if c.role == "unified"]
    pre = [c for c in cands if c.role == "prefill"]
    dec = [c for c in cands if c.role == "decode"]
    selections = [(c,) for c in unified] + [
        (p, d) for p, d in itertools.product(pre, dec) if (p.weights, p.kv) == (d.weights, d.kv)]
    for sel in selections:
        ranges = [range(0, budget[c.device] // c.devices + 1) for c in sel]
        for reps in itertools.product(*ranges):
            used: dict[str, int] = {}
            for c, r in zip(sel, reps, strict=True):
                used[c.device] = used.get(c.device, 0) + r * c.devices
            if any(used[k] > budget[k] for k in used):
                continue
            if any(c.device == "Y" for c in sel) and used.get("X", 0) != budget["X"]:
                continue  # pools take consecutive devices: Y's pool starts after every X device
            caps = [sum(r * c.requests_per_s * util for c, r in zip(sel, reps, strict=True) if c.role != skip)
                    for skip in ("decode", "prefill")]
            cap = min(caps)
            usd = sum(r * c.usd_per_s * 3600 for c, r in zip(sel, reps, strict=True))
            if objective == "usd":
                if cap < demand - 1e-9:
                    continue
                key = (demand, usd)
                if best is None or usd < best[1] - 1e-9:
                    best = key
            else:
                served = min(cap, demand)
                if best is None or served > best[0] + 1e-9 or (abs(served - best[0]) <= 1e-9 and usd < best[1] - 1e-9):
                    best = (served, usd)
    return best


def random_instance(seed: int) -> tuple[list[Candidate], list[DeviceType], Demand]:
    rng = np.random.default_rng(seed)
    nx = int(rng.integers(4, 9))
    types = [DeviceType(name="X", first_device=0, count=nx, per_node=8, fp8=True),
             DeviceType(name="Y", first_device=nx, count=int(rng.integers(2, 7)), per_node=8, fp8=True)]
    cands = []
    for i, role in enumerate(["unified", "unified", "prefill", "decode", "prefill"]):
        t = types[int(rng.integers(0, 2))]
        dev = int(rng.choice([1, 2]))
        cands.append(cand(i, role, dev, float(rng.uniform(0.5, 3.0)), float(rng.uniform(1.0, 4.0)) * dev,
                          device=t.name, first=t.first_device))
    return cands, types, Demand(input_tokens=500, output_tokens=OUT, requests_per_s=float(rng.uniform(2.0, 12.0)))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("objective", ["goodput", "usd"])
def test_ilp_matches_brute_force(seed: int, objective: str) -> None:
    cands, types, demand = random_instance(seed)
    budget = {t.name: t.count for t in types}
    best = brute_force(cands, budget, demand.requests_per_s, 0.8, objective)
    if best is None:
        with pytest.raises(InfeasibleError, match="demand_prefill"):
            plan_parallelism(cands, types, demand, objective=objective, utilization=0.8, gap=0.0)
        return
    plans = plan_parallelism(cands, types, demand, objective=objective, utilization=0.8, gap=0.0)
    plan = plans[0]
    assert plan.requests_per_s == pytest.approx(best[0], rel=1e-6, abs=1e-6)
    assert plan.usd_per_s * 3600 == pytest.approx(best[1], rel=1e-6, abs=1e-6)
    used = {t.name: 0 for t in types}
    for p in plan.pools:
        used[p.candidate.device] += p.devices
    assert all(used[k] <= budget[k] for k in used)
    assert plan.layout_gap(types) is None


def test_top_plans_are_distinct_and_ordered() -> None:
    cands, types, demand = random_instance(3)
    plans = plan_parallelism(cands, types, demand, objective="goodput", top=4, gap=0.0)
    picks = [frozenset(p.candidate.index for p in plan.pools) for plan in plans]
    assert len(set(picks)) == len(picks)
    goodputs = [plan.output_tokens_per_s for plan in plans]
    assert goodputs == sorted(goodputs, reverse=True) or all(
        a >= b - 1e-6 for a, b in zip(goodputs, goodputs[1:], strict=False))


def test_demand_beyond_the_budget_names_the_groups() -> None:
    cands = [cand(0, "unified", 2, 1.0, 2.0), cand(1, "prefill", 1, 2.0, 1.0), cand(2, "decode", 1, 1.0, 1.0)]
    types = [DeviceType(name="X", first_device=0, count=4, per_node=8, fp8=True)]
    demand = Demand(input_tokens=100, output_tokens=OUT, requests_per_s=50.0)
    with pytest.raises(InfeasibleError) as err:
        plan_parallelism(cands, types, demand, objective="usd")
    text = str(err.value)
    assert "demand_prefill" in text and "demand_decode" in text and "device_budget_X" in text
    assert "demand exceeds what the device budget can serve" in text
    # the same demand under goodput: serve what the budget allows, capped by the 4 devices
    plan = plan_parallelism(cands, types, demand, objective="goodput", utilization=1.0, gap=0.0)[0]
    assert plan.devices <= 4 and plan.requests_per_s == pytest.approx(2.0)


def test_usd_budget_limits_the_plan() -> None:
    cands = [cand(0, "unified", 1, 1.0, 3.0)]
    types = [DeviceType(name="X", first_device=0, count=8, per_node=8, fp8=True)]
    demand = Demand(input_tokens=100, output_tokens=OUT, requests_per_s=100.0)
    plan = plan_parallelism(cands, types, demand, usd_per_h=10.0, utilization=1.0, gap=0.0)[0]
    assert plan.pools[0].replicas == 3
    plan = plan_parallelism(cands, types, demand, devices=2, utilization=1.0, gap=0.0)[0]
    assert plan.pools[0].replicas == 2


def test_no_candidate_meeting_the_slo_is_an_error() -> None:
    cands = [cand(0, "unified", 1, 1.0, 1.0, ok=False), cand(1, "prefill", 1, 1.0, 1.0)]
    types = [DeviceType(name="X", first_device=0, count=8, per_node=8, fp8=True)]
    with pytest.raises(InfeasibleError, match="slo"):
        plan_parallelism(cands, types, Demand(input_tokens=10, output_tokens=10, requests_per_s=1.0))


def test_one_family_of_dtypes_per_plan() -> None:
    # prefill in fp8 and decode in bf16 cannot form one deployment (one set of dtypes)
    cands = [cand(0, "prefill", 1, 5.0, 1.0, weights="fp8"), cand(1, "decode", 1, 5.0, 1.0, weights="bf16"),
             cand(2, "decode", 1, 1.0, 1.0, weights="fp8")]
    types = [DeviceType(name="X", first_device=0, count=4, per_node=8, fp8=True)]
    plan = plan_parallelism(cands, types, Demand(input_tokens=10, output_tokens=OUT, requests_per_s=2.0),
                            utilization=1.0, gap=0.0)[0]
    assert {p.candidate.weights for p in plan.pools} == {"fp8"}
    assert {p.candidate.index for p in plan.pools} == {0, 2}


def _plan(pools: list[tuple[Candidate, int]]) -> ParallelismPlan:
    from hwsim.solvers.common import SolveReport

    report = SolveReport(solver="cbc", status="Optimal", objective=0.0, bound=0.0, gap=0.0, gap_limit=0.0,
                         time_limit_s=1.0, wall_s=0.0)
    return ParallelismPlan(rank=1, objective="goodput", pools=tuple(PlanPool(candidate=c, replicas=r) for c, r in pools),
                           demand=Demand(input_tokens=10, output_tokens=10, requests_per_s=1.0), requests_per_s=1.0,
                           report=report)


def test_layout_gap_on_heterogeneous_clusters() -> None:
    types = [DeviceType(name="A", first_device=0, count=8, per_node=8, fp8=True),
             DeviceType(name="B", first_device=8, count=8, per_node=8, fp8=True)]
    pre_a = cand(0, "prefill", 2, 1.0, 1.0, device="A", first=0)
    dec_b = cand(1, "decode", 4, 1.0, 1.0, device="B", first=8)
    assert _plan([(pre_a, 4), (dec_b, 2)]).layout_gap(types) is None
    gap = _plan([(pre_a, 2), (dec_b, 2)]).layout_gap(types)
    assert gap is not None and "devices 4..7" in gap
    assert _plan([(dec_b, 1)]).layout_gap(types) is not None  # would start on A's devices
    pools = _plan([(pre_a, 4), (dec_b, 2)]).pools_yaml(chunked_prefill=2048)
    assert [p["role"] for p in pools] == ["prefill", "decode"]
    assert [p["replicas"] * p["devices"] for p in pools] == [8, 8]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(1.0, 1e4), st.floats(1e-3, 1.0), st.sampled_from(["unified", "decode",
                                                                                       "prefill"])),
                min_size=1, max_size=30))
def test_pareto_front_is_non_dominated(points: list[tuple[float, float, str]]) -> None:
    cands = [Candidate(index=i, role=role, device="X", first_device=0, weights="fp8", kv="bf16", tp=1, attention_dp=1,
                       ep=1, pp=1, max_seqs=1, max_batched_tokens=1, devices=1, batch=1, requests_per_s=1.0,
                       output_tokens_per_s=0.0 if role == "prefill" else tps, ttft_s=0.1,
                       tpot_s=None if role == "prefill" else tpot, usd_per_s=None, power_w=0.0, meets_slo=True)
             for i, (tps, tpot, role) in enumerate(points)]
    front = pareto_front(cands)
    scored = {c.index: (c.tokens_per_s_per_device, c.tokens_per_s_per_user) for c in cands
              if c.tokens_per_s_per_user is not None}
    assert front <= set(scored)

    def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] >= b[0] and a[1] >= b[1] and (a[0] > b[0] or a[1] > b[1])

    for i in front:  # nothing beats a front point
        assert not any(dominates(scored[j], scored[i]) for j in scored)
    for i in set(scored) - front:  # every other point is beaten or equalled by a front point
        assert any(dominates(scored[j], scored[i]) or scored[j] == scored[i] for j in front)
    assert bool(front) == bool(scored) and math.isfinite(len(front))


def test_enumerated_candidates_pass_the_loader_checks() -> None:
    from pathlib import Path

    from hwsim.solvers.parallelism import EnumerationSpace, Slo, device_types, enumerate_candidates

    from hwsim.io.scenario import load_scenario
    from hwsim.spec.deployment import Dtypes, Parallelism
    from hwsim.spec.sharding import weight_share

    sc = load_scenario(Path(__file__).resolve().parents[2] / "examples" / "h100-qwen3-30b-a3b" / "cluster.yaml")
    slo = Slo(ttft_s=0.5, tpot_s=0.02)
    space = EnumerationSpace(tp=(1, 2, 4, 8), pp=(1,), seqs_per_rank=(16, 256), weights=("bf16",), kv=("bf16",))
    cands = enumerate_candidates(sc.cluster, sc.model, sc.deployment, Demand(input_tokens=600, output_tokens=80,
                                 requests_per_s=5.0), slo, space=space)
    assert {c.role for c in cands} == {"unified", "prefill", "decode"}
    assert device_types(sc.cluster)[0].count == 8
    heads = sc.model.attention.num_heads
    usable = sc.cluster.device_at(0).hbm_bytes * (1 - sc.deployment.memory_reserve_fraction)
    for c in cands:
        par = Parallelism(tp=c.tp, attention_dp=c.attention_dp, ep=c.ep, pp=c.pp)
        assert heads % c.tp == 0 and sc.model.moe.num_experts % c.ep == 0 and c.devices == par.devices <= 8
        assert weight_share(sc.model, par, Dtypes(weights=c.weights, kv=c.kv), 0).total_bytes <= usable
        assert c.batch <= c.max_seqs
        ok = (c.ttft_s is None or c.ttft_s <= slo.ttft_s) and (c.tpot_s is None or c.tpot_s <= slo.tpot_s)
        assert c.meets_slo == ok
    # more sequences per replica: more tokens/s per device, slower per user (same parallelism)
    u = sorted((c for c in cands if c.role == "decode" and c.tp == 1 and c.attention_dp == 1), key=lambda c: c.batch)
    assert u[-1].tokens_per_s_per_device > u[0].tokens_per_s_per_device
    assert u[-1].tpot_s > u[0].tpot_s


def test_heterogeneous_cluster_plan_loads(tmp_path) -> None:
    """Two device types: candidates per type, budgets per type, and a plan whose patch loads."""
    from hwsim.solvers.parallelism import EnumerationSpace, Slo, device_types, enumerate_candidates

    from hwsim.io.plan_files import dump_patch
    from hwsim.io.scenario import load_scenario

    cluster = tmp_path / "cluster.yaml"
    cluster.write_text("""version: 1
kind: cluster
name: mixed
nodes:
  - {system: DGX-H100, count: 1}
  - {system: HGX-H200, count: 1}
fabric: {topology: fat-tree}
deployment:
  model: qwen3-30b-a3b
  pools:
    - {name: main, parallelism: {tp: 1}, scheduler: {max_seqs: 64, max_batched_tokens: 8192, chunked_prefill: 2048}}
""")
    sc = load_scenario(cluster)
    types = device_types(sc.cluster)
    assert [(t.name, t.first_device, t.count) for t in types] == [("H100-SXM", 0, 8), ("H200", 8, 8)]
    demand = Demand(input_tokens=500, output_tokens=80, requests_per_s=400.0)
    space = EnumerationSpace(tp=(1, 2), pp=(1,), seqs_per_rank=(64,), weights=("bf16",), kv=("bf16",),
                             max_replica_devices=2)
    cands = enumerate_candidates(sc.cluster, sc.model, sc.deployment, demand, Slo(ttft_s=5.0, tpot_s=1.0),
                                 space=space)
    assert {c.device for c in cands} == {"H100-SXM", "H200"}
    plan = plan_parallelism(cands, types, demand, objective="goodput", gap=0.0)[0]
    used: dict[str, int] = {}
    for p in plan.pools:
        used[p.candidate.device] = used.get(p.candidate.device, 0) + p.devices
    assert all(n <= 8 for n in used.values())
    if plan.layout_gap(types) is None:
        patch = tmp_path / "plan.patch.yaml"
        patch.write_text(dump_patch(plan.patch_set("bf16", 2048)))
        loaded = load_scenario(cluster, patches=[patch])
        assert loaded.deployment.devices == plan.devices
        names = loaded.cluster.device_names
        for pool, planned in zip(loaded.deployment.pools, sorted(plan.pools, key=lambda p: p.candidate.first_device),
                                 strict=True):
            assert {names[d] for d in pool.device_range} == {planned.candidate.device}
