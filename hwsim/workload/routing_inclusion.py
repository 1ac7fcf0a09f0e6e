"""Inclusion probabilities of successive sampling, and counts sampled from them directly.

``inclusion_probabilities(w, k)[i]`` is the chance that slot ``i`` is among a token's ``k``
picks when picks are made one by one proportional to the weights of the slots left (the law
of :mod:`hwsim.workload.routing_sampler`). Expected load per expert is ``tokens * pi``.

It has no closed form; it is the exponential-race integral

    pi_i = integral_0^inf  w_i exp(-w_i t) P(fewer than k other slots arrived by t) dt,

where slot ``j`` has arrived by ``t`` with probability ``q_j = 1 - exp(-w_j t)``
independently. The count of arrivals is Poisson-binomial; it is tracked as a polynomial
truncated at degree ``k - 1``. Slots of equal weight form one class (a binomial factor), and
leaving one slot out is a product of prefix and suffix products over the classes, so no
unstable division is needed. The integral is a trapezoid rule in ``log t`` (24 points per
decade) plus the analytic part below the grid; ``sum(pi) = k`` holds to 1e-7 or better
(about 0.1 s for 256 experts, once per model).

:func:`approx_counts` draws per-slot counts for many tokens without per-token work: counts
are ``Binomial(tokens, pi_i)`` (their exact marginal law), then shifted to the exact total
``tokens * k`` by spreading the difference over slots in proportion to ``pi (1 - pi)``
(Gaussian conditioning on the total). Means are exact; the joint law is approximate (the true
counts are sums of per-token k-subsets). The routing models use it above ``exact_max_tokens``
tokens, where per-slot fluctuations are a few per cent and the approximation is tested
against the exact sampler.
"""

from __future__ import annotations

import numpy as np

__all__ = ["inclusion_probabilities", "zero_slot_weight", "approx_counts"]

_POINTS_PER_DECADE = 24
_HEAD = 1e-6    # grid starts where the fastest slot has arrived with probability ~1e-6
_TAIL = 40.0    # and ends once k+1 slots have arrived except with probability ~exp(-40)


