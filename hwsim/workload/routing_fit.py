"""Fit routing models to recorded expert counts: Zipf skew per layer, co-activation strength.

Skew
----
``zipf`` with skew ``s`` says: popularity ``r ** -s`` by rank, each token picks ``k`` distinct
experts by successive sampling, so expert of rank ``r`` is picked by a share ``pi_s(r)`` of
the tokens (:func:`~hwsim.workload.routing_inclusion.inclusion_probabilities`, sums to ``k``).
:func:`fit_zipf` sorts the recorded counts (rank-frequency) and finds the ``s`` maximising the
composite log-likelihood ``sum_r c_(r) log pi_s(r)``: every recorded pick counted as one draw
over the ranks (a multinomial on the sorted inclusion; the ``k`` picks of one token are not
independent, so this is a composite likelihood: the point estimate is consistent, its
curvature would understate the error). Why not least squares on log-rank / log-share: it
weighs the rarely picked tail (a handful of counts, noisy logarithms) as much as the hot head
that sets load imbalance, and with ``k > 1`` the head is not a straight line in log-log (an
expert cannot be picked by more than every token, so the top shares flatten); the likelihood
uses the exact top-``k`` inclusion and weighs each expert by its counts. The least-squares
slope is reported beside it for comparison (``ls_skew``). Sorting makes the estimate rank
based: which expert is hot is not fitted (``zipf`` draws it from ``seed_permutation``).
Goodness of fit: total-variation distance between recorded and fitted pick shares (by rank),
and the largest share error.

Co-activation
-------------
From cross-layer pair counts ``N[e, f]`` (a token's expert ``e`` in one layer with its
expert ``f`` of the same rank in a later layer; the OLMoE analysis pairs ranks this way),
:func:`fit_coactivation` compares with the independent product ``N_ind = rows x cols / T``
(total variation between the two), finds the expert-to-expert map ``A`` with the largest
excess co-occurrence (an assignment, solved greedily on the excess), and estimates the
``coactivation.strength`` ``q`` of hwsim's model, in which a pick follows ``A`` with
probability ``q`` and is otherwise independent: ``N[e, A(e)] = T p_e ((1 - q) p'_A(e) + q)``,
so ``q = (followed - expected) / (T - expected)`` with ``followed = sum_e N[e, A(e)]`` and
``expected = sum_e N_ind[e, A(e)]`` (Cohen's kappa for agreement with ``A``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hwsim.errors import SpecError
from hwsim.workload.files import open_text, read_errors
from hwsim.workload.routing_inclusion import inclusion_probabilities

__all__ = [
    "SkewFit",
    "CoactivationFit",
    "FitRow",
    "fit_zipf",
    "fit_coactivation",
    "read_count_groups",
    "read_pair_groups",
    "fit_count_table",
    "zipf_shares",
]

SKEW_RANGE = (0.0, 6.0)
SKEW_WINDOW = 0.5
SKEW_TOLERANCE = 1e-3
_GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True, slots=True)
class SkewFit:
    """A Zipf fit of one layer's counts (shares are of all picks, by rank)."""

    skew: float
    ls_skew: float
    top_k: int
    experts: int
    picks: int
    tv: float
    max_share_error: float
    hottest_share: float
    fitted_hottest_share: float


@dataclass(frozen=True, slots=True)
class CoactivationFit:
    """Co-activation between two layers: strength ``q`` and how far from independence."""

    strength: float
    tv_independent: float
    followed_share: float
    expected_share: float
    pairs: int


@dataclass(frozen=True, slots=True)
class FitRow:
    """One fitted group: its key columns (e.g. model, domain, selection), layer, fit."""

    key: tuple[tuple[str, str], ...]
    layer: int
    fit: SkewFit

    def to_dict(self) -> dict[str, object]:
        return {**dict(self.key), "layer": self.layer, **asdict(self.fit)}


def zipf_shares(skew: float, experts: int, k: int) -> np.ndarray:
    """(E,) share of all picks of each rank (hottest first) under ``zipf`` with ``skew``."""
    w = np.arange(1, experts + 1, dtype=float) ** -skew
    return inclusion_probabilities(w, k) / k


