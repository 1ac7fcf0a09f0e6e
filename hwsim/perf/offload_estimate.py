"""Expected cost of expert-cache misses in a steady-state step (``hwsim estimate``).

The simulator routes every step's tokens through real expert caches
(:mod:`hwsim.perf.expert_cache`); the closed-form estimate has no step history, so it prices
the *expected* misses of its steady step instead, with the same per-miss costs
(:class:`~hwsim.perf.offload.OffloadCost`: contended host-link fetches, flash reads, CPU
experts, prefetch windows).

Per MoE layer and EP rank, a step of ``T`` tokens touches expert ``e`` with probability
``a_e = 1 - (1 - p_e)^T`` (``p_e``: the routing model's chance that a token picks ``e``;
uniform ``k / E`` unless given). A cache of ``C`` slots then hits ``e`` with probability:

* ``lru`` (and ``fifo``, ``window``, approximated as LRU): Che's approximation (Che, Tung and
  Wang, IEEE JSAC 2002; exact in the limit of many experts, accurate for few): an expert is
  resident when it was touched in the last ``t_c`` steps, ``h_e = 1 - (1 - a_e)^t_c``, with the
  characteristic time ``t_c`` such that ``sum_e h_e = C``;
* ``static`` and ``lfu``: the ``C`` most-touched experts are pinned (LFU converges to them
  under stationary routing).

A step expects ``m_e = a_e (1 - h_e)`` misses of ``e``, each carrying its ``T p_e / a_e``
expected tokens. The expected misses of each rank are rounded up to whole experts (the ones
most likely to miss), costed by :meth:`OffloadCost.step
<hwsim.perf.offload.OffloadCost.step>`, and the cost is scaled back by expected / whole
misses. Flash-backed caches read a miss from flash unless the expert was used in the last
``W = flash.window_tokens`` steps, which keep it in host DRAM (the simulator's windowing): a
miss of ``e`` is in that window with probability ``q_e = 1 - (1 - a_e)^W`` for a pinned cache
and ``q_e = 1 - (1 - a_e)^max(W - t_c, 0)`` for an LRU-like one (a miss means no touch in the
last ``t_c`` steps). The step's cost is then the mix of its all-flash and all-DRAM
evaluations, weighted by the misses' expected DRAM share ``sum m_e q_e / sum m_e``.
Prefetch marks ``accuracy`` of the misses as prefetched and adds the wrong guesses (the next
most likely misses, no tokens).
All MoE layers share the routing of the first unless a per-layer ``inclusion`` is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hwsim.perf.offload import OffloadCost
from hwsim.perf.step import StepBreakdown

ATTENTION_ROW_TAGS = ("norm", "_proj", "attn_", "kv_write")
"""Operator-name tags of a layer's attention part (the window a pre-attention prefetch hides in)."""


def attention_share(step: StepBreakdown) -> float:
    """Share of a step's operator time spent in attention rows (:data:`ATTENTION_ROW_TAGS`)."""
    total = sum(r.cost.time_s * r.count for r in step.ops)
    att = sum(r.cost.time_s * r.count for r in step.ops
              if any(tag in r.cost.name.split(".", 1)[-1] for tag in ATTENTION_ROW_TAGS))
    return att / total if total > 0 else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class OffloadExpectation:
    """Expected miss cost of one steady step of one replica."""

    time_s: float              # seconds the misses add to the step
    hit_rate: float            # expected hits / expected touches, over the step's layers and ranks
    misses: float              # expected experts missed per step (all MoE layers, all ranks)
    fetched_bytes: float       # expected bytes brought into device memory per step (all ranks)
    flash_share: float = 0.0   # expected share of those misses read from flash (the rest: DRAM)


def hit_probabilities(access: np.ndarray, capacity: int, policy: str) -> np.ndarray:
    """Chance that each expert is resident when a step touches it (see the module docstring).

    >>> hit_probabilities(np.full(8, 0.25), 4, "lru").round(3)
    array([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    >>> hit_probabilities(np.array([0.9, 0.5, 0.1]), 1, "static")
    array([1., 0., 0.])
    """
    return _residence(access, capacity, policy)[0]


