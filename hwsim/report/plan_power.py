"""Power plans to people and files: per-replica wall power over time from a simulation, the
summary text, ``plan.json``, ``plan.patch.yaml`` and the ``power_plan.png`` plot.

Wall power of one replica at time ``t``: each of its ``d`` devices draws the power of the engine
step running at ``t`` (``SimResult.steps['power_w']``, per device) or, between steps, the idle
power with a resident context; the node adds its fixed overhead in proportion to the share of
the node the replica occupies (``d / devices per node``) and its proportional overhead
(``hwsim.perf.power.wall_power_w``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.perf.power import wall_power_w
from hwsim.sim.metrics import SimResult
from hwsim.solvers.power import PowerPlan, ServerGroup
from hwsim.spec.topology import Node
from hwsim.workload.files import atomic_text_writer

__all__ = ["replica_wall_power_w", "window_s", "output_tokens_per_s", "mean_tpot_s", "summary_text",
           "write_plan_json", "write_patch", "plot_power_plan"]


def window_s(result: SimResult) -> tuple[float, float]:
    """The part of the run under load: first to last arrival (the whole run if that is empty)."""
    arrivals = result.requests["arrival_s"]
    if arrivals.size and float(arrivals.max()) > float(arrivals.min()):
        return float(arrivals.min()), float(arrivals.max())
    return 0.0, max(result.sim_time_s, 1e-9)


def replica_wall_power_w(result: SimResult, pool: int, node: Node, times_s: np.ndarray) -> np.ndarray:
    """Mean wall power (W) of one replica of ``pool`` at each of ``times_s`` (over its replicas)."""
    info = result.pools[pool]
    steps = result.steps
    mine = steps["pool"] == pool
    t = np.asarray(times_s, dtype=np.float64)
    device_w = np.zeros_like(t)
    for r in range(info.replicas):
        sel = mine & (steps["replica"] == r)
        start = steps["start_s"][sel].astype(np.float64)
        order = np.argsort(start, kind="stable")
        start = start[order]
        end = start + steps["duration_s"][sel].astype(np.float64)[order]
        power = steps["power_w"][sel].astype(np.float64)[order]
        idx = np.searchsorted(start, t, side="right") - 1
        inside = (idx >= 0) & (t < end[np.clip(idx, 0, None)] if end.size else np.zeros(t.shape, bool))
        if end.size:
            device_w += np.where(inside, power[np.clip(idx, 0, None)], info.idle_power_w)
        else:
            device_w += info.idle_power_w
    device_w /= info.replicas
    share = info.devices_per_replica / node.device_count
    return np.array([wall_power_w(node, float(p)) for p in device_w]) * share


def output_tokens_per_s(result: SimResult) -> float:
    """Generated tokens over the whole simulated time."""
    t = result.sim_time_s
    return float(result.requests["generated_tokens"].sum()) / t if t > 0 else 0.0


def mean_tpot_s(result: SimResult) -> float:
    """Mean time per output token after the first, over finished requests with two or more tokens."""
    r = result.requests
    ok = (r["status"] == 0) & (r["generated_tokens"] > 1)
    if not np.any(ok):
        return math.nan
    per = (r["finish_s"][ok] - r["first_token_s"][ok]) / (r["generated_tokens"][ok] - 1)
    return float(np.mean(per))


def _cap(cap_w: float | None) -> str:
    return "uncapped" if cap_w is None else f"{cap_w:.0f} W"


def summary_text(plan: PowerPlan, groups: Sequence[ServerGroup], *, uncapped_tokens_per_s: float,
                 out_of_sample: float, verified: Mapping[str, float], cap_rows: Sequence[Mapping[str, Any]]) -> str:
    """The human summary of a power plan."""
    lines = [f"power budget {plan.budget_w / 1e3:.3g} kW, at most {plan.violation_limit:.1%} of the time above it",
             "", "cap level  tokens/s/replica  vs uncapped  mean TPOT   wall W/replica mean  p99      TDP"]
    for row in cap_rows:
        lines.append(f"{row['group']:<24} {row['tokens_per_s']:>9.1f}  {row['vs_uncapped']:>9.1%}  "
                     f"{row['tpot_s'] * 1e3:>7.1f} ms  {row['mean_w']:>9.0f}  {row['p99_w']:>7.0f}  {row['tdp_w']:>7.0f}")
    lines += ["", "chosen replicas:"]
    for g, c in zip(groups, plan.counts, strict=True):
        if c:
            lines.append(f"  {g.name}: {c} replicas ({c * g.servers:g} servers) at {_cap(g.cap_w)}")
    loss = 1 - plan.tokens_per_s / (uncapped_tokens_per_s * plan.servers) if uncapped_tokens_per_s > 0 and \
        plan.servers > 0 else math.nan
    lines += [
        f"servers: {plan.servers:g} vs {plan.tdp_servers} provisioned at TDP "
        f"(+{plan.servers_gained:g}, {plan.servers_gained / max(plan.tdp_servers, 1):+.0%})",
        f"throughput: {plan.tokens_per_s:.1f} tokens/s ({verified.get('tokens_per_s', math.nan):.1f} in the verifying "
        f"simulation); loss per server vs uncapped {loss:.1%}",
        f"budget exceeded: {plan.in_sample_violation:.2%} in sample ({plan.scenarios} scenarios), "
        f"{out_of_sample:.2%} out of sample, {verified.get('violation', math.nan):.2%} in the verifying simulation "
        f"(peak {verified.get('peak_w', math.nan) / 1e3:.3g} kW)",
        f"solver {plan.solve.describe()}",
        "caps are a run option: hwsim simulate ... --patch plan.patch.yaml --power-cap <cap> (one cap per run)",
    ]
    return "\n".join(lines)


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    raise TypeError(type(x).__name__)


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def write_plan_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    """``plan.json``, sorted keys, written atomically."""
    with atomic_text_writer(path) as f:
        json.dump(_clean(dict(data)), f, indent=2, sort_keys=True, default=_json_default)
        f.write("\n")
    return Path(path)


def write_patch(path: str | Path, changes: Mapping[str, Any], source: str) -> Path:
    """``plan.patch.yaml`` (``kind: patch``); each value is written as JSON (flow style), which YAML reads."""
    lines = ["kind: patch", f"source: {json.dumps(source)}", "set:"]
    lines += [f"  {key}: {json.dumps(value, sort_keys=True)}" for key, value in changes.items()]
    with atomic_text_writer(path) as f:
        f.write("\n".join(lines) + "\n")
    return Path(path)


def plot_power_plan(path: str | Path, times_s: np.ndarray, total_w: np.ndarray, budget_w: float,
                    tdp_total_w: float) -> Path:
    """Total wall power of the plan over time (verifying simulation) against the budget."""
    from hwsim.report.plots import _pyplot, save_figure

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot(times_s, total_w / 1e3, lw=0.8, label="plan, simulated")
    ax.axhline(budget_w / 1e3, color="red", lw=1.2, label="budget")
    ax.axhline(tdp_total_w / 1e3, color="gray", ls="--", lw=1, label="same servers at TDP")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("wall power (kW)")
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path)