def fit_zipf(counts: np.ndarray, k: int, experts: int | None = None) -> SkewFit:
    """Maximum composite-likelihood Zipf skew of per-expert pick counts (module docstring).

    ``counts``: (E,) picks per expert (any order); ``k``: experts per token; ``experts``:
    the model's expert count when some have no row (default ``len(counts)``).
    """
    c = np.sort(np.asarray(counts, dtype=float))[::-1]
    e = len(c) if experts is None else int(experts)
    if e < len(c):
        raise ValueError(f"experts ({e}) is below the {len(c)} counted")
    c = np.concatenate([c, np.zeros(e - len(c))])
    if not 1 <= k < e:
        raise ValueError(f"top_k must be in 1..{e - 1}, got {k}")
    total = c.sum()
    if total <= 0 or np.any(c < 0):
        raise ValueError("counts must be >= 0 with a positive total")
    share = c / total
    if share[0] > 1.0 / k + 1e-9:
        raise ValueError(f"the hottest expert holds {share[0]:.1%} of the picks, more than 1/top_k: "
                         f"these counts cannot come from top-{k} routing")

    def loglik(s: float) -> float:
        return float(np.dot(c, np.log(np.maximum(zipf_shares(s, e, k), 1e-300))))

    live = c > 0
    ranks = np.log(np.arange(1, e + 1)[live])
    slope = float(-np.polyfit(ranks, np.log(share[live]), 1)[0]) if live.sum() > 1 else 0.0
    # golden-section search in a window around the least-squares slope, widened while the
    # optimum sits on its edge (the log-likelihood is unimodal in the skew)
    low, high = max(SKEW_RANGE[0], slope - SKEW_WINDOW), min(SKEW_RANGE[1], slope + SKEW_WINDOW)
    while True:
        lo, hi = _golden_max(loglik, low, high)
        skew = (lo + hi) / 2
        grow_low = low > SKEW_RANGE[0] and skew - low < 2 * SKEW_TOLERANCE
        grow_high = high < SKEW_RANGE[1] and high - skew < 2 * SKEW_TOLERANCE
        if not (grow_low or grow_high):
            break
        low = max(SKEW_RANGE[0], low - 4 * SKEW_WINDOW) if grow_low else low
        high = min(SKEW_RANGE[1], high + 4 * SKEW_WINDOW) if grow_high else high
    fitted = zipf_shares(skew, e, k)
    return SkewFit(skew=skew, ls_skew=float(slope), top_k=k, experts=e, picks=int(round(total)),
                   tv=float(0.5 * np.abs(share - fitted).sum()), max_share_error=float(np.abs(share - fitted).max()),
                   hottest_share=float(share[0]), fitted_hottest_share=float(fitted[0]))


def _golden_max(f, lo: float, hi: float) -> tuple[float, float]:
    """Shrink ``[lo, hi]`` around the maximum of the unimodal ``f`` to ``SKEW_TOLERANCE``."""
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = f(a), f(b)
    while hi - lo > SKEW_TOLERANCE:
        if fa < fb:
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = f(b)
        else:
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = f(a)
    return lo, hi


def fit_coactivation(pairs: np.ndarray) -> tuple[CoactivationFit, np.ndarray]:
    """Strength of co-activation from a ``(E, E')`` pair-count matrix (module docstring);
    also returns the map ``A`` (``(E,)``, ``-1`` where an expert has no partner left)."""
    n = np.asarray(pairs, dtype=float)
    if n.ndim != 2 or n.sum() <= 0 or np.any(n < 0):
        raise ValueError("pair counts must be a non-negative (E, E') matrix with a positive total")
    total = n.sum()
    independent = np.outer(n.sum(axis=1), n.sum(axis=0)) / total
    excess = n - independent
    amap = np.full(n.shape[0], -1, dtype=np.int64)
    order = np.argsort(excess, axis=None)[::-1]           # greedy assignment on the excess
    used_row = np.zeros(n.shape[0], dtype=bool)
    used_col = np.zeros(n.shape[1], dtype=bool)
    for flat in order:
        r, col = divmod(int(flat), n.shape[1])
        if not used_row[r] and not used_col[col]:
            amap[r] = col
            used_row[r] = used_col[col] = True
            if used_row.all() or used_col.all():
                break
    rows = np.flatnonzero(amap >= 0)
    followed = float(n[rows, amap[rows]].sum())
    expected = float(independent[rows, amap[rows]].sum())
    q = (followed - expected) / (total - expected) if total > expected else 0.0
    return CoactivationFit(strength=float(q), tv_independent=float(0.5 * np.abs(n - independent).sum() / total),
                           followed_share=followed / total, expected_share=expected / total,
                           pairs=int(round(total))), amap


# ---------------------------------------------------------------------- count tables


def _rows(path: Path, need: Iterable[str], select: Mapping[str, str]) -> tuple[list[str], Iterable[tuple[int, list[str]]]]:
    f = open_text(path)
    reader = csv.reader(f)
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in (*need, *select) if c not in header]
    if missing:
        f.close()
        raise SpecError(f"missing column(s) {', '.join(missing)}", file=str(path), line=1,
                        expected="columns " + ", ".join(need), found=header)

    def gen() -> Iterable[tuple[int, list[str]]]:
        with f, read_errors(path):
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != len(header):
                    raise SpecError(f"the row has {len(row)} fields, the header {len(header)}", file=str(path),
                                    line=line)
                if all(row[header.index(k)].strip() == v for k, v in select.items()):
                    yield line, row

    return header, gen()


def _key_columns(header: list[str], fixed: Iterable[str]) -> list[str]:
    return [h for h in header if h not in set(fixed)]