def dram_probabilities(access: np.ndarray, capacity: int, policy: str, window_steps: int) -> np.ndarray:
    """Chance that a miss of each expert finds it in the host's DRAM window: the expert was
    used in one of the last ``window_steps`` steps, though not recently enough to be resident.

    >>> dram_probabilities(np.array([0.5, 0.1]), 0, "static", 2).round(3)
    array([0.75, 0.19])
    >>> dram_probabilities(np.full(8, 0.25), 4, "lru", 2)       # t_c = 2.41 steps > 2: none
    array([0., 0., 0., 0., 0., 0., 0., 0.])
    """
    return _in_window(access, _residence(access, capacity, policy)[1], window_steps)


def _in_window(access: np.ndarray, t_c: float, window_steps: int) -> np.ndarray:
    """:func:`dram_probabilities` given the cache's characteristic time ``t_c`` (steps)."""
    a = np.clip(np.asarray(access, dtype=float), 0.0, 1.0)
    span = max(float(window_steps) - t_c, 0.0)
    out: np.ndarray = np.where(a >= 1.0, float(span > 0), -np.expm1(span * np.log1p(-np.minimum(a, 1.0 - 1e-15))))
    return out


def _residence(access: np.ndarray, capacity: int, policy: str) -> tuple[np.ndarray, float]:
    """Residence probabilities and the cache's characteristic time in steps: Che's ``t_c`` for
    LRU-like policies (a miss means no touch in the last ``t_c`` steps), 0 for pinned caches
    (a miss is an expert that is never resident)."""
    a = np.clip(np.asarray(access, dtype=float), 0.0, 1.0)
    n = a.size
    if capacity >= n:
        return np.ones(n), math.inf
    if capacity <= 0:
        return np.zeros(n), 0.0
    if policy in ("static", "lfu"):
        h = np.zeros(n)
        h[np.argsort(-a, kind="stable")[:capacity]] = 1.0
        return h, 0.0
    always = a >= 1.0
    if always.sum() >= capacity:
        h = np.zeros(n)
        h[np.flatnonzero(always)[:capacity]] = 1.0
        return h, 0.0
    rate = -np.log1p(-np.where(always, 0.0, a))    # Bernoulli per step -> rate per step
    need = capacity - float(always.sum())
    # Newton on the concave, increasing sum of the others' residence (from below: it never
    # overshoots), bracketed by bisection as a safeguard
    lo, hi, t = 0.0, math.inf, need / max(float(rate.sum()), 1e-300)
    for _ in range(200):
        e = np.exp(-rate * t)
        f = float((1.0 - e)[~always].sum()) - need
        if abs(f) <= 1e-10 * max(need, 1.0):
            break
        lo, hi = (t, hi) if f < 0 else (lo, t)
        step = t - f / max(float((rate * e)[~always].sum()), 1e-300)
        t = step if lo < step < hi else (0.5 * (lo + hi) if math.isfinite(hi) else 2.0 * t + 1.0)
    return np.where(always, 1.0, -np.expm1(-rate * t)), t