def _poly_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Product of polynomials truncated to their common length (last axis = degree)."""
    k = a.shape[-1]
    out = a * b[..., :1]
    for i in range(1, k):
        out[..., i:] += a[..., : k - i] * b[..., i : i + 1]
    return out


def _binomial_poly(m: np.ndarray, w: np.ndarray, t: np.ndarray, k: int) -> np.ndarray:
    """(classes, len(t), k): P(n of m slots of weight w arrived by t), n = 0..k-1."""
    n = np.arange(k)
    ratio = np.where(n[None, 1:] <= m[:, None], (m[:, None] - n[None, 1:] + 1) / n[None, 1:], 1.0)
    log_choose = np.concatenate([np.zeros((len(m), 1)), np.cumsum(np.log(ratio), axis=1)], axis=1)
    wt = w[:, None] * t[None, :]                                   # (C, T)
    log_q = np.log(-np.expm1(-wt))
    log_p = (log_choose[:, None, :] + n * log_q[..., None]
             - (m[:, None, None] - n) * wt[..., None])
    return np.exp(np.where(n <= m[:, None, None], log_p, -np.inf))


def _grid(w: np.ndarray, k: int) -> np.ndarray:
    """Log-spaced times covering the race for positive weights ``w`` (any scale)."""
    desc = np.sort(w[w > 0])[::-1]
    t_lo = _HEAD / desc[0]
    t_hi = _TAIL / desc[min(k, len(desc) - 1)]
    decades = max(np.log10(t_hi / t_lo), 1.0)
    return np.geomspace(t_lo, t_hi, int(decades * _POINTS_PER_DECADE) + 2)


def _integrate(w: np.ndarray, below: np.ndarray, t: np.ndarray) -> np.ndarray:
    """sum over the grid of w e^{-wt} P(...)(t) dt, trapezoid in log t, plus the head."""
    integrand = w[:, None] * t[None, :] * np.exp(-w[:, None] * t[None, :]) * below
    log_t = np.log(t)
    body = np.sum((integrand[:, 1:] + integrand[:, :-1]) * np.diff(log_t) / 2, axis=1)
    return body - np.expm1(-w * t[0])


def inclusion_probabilities(weights: np.ndarray, k: int) -> np.ndarray:
    """(S,) chance that each slot is among the ``k`` picks of successive sampling.

    >>> np.round(inclusion_probabilities(np.ones(4), 2), 6).tolist()
    [0.5, 0.5, 0.5, 0.5]
    """
    w = np.asarray(weights, dtype=float)
    positive = w > 0
    if not 1 <= k <= int(positive.sum()):
        raise ValueError(f"k ({k}) must be in 1..{int(positive.sum())} (the slots with weight > 0)")
    if k == int(positive.sum()):
        return positive.astype(float)
    if k == 1:
        return w / w.sum()
    values, inverse, mult = np.unique(w, return_inverse=True, return_counts=True)
    live = values > 0
    if live.sum() == 1:  # equal weights: symmetry
        return np.where(positive, k / positive.sum(), 0.0)
    v, mv = values[live], mult[live]
    t = _grid(w, k)
    full = _binomial_poly(mv, v, t, k)                      # (C, T, k)
    one = np.zeros((len(t), k))
    one[:, 0] = 1.0
    prefix = np.empty((len(v) + 1, len(t), k))
    prefix[0] = one
    for c in range(len(v)):
        prefix[c + 1] = _poly_mul(prefix[c], full[c])
    minus_one = _binomial_poly(mv - 1, v, t, k)
    below = np.empty((len(v), len(t)))
    suffix = one
    for c in range(len(v) - 1, -1, -1):
        others = _poly_mul(_poly_mul(prefix[c], suffix), minus_one[c])
        below[c] = others.sum(axis=-1)
        suffix = _poly_mul(suffix, full[c])
    pi_class = np.zeros(len(values))
    pi_class[live] = np.clip(_integrate(v, below, t), 0.0, 1.0)
    return pi_class[inverse]


def zero_slot_weight(real_weights: np.ndarray, num_zero: int, k: int, real_per_token: float) -> float:
    """Weight of each of ``num_zero`` equal extra slots such that the real slots get
    ``real_per_token`` of the ``k`` picks on average (LongCat-Flash's zero experts).

    Requires ``max(0, k - num_zero) < real_per_token < min(k, real slots)``, or
    ``real_per_token == k`` (the extra slots are never picked: weight 0).
    """
    real = np.asarray(real_weights, dtype=float)
    real = real / real.sum()
    n_real = int(np.count_nonzero(real))
    if real_per_token == k and k <= n_real:
        return 0.0
    lo_target, hi_target = max(0, k - num_zero), min(k, n_real)
    if not lo_target < real_per_token < hi_target:
        raise ValueError(f"{real_per_token:g} real experts per token is not reachable: it must lie "
                         f"strictly between {lo_target} and {hi_target}")
    want_zero = (k - real_per_token) / num_zero               # pi of one zero slot
    # one grid wide enough for every weight tried; the real slots' product is computed once
    x_lo, x_hi = real[real > 0].min() * 1e-6, real.max() * 1e6
    t_lo, t_hi = _HEAD / x_hi, _grid(real, k)[-1]
    t = np.geomspace(t_lo, t_hi, int(np.log10(t_hi / t_lo) * _POINTS_PER_DECADE) + 2)
    values, mult = np.unique(real[real > 0], return_counts=True)
    full = _binomial_poly(mult, values, t, k)
    product = np.zeros((len(t), k))
    product[:, 0] = 1.0
    for c in range(len(values)):
        product = _poly_mul(product, full[c])

    def pi_zero(x: float) -> float:
        others = _poly_mul(product, _binomial_poly(np.array([num_zero - 1]), np.array([x]), t, k)[0])
        return float(_integrate(np.array([x]), others.sum(axis=-1)[None, :], t)[0])

    lo, hi = np.log(x_lo), np.log(x_hi)
    for _ in range(60):
        mid = (lo + hi) / 2
        if pi_zero(float(np.exp(mid))) < want_zero:
            lo = mid
        else:
            hi = mid
    return float(np.exp((lo + hi) / 2))


def approx_counts(rng: np.random.Generator, tokens: int, pi: np.ndarray, k: int) -> np.ndarray:
    """Counts for ``tokens`` tokens with inclusion probabilities ``pi`` (each row sums to
    ``k``): binomial marginals, total fixed to ``tokens * k`` (see the module docstring).

    ``pi`` is ``(S,)`` or ``(B, S)`` for ``B`` independent draws; the result has its shape.
    """
    p = np.clip(np.atleast_2d(np.asarray(pi, dtype=float)), 0.0, 1.0)
    counts = rng.binomial(tokens, p).astype(np.int64)
    spread = p * (1.0 - p)
    gap = tokens * k - counts.sum(axis=1)
    while np.any(gap):
        sign = np.sign(gap)[:, None]
        room = np.where(sign > 0, tokens - counts, counts)
        weights = np.where(room > 0, spread, 0.0)
        weights = np.where(weights.sum(axis=1, keepdims=True) > 0, weights, room.astype(float))
        total = weights.sum(axis=1, keepdims=True)
        probs = np.divide(weights, total, out=np.full_like(weights, 1.0 / weights.shape[1]), where=total > 0)
        step = np.minimum(rng.multinomial(np.abs(gap), probs), room)
        counts += sign * step
        gap -= sign[:, 0] * step.sum(axis=1)
    return counts if np.ndim(pi) == 2 else counts[0]
