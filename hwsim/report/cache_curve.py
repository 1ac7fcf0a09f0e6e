"""Expert-cache hit rate against cache size: the printed table, ``cache_curve.csv`` and
``cache_curve.png`` (matplotlib imported inside the plotting function, ``Agg`` backend).

Each file is written atomically (a temporary file renamed into place). The CSV is long-form,
one row per (cache size, policy), so it loads straight into a data frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hwsim.perf.expert_cache import CacheCurve
from hwsim.report.plots import save_figure
from hwsim.report.tables import write_csv

__all__ = ["curve_table", "write_curve_csv", "plot_curve", "multiple_label"]

POLICY_LABELS = {
    "lru": "LRU", "lfu": "LFU", "fifo": "FIFO", "static": "static-hot", "window": "window",
    "belady": "Belady (optimal)", "segment": "segment bound (SCH)",
}


def multiple_label(size: int, top_k: int) -> str:
    """``16`` experts with top-8 -> ``'2k'``; ``12`` -> ``'1.5k'``."""
    return f"{size / top_k:g}k" if top_k > 0 else ""


def _scope_words(curve: CacheCurve) -> str:
    return "experts per layer" if curve.scope == "layer" else "experts per device (all layers)"


def curve_table(curve: CacheCurve) -> str:
    """The hit rates as an aligned text table: one row per size, one column per policy."""
    names = [POLICY_LABELS.get(p, p) for p in curve.policies]
    head = ["cache", "x top-k", *names]
    rows = [[str(size), multiple_label(size, curve.top_k),
             *(f"{rate:.1%}" for rate in curve.hit_rate[i])] for i, size in enumerate(curve.sizes)]
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True))
             for row in [head, *rows]]
    return "\n".join(lines)


def write_curve_csv(curve: CacheCurve, path: str | Path) -> Path:
    """``cache_curve.csv``: ``cache_experts, cache_topk_multiple, scope, policy, hits, accesses,
    hit_rate, tokens, tokens_per_step, window, segment_tokens, warm``."""
    n_sizes, n_pol = len(curve.sizes), len(curve.policies)
    sizes = np.repeat(np.asarray(curve.sizes, dtype=np.int64), n_pol)
    columns = {
        "cache_experts": sizes,
        "cache_topk_multiple": sizes / max(curve.top_k, 1),
        "scope": np.array([curve.scope] * (n_sizes * n_pol), dtype=object),
        "policy": np.array(list(curve.policies) * n_sizes, dtype=object),
        "hits": curve.hits.reshape(-1),
        "accesses": curve.accesses.reshape(-1),
        "hit_rate": curve.hit_rate.reshape(-1),
        "tokens": np.full(sizes.shape, curve.tokens, dtype=np.int64),
        "tokens_per_step": np.full(sizes.shape, curve.tokens_per_step, dtype=np.int64),
        "window": np.full(sizes.shape, curve.window, dtype=np.int64),
        "segment_tokens": np.full(sizes.shape, curve.segment_tokens, dtype=np.int64),
        "warm": np.full(sizes.shape, int(curve.warm), dtype=np.int64),
    }
    return write_csv(columns, path)


def plot_curve(curve: CacheCurve, path: str | Path, *, title: str = "") -> Path:
    """``cache_curve.png``: hit rate against cache size, one line per policy; the top axis
    gives the size as a multiple of the top-k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    try:
        x = np.asarray(curve.sizes, dtype=float)
        for j, policy in enumerate(curve.policies):
            dashed = policy in ("belady", "segment")          # bounds, not policies one can run
            ax.plot(x, curve.hit_rate[:, j], marker="o", linestyle="--" if dashed else "-",
                    label=POLICY_LABELS.get(policy, policy))
        ax.set_xlabel(f"cache size ({_scope_words(curve)})")
        ax.set_ylabel("hit rate")
        ax.set_ylim(0.0, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        if curve.top_k > 0:
            k = float(curve.top_k)
            top = ax.secondary_xaxis("top", functions=(lambda v: v / k, lambda v: v * k))
            top.set_xlabel("x top-k")
        if title:
            ax.set_title(title, fontsize="medium")
    except BaseException:
        plt.close(fig)
        raise
    return save_figure(fig, path)