def expected_offload(cost: OffloadCost, *, tokens: float, inclusion: np.ndarray, capacity: int, layers: int,
                     layer_time_s: float, attention_share: float) -> OffloadExpectation:
    """Expected seconds, hit rate, misses and fetched bytes of one step of ``tokens`` tokens.

    ``inclusion``: ``(E,)`` or ``(layers, E)`` chance that a token picks each expert;
    ``capacity``: cache slots per MoE layer on each EP rank; ``layer_time_s`` and
    ``attention_share``: one layer's step time and its attention part (the prefetch windows).
    """
    off = cost.offload
    inc = np.atleast_2d(np.asarray(inclusion, dtype=float))
    per_layer = inc.shape[0] > 1
    rows = inc if per_layer else inc[:1]
    pre = off.prefetch
    window = 0.0
    if pre.enabled:
        window = layer_time_s if pre.source == "predictor" else layer_time_s * attention_share
    lay, exp, tok, prefetched = [], [], [], []
    expected = whole = touched = hits = in_window = 0.0
    window_steps = off.flash.window_tokens if off.backing == "flash" else 0
    access = _access(rows, tokens)
    rank_experts = [np.flatnonzero(cost.rank_of_expert == r) for r in range(cost.ranks)]
    for li, (p, a) in enumerate(zip(rows, access, strict=True)):
        for mine in rank_experts:
            h, t_c = _residence(a[mine], capacity, off.policy)
            m = a[mine] * (1.0 - h)
            touched += float(a[mine].sum())
            hits += float((a[mine] * h).sum())
            n = float(m.sum())
            if n <= 1e-12:
                continue
            k = min(mine.size, math.ceil(n - 1e-9))
            expected += n
            if window_steps:
                in_window += float((m * _in_window(a[mine], t_c, window_steps)).sum())
            whole += k
            order = np.argsort(-m, kind="stable")
            pick = mine[order[:k]]
            lay.append(np.full(k, li, np.int64))
            exp.append(pick)
            tok.append(np.maximum(1, np.round(tokens * p[pick] / np.maximum(a[pick], 1e-30))).astype(np.int64))
            prefetched.append(np.zeros(k, bool))
            if pre.enabled:
                right = round(pre.accuracy * k)
                prefetched[-1][:right] = True
                wrong = mine[order[k:k + (k - right)]]
                if wrong.size:
                    lay.append(np.full(wrong.size, li, np.int64))
                    exp.append(wrong)
                    tok.append(np.zeros(wrong.size, np.int64))
                    prefetched.append(np.ones(wrong.size, bool))
    hit_rate = hits / touched if touched > 0 else 1.0
    scale_layers = 1 if per_layer else layers
    if not lay:
        return OffloadExpectation(time_s=0.0, hit_rate=hit_rate, misses=0.0, fetched_bytes=0.0)
    layer, expert, token, pre_mask = (np.concatenate(x) for x in (lay, exp, tok, prefetched))
    gpu_layer_s = _expected_gpu_layer_s(cost, rows, access, tokens)

    def evaluate(from_flash: bool) -> tuple[float, float]:
        st = cost.step(layer=layer, expert=expert, tokens=token, flash=np.full(layer.size, from_flash),
                       prefetched=pre_mask, gpu_layer_s=gpu_layer_s, window_s=window)
        return st.time_s, st.fetched_bytes

    flash_share = 1.0 - in_window / expected if off.backing == "flash" else 0.0
    time_s, fetched = evaluate(flash_share > 0.0)
    if 0.0 < flash_share < 1.0:                 # the DRAM window serves the rest of the misses
        dram_s, _ = evaluate(False)
        time_s = flash_share * time_s + (1.0 - flash_share) * dram_s
    share = expected / whole
    return OffloadExpectation(time_s=time_s * share * scale_layers, hit_rate=hit_rate,
                              misses=expected * scale_layers, fetched_bytes=fetched * share * scale_layers,
                              flash_share=flash_share)


def _access(inclusion: np.ndarray, tokens: float) -> np.ndarray:
    """Chance that a step of ``tokens`` tokens touches each expert: ``1 - (1 - p)^T``."""
    out: np.ndarray = -np.expm1(tokens * np.log1p(-np.clip(inclusion, 0.0, 1.0 - 1e-15)))
    return out


def _expected_gpu_layer_s(cost: OffloadCost, inclusion: np.ndarray, access: np.ndarray,
                          tokens: float) -> np.ndarray:
    """``(layers, R)`` expected GPU time of each rank's experts with every expert resident: each
    expert is touched with probability ``a_e`` and then carries ``T p_e / a_e`` tokens."""
    out = np.zeros((inclusion.shape[0], cost.ranks))
    for li, (p, a) in enumerate(zip(inclusion, access, strict=True)):
        per = np.where(a > 0, tokens * p / np.maximum(a, 1e-30), 0.0)
        out[li] = np.bincount(cost.rank_of_expert, weights=a * cost.gpu_s(per), minlength=cost.ranks)
    return out


__all__ = ["ATTENTION_ROW_TAGS", "OffloadExpectation", "attention_share", "dram_probabilities", "expected_offload",
           "hit_probabilities"]
