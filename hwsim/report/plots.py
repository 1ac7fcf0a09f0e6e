"""PNG plots of a simulation (matplotlib, imported lazily, ``Agg`` backend).

Each function draws one figure and writes one file atomically (a temporary file replaced with
:func:`os.replace`), returning its path, or ``None`` when the result has nothing to draw
(no expert load sampled, no link traffic).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.report.summary import latency_columns
from hwsim.report.tables import atomic_path
from hwsim.sim.metrics import SimResult

__all__ = [
    "save_figure",
    "plot_latency_cdf", "plot_throughput", "plot_kv", "plot_power", "plot_expert_load",
    "plot_link_traffic", "plot_all",
]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> Path:
    """Lay out ``fig``, write it as PNG atomically (no timestamp metadata) and close it."""
    plt = _pyplot()
    try:
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    finally:
        plt.close(fig)
    return Path(path)


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")


def plot_latency_cdf(result: SimResult, path: str | Path) -> Path:
    """CDFs of TTFT, TPOT and end-to-end latency of finished requests (one panel each)."""
    plt = _pyplot()
    lat = latency_columns(result.requests)
    done = result.requests["status"] == 0
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (key, label) in zip(axes, (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "end-to-end latency")),
                                strict=True):
        x = np.sort(lat[key][done & np.isfinite(lat[key])])
        if x.size:
            ax.step(x * 1e3, np.arange(1, x.size + 1) / x.size, where="post")
        else:
            _empty(ax, "no finished requests")
        ax.set_xlabel(f"{label} (ms)")
        ax.set_ylabel("fraction of requests")
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
    fig.suptitle("latency CDFs (finished requests)")
    return save_figure(fig, path)


def plot_throughput(ts: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """Output and input tokens/s over time, and running and waiting sequences below."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    t = ts["time_s"]
    top.plot(t, ts["output_tokens_per_s"], label="output (decode)")
    top.plot(t, ts["input_tokens_per_s"], label="input (prefill)", alpha=0.8)
    top.set_ylabel("tokens/s")
    top.legend(fontsize=8)
    bottom.plot(t, ts["running_seqs"], label="running")
    bottom.plot(t, ts["waiting_seqs"], label="waiting (queue)")
    bottom.set_ylabel("sequences")
    bottom.set_xlabel("simulated time (s)")
    bottom.legend(fontsize=8)
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    top.set_title("throughput and queue length")
    return save_figure(fig, path)


def _over_time(ts: Mapping[str, np.ndarray], y: np.ndarray, path: str | Path, *, ylabel: str, title: str,
               ylim: tuple[float, float] | None = None, **style: object) -> Path:
    """One quantity of the time series against simulated time."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.plot(ts["time_s"], y, **style)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    return save_figure(fig, path)


def plot_kv(ts: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """KV cache use (percent of all replicas' blocks) over time."""
    return _over_time(ts, 100.0 * np.asarray(ts["kv_use_fraction"], dtype=np.float64), path,
                      ylabel="KV blocks in use (%)", title="KV cache use", ylim=(0, 105))


def plot_power(ts: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """Mean power per device over the steps of each interval."""
    return _over_time(ts, ts["power_w_per_device"], path, ylabel="power per device (W)",
                      title="device power while stepping", marker=".", ms=3, lw=1)


def plot_expert_load(result: SimResult, path: str | Path) -> Path | None:
    """Heatmap of tokens per (MoE layer sample, expert), or ``None`` when none was sampled."""
    load = result.expert_load
    if load is None or np.ndim(load) != 2 or np.size(load) == 0:
        return None
    plt = _pyplot()
    load = np.asarray(load, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(10, max(2.5, min(8.0, 0.25 * load.shape[0] + 1.5))))
    im = ax.imshow(load, aspect="auto", interpolation="nearest", cmap="viridis")
    fig.colorbar(im, ax=ax, label="tokens routed")
    ax.set_xlabel("expert")
    ax.set_ylabel("MoE layer (sample)")
    ax.set_title("expert load")
    return save_figure(fig, path)


def plot_link_traffic(result: SimResult, path: str | Path, *, top: int = 20) -> Path | None:
    """Bytes carried by the ``top`` busiest directed links, or ``None`` when none carried any."""
    rows = sorted(((b, f"{u} -> {v}") for (u, v), b in result.link_bytes.items() if b > 0),
                  key=lambda r: (-r[0], r[1]))[:top]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.3 * len(rows) + 1.2)))
    ax.barh([name for _, name in rows][::-1], [b / 1e9 for b, _ in rows][::-1])
    ax.set_xlabel("bytes carried (GB)")
    ax.set_title(f"busiest links (top {len(rows)} of {len(result.link_bytes)})")
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(True, axis="x", alpha=0.3)
    return save_figure(fig, path)


def plot_all(result: SimResult, ts: Mapping[str, np.ndarray], out_dir: str | Path) -> list[Path]:
    """Every plot that has data, into ``out_dir``; returns the files written."""
    d = Path(out_dir)
    written = [
        plot_latency_cdf(result, d / "latency_cdf.png"),
        plot_throughput(ts, d / "throughput.png"),
        plot_kv(ts, d / "kv_use.png"),
        plot_power(ts, d / "power.png"),
        plot_expert_load(result, d / "expert_load.png"),
        plot_link_traffic(result, d / "link_traffic.png"),
    ]
    return [p for p in written if p is not None]
