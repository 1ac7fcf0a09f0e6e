"""Estimates as text, JSON and a roofline plot (``hwsim estimate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hwsim import __version__
from hwsim.perf.estimate import Estimate, PoolEstimate
from hwsim.perf.step import StepBreakdown
from hwsim.spec.hardware import Device
from hwsim.units import Dim, format_quantity

BYTES, TIME, POWER = Dim.BYTES, Dim.TIME, Dim.POWER


def _ms(x: float | None) -> str:
    return "-" if x is None else format_quantity(x, TIME)


def summary_lines(e: Estimate) -> list[str]:
    lines = [
        f"steady state at {e.input_tokens} input / {e.output_tokens} output tokens per request:",
        f"  throughput    {e.requests_per_s:,.2f} req/s, {e.output_tokens_per_s:,.0f} output tok/s "
        f"({e.output_tokens_per_s_per_device:,.0f} per device, {e.devices} devices), "
        f"{e.input_tokens_per_s:,.0f} input tok/s",
        f"  latency       TTFT {_ms(e.ttft_s)}, TPOT {_ms(e.tpot_s)} ({e.tokens_per_s_per_user:,.1f} tok/s per user)"
        + (f"; {e.concurrency:,} closed-loop users: {e.request_latency_s:,.1f} s per request"
           if e.concurrency is not None else ""),
        f"  power         {format_quantity(e.power_w, POWER)} for the devices, "
        f"{e.joules_per_output_token:.3g} J per output token",
        "  cost          " + _cost_text(e),
    ]
    for p in e.pools:
        lines += pool_lines(p)
    return lines


def _cost_text(e: Estimate) -> str:
    usd = e.usd_per_million_output_tokens
    if usd is None or e.usd_per_s is None:
        return "no price in the hardware files"
    return f"{usd:.3g} USD per million output tokens ({e.usd_per_s * 3600:,.1f} USD/h for the devices)"


def pool_lines(p: PoolEstimate) -> list[str]:
    fp = p.footprint
    kv = f"KV {format_quantity(fp.kv_bytes, BYTES)} ({fp.kv_blocks:,} blocks of {fp.kv_block_tokens} tokens)"
    return [
        f"pool {p.pool} ({p.role}, {p.devices} devices): batch {p.batch} per replica "
        f"(KV holds {p.kv_limited_batch}), step {_ms(p.step_s)}, bound by {p.step.bound}",
        f"  memory per device: weights {format_quantity(fp.weights_bytes, BYTES)}, {kv}, "
        f"runtime {format_quantity(fp.runtime_bytes, BYTES)} of {format_quantity(fp.capacity_bytes, BYTES)}",
        f"  step time: compute {_ms(p.step.compute_s)}, memory {_ms(p.step.memory_s)}, "
        f"communication {_ms(p.step.communication_s)}, overhead {_ms(p.step.overhead_s)}, "
        f"hidden by overlap {_ms(p.step.hidden_s)}; {format_quantity(p.step.power_w, POWER)} per device",
    ] + ([f"  expert offload: expected hit rate {p.offload.hit_rate:.1%}, {p.offload.misses:,.1f} experts "
          f"missed and {format_quantity(p.offload.fetched_bytes, BYTES)} fetched per step"
          + (f" ({p.offload.flash_share:.0%} from flash)" if p.offload.flash_share > 0 else "")
          + f", +{_ms(p.offload.time_s)} per step"] if p.offload is not None else [])


def breakdown_table(step: StepBreakdown, top: int = 12) -> list[str]:
    """The operators that take the most time in a step, with what bounds each."""
    rows = sorted(step.ops, key=lambda r: -r.cost.time_s * r.count)[:top]
    total = sum(r.cost.time_s * r.count for r in step.ops) or 1.0
    lines = [f"  {'operator':<28} {'x':>6} {'each':>10} {'share':>6}  bound"]
    for r in rows:
        bound = "communication" if r.communication else r.cost.bound
        lines.append(f"  {r.cost.name:<28} {r.count:>6.0f} {_ms(r.cost.time_s):>10} "
                     f"{r.cost.time_s * r.count / total:>6.1%}  {bound}")
    return lines


def to_dict(e: Estimate, inputs: dict[str, str]) -> dict[str, Any]:
    """Machine-readable estimate, with the hwsim version and input hashes."""
    return {
        "hwsim_version": __version__, "inputs": inputs,
        "input_tokens": e.input_tokens, "output_tokens": e.output_tokens,
        "requests_per_s": e.requests_per_s, "output_tokens_per_s": e.output_tokens_per_s,
        "output_tokens_per_s_per_device": e.output_tokens_per_s_per_device,
        "input_tokens_per_s": e.input_tokens_per_s, "ttft_s": e.ttft_s, "tpot_s": e.tpot_s,
        "concurrency": e.concurrency, "tokens_per_s_per_user": e.tokens_per_s_per_user,
        "request_latency_s": e.request_latency_s,
        "devices": e.devices, "power_w": e.power_w, "joules_per_output_token": e.joules_per_output_token,
        "usd_per_million_output_tokens": e.usd_per_million_output_tokens,
        "pools": [{
            "pool": p.pool, "role": p.role, "devices": p.devices, "batch": p.batch,
            "kv_limited_batch": p.kv_limited_batch, "step_s": p.step_s, "bound": p.step.bound,
            "compute_s": p.step.compute_s, "memory_s": p.step.memory_s, "communication_s": p.step.communication_s,
            "overhead_s": p.step.overhead_s, "hidden_s": p.step.hidden_s, "power_w_per_device": p.step.power_w,
            "weights_bytes_per_device": p.footprint.weights_bytes, "kv_bytes_per_device": p.footprint.kv_bytes,
            "runtime_bytes_per_device": p.footprint.runtime_bytes,
            "offload": None if p.offload is None else {
                "hit_rate": p.offload.hit_rate, "misses_per_step": p.offload.misses,
                "fetched_bytes_per_step": p.offload.fetched_bytes, "flash_share": p.offload.flash_share,
                "added_s_per_step": p.offload.time_s},
            "ops": [{"name": r.cost.name, "count": r.count, "time_s": r.cost.time_s, "flop": r.cost.flop,
                     "bytes": r.cost.bytes_moved, "bound": "communication" if r.communication else r.cost.bound}
                    for r in p.step.ops],
        } for p in e.pools],
    }


def roofline_plot(step: StepBreakdown, device: Device, dtypes: tuple[str, ...], path: str | Path) -> None:
    """Each compute operator at (FLOP per byte, achieved FLOP/s) under the device's rooflines
    (one per dtype the step computes in)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    bw = device.hbm_bytes_per_s
    fig, ax = plt.subplots(figsize=(7, 4.5))
    x = np.logspace(-1, 4, 200)
    for style, dtype in zip(("-", "--", ":"), dict.fromkeys(dtypes), strict=False):
        peak = device.peak_flop_per_s(dtype)
        ax.plot(x, np.minimum(peak, x * bw), color="black", ls=style, lw=1.2, label=f"{device.name} roofline ({dtype})")
    for r in step.ops:
        c = r.cost
        if r.communication or c.bytes_moved <= 0 or c.flop <= 0 or c.time_s <= 0:
            continue
        ax.scatter(c.flop / c.bytes_moved, c.flop / c.time_s, s=18)
        ax.annotate(c.name.split(".", 1)[-1], (c.flop / c.bytes_moved, c.flop / c.time_s), fontsize=6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("achieved FLOP/s")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    tmp = Path(path).with_name(f".{Path(path).name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def link_lines(traffic: dict[tuple[str, str], float], step_s: float, top: int = 6) -> list[str]:
    """The busiest links of a step: bytes carried and the bandwidth that implies."""
    rows = sorted(traffic.items(), key=lambda kv: -kv[1])[:top]
    lines = [f"  {'link':<34} {'bytes/step':>12} {'avg rate':>12}"]
    for (u, v), nbytes in rows:
        rate = nbytes / step_s if step_s > 0 else 0.0
        lines.append(f"  {u + ' -> ' + v:<34} {format_quantity(nbytes, BYTES):>12} "
                     f"{format_quantity(rate, Dim.BANDWIDTH):>12}")
    return lines