def read_count_groups(path: str | Path, select: Mapping[str, str] | None = None
                      ) -> dict[tuple[tuple[str, str], ...], dict[int, dict[int, float]]]:
    """CSV ``layer, expert, count`` rows grouped by every other column (e.g. model, domain,
    selection), after the ``select`` filter: ``{key: {layer: {expert: count}}}``."""
    p = Path(path)
    fixed = ("layer", "expert", "count")
    header, rows = _rows(p, fixed, dict(select or {}))
    keys = _key_columns(header, fixed)
    at = {h: header.index(h) for h in header}
    out: dict[tuple[tuple[str, str], ...], dict[int, dict[int, float]]] = {}
    for line, row in rows:
        try:
            layer, expert, count = int(row[at["layer"]]), int(row[at["expert"]]), float(row[at["count"]])
        except ValueError:
            raise SpecError("layer and expert must be integers and count a number", file=str(p), line=line,
                            found=row) from None
        if layer < 0 or expert < 0 or not math.isfinite(count) or count < 0:
            raise SpecError("layer, expert and count must be >= 0", file=str(p), line=line, found=row)
        key = tuple((k, row[at[k]].strip()) for k in keys)
        layer_counts = out.setdefault(key, {}).setdefault(layer, {})
        if expert in layer_counts:
            raise SpecError(f"layer {layer}, expert {expert} appears twice in group {dict(key)}", file=str(p),
                            line=line)
        layer_counts[expert] = count
    if not out:
        raise SpecError("no rows" + (f" match {dict(select or {})}" if select else ""), file=str(p))
    return out


def read_pair_groups(path: str | Path, select: Mapping[str, str] | None = None
                     ) -> dict[tuple[tuple[str, str], ...], dict[tuple[int, int], np.ndarray]]:
    """CSV ``layer_from, layer_to, expert_from, expert_to, count`` grouped by the other columns:
    ``{key: {(layer_from, layer_to): (E, E') counts}}``."""
    p = Path(path)
    fixed = ("layer_from", "layer_to", "expert_from", "expert_to", "count")
    header, rows = _rows(p, fixed, dict(select or {}))
    keys = _key_columns(header, fixed)
    at = {h: header.index(h) for h in header}
    cells: dict[tuple[tuple[str, str], ...], dict[tuple[int, int], list[tuple[int, int, float]]]] = {}
    for line, row in rows:
        try:
            lf, lt = int(row[at["layer_from"]]), int(row[at["layer_to"]])
            ef, et, count = int(row[at["expert_from"]]), int(row[at["expert_to"]]), float(row[at["count"]])
        except ValueError:
            raise SpecError("layers and experts must be integers and count a number", file=str(p), line=line,
                            found=row) from None
        if min(lf, lt, ef, et) < 0 or not math.isfinite(count) or count < 0:
            raise SpecError("layers, experts and count must be >= 0", file=str(p), line=line, found=row)
        key = tuple((k, row[at[k]].strip()) for k in keys)
        cells.setdefault(key, {}).setdefault((lf, lt), []).append((ef, et, count))
    if not cells:
        raise SpecError("no rows" + (f" match {dict(select or {})}" if select else ""), file=str(p))
    out: dict[tuple[tuple[str, str], ...], dict[tuple[int, int], np.ndarray]] = {}
    for key, layers in cells.items():
        for pair, items in layers.items():
            arr = np.array(items)
            e = int(max(arr[:, 0].max(), arr[:, 1].max())) + 1
            m = np.zeros((e, e))
            np.add.at(m, (arr[:, 0].astype(int), arr[:, 1].astype(int)), arr[:, 2])
            out.setdefault(key, {})[pair] = m
    return out


def fit_count_table(path: str | Path, *, top_k: int | Mapping[str, int] | None = None,
                    select: Mapping[str, str] | None = None, experts: int | Mapping[str, int] | None = None
                    ) -> list[FitRow]:
    """Fit :func:`fit_zipf` to every (group, layer) of a counts CSV.

    ``top_k``: picks per token; one number, or per value of the ``model`` column. A group
    whose ``selection`` column is ``top1`` uses 1. ``experts``: the model's expert count (one
    number or per model; default: the largest expert id seen in the group + 1).
    """
    groups = read_count_groups(path, select)
    rows = []
    for key, layers in sorted(groups.items()):
        d = dict(key)
        model = d.get("model", "")
        if d.get("selection") == "top1":
            k = 1
        elif isinstance(top_k, Mapping):
            if model not in top_k:
                raise SpecError(f"no top_k known for model '{model}'", file=str(path), path="top_k",
                                expected="--top-k K", found=model)
            k = top_k[model]
        elif top_k is None:
            raise SpecError("top_k is needed to fit top-k counts", file=str(path), path="top_k",
                            expected="--top-k K (experts per token)")
        else:
            k = top_k
        seen = max(max(exp) for exp in layers.values()) + 1
        e = experts.get(model, seen) if isinstance(experts, Mapping) else (experts or seen)
        for layer in sorted(layers):
            counts = np.zeros(e)
            for expert, count in layers[layer].items():
                if expert >= e:
                    raise SpecError(f"expert {expert} is beyond the {e} experts", file=str(path), found=expert)
                counts[expert] = count
            try:
                rows.append(FitRow(key=key, layer=layer, fit=fit_zipf(counts, k, e)))
            except ValueError as err:
                raise SpecError(f"{dict(key)} layer {layer}: {err}", file=str(path)) from None
    return rows
