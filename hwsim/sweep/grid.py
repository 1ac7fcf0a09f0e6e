"""Expand a sweep's axes into configurations: grid, zip, random and Latin-hypercube samples.

A configuration is the base files plus a patch (field path -> value). Its key is the SHA-256
of the canonical JSON of the patch, the base files' hashes, the options that change a result
(mode, seed, request shape, simulation limits, SLOs) and the hwsim version, so that a resumed
sweep recognises work already done, whatever order or process produced it.

* ``grid``: every combination; the first axis varies slowest (like nested loops).
* ``zip``: the i-th value of every axis together (axes of equal length).
* ``random``: ``samples`` independent draws; each axis picks a value uniformly (or a quantile
  of its range), from ``numpy.random.default_rng(seed)``.
* ``latin-hypercube``: ``samples`` draws stratified per axis (McKay, Beckman and Conover, "A
  comparison of three methods for selecting values of input variables in the analysis of
  output from a computer code", Technometrics 1979): each axis's ``[0, 1)`` is cut into
  ``samples`` equal strata, each stratum is used once, in a random order per axis; a discrete
  axis maps the stratum's point to a value index, so its values appear as evenly as possible.

Random designs may repeat a configuration; repeats share a key and are computed once.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwsim import __version__
from hwsim.errors import SpecError
from hwsim.io.sweep_spec import Axis, SweepSpec

__all__ = ["Configuration", "configurations", "configuration_key", "canonical_json", "input_columns"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Configuration:
    """One point of a sweep: its position, its patch, its input columns and its key."""

    index: int
    patch: tuple[tuple[str, Any], ...]
    inputs: tuple[tuple[str, Any], ...]
    key: str


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys: equal values give equal text.

    >>> canonical_json({"tp": 8, "ep": 32})
    '{"ep":32,"tp":8}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def configuration_key(patch: Sequence[tuple[str, Any]], base_hashes: Mapping[str, str],
                      options: Mapping[str, Any], version: str = __version__) -> str:
    """SHA-256 (hex) of everything that decides a configuration's result."""
    text = canonical_json({"patch": [[p, v] for p, v in patch], "bases": dict(base_hashes),
                           "options": dict(options), "version": version})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def input_columns(spec: SweepSpec) -> tuple[str, ...]:
    """The input column names: every swept path, then each named axis (its labels)."""
    cols = [p for axis in spec.axes for p in axis.paths]
    names = [axis.name for axis in spec.axes if axis.name is not None]
    clash = set(cols) & set(names) or {n for n in names if names.count(n) > 1}
    if clash:
        raise SpecError(f"axis name '{sorted(clash)[0]}' is used twice (as a name or a path)", file=spec.file,
                        path="axes", expected="distinct axis names")
    return (*cols, *names)


def configurations(spec: SweepSpec, base_hashes: Mapping[str, str]) -> list[Configuration]:
    """Every configuration of ``spec``, in a deterministic order (see the module docstring)."""
    input_columns(spec)
    options = spec.options()
    out = []
    for index, picks in enumerate(_design(spec)):
        patch: list[tuple[str, Any]] = []
        inputs: list[tuple[str, Any]] = []
        labels: list[tuple[str, Any]] = []
        for axis, (choice, label) in zip(spec.axes, picks, strict=True):
            pairs = axis.patch(choice)
            patch += pairs
            inputs += pairs
            if axis.name is not None:
                labels.append((axis.name, label if label is not None else _text(choice)))
        out.append(Configuration(index=index, patch=tuple(patch), inputs=(*inputs, *labels),
                                 key=configuration_key(patch, base_hashes, options)))
    return out


def _text(choice: Any) -> str:
    return choice if isinstance(choice, str) else canonical_json(list(choice) if isinstance(choice, tuple) else choice)


Pick = tuple[Any, str | None]  # (the axis's value, its label)


def _design(spec: SweepSpec) -> Iterator[tuple[Pick, ...]]:
    axes = spec.axes
    if spec.combine == "grid":
        for idx in itertools.product(*(range(a.size or 0) for a in axes)):
            yield tuple(_discrete(a, i) for a, i in zip(axes, idx, strict=True))
    elif spec.combine == "zip":
        for i in range(axes[0].size or 0):
            yield tuple(_discrete(a, i) for a in axes)
    else:
        n = int(spec.samples or 0)
        rng = np.random.default_rng(spec.seed)
        q = rng.random((n, len(axes))) if spec.combine == "random" else latin_hypercube(n, len(axes), rng)
        for row in q:
            yield tuple(_at(a, float(x)) for a, x in zip(axes, row, strict=True))


def latin_hypercube(n: int, dims: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points in ``[0, 1)^dims``, one in each of the ``n`` strata of every dimension.

    >>> q = latin_hypercube(4, 2, np.random.default_rng(0))
    >>> sorted((q[:, 0] * 4).astype(int).tolist()), sorted((q[:, 1] * 4).astype(int).tolist())
    ([0, 1, 2, 3], [0, 1, 2, 3])
    """
    q = np.empty((n, dims))
    for d in range(dims):
        q[:, d] = (rng.permutation(n) + rng.random(n)) / n
    return q


def _discrete(axis: Axis, i: int) -> Pick:
    assert axis.choices is not None  # grid and zip axes are lists (checked by the loader)
    return axis.choices[i], axis.label(i)


def _at(axis: Axis, q: float) -> Pick:
    if axis.span is not None:
        return axis.span.at(q), None
    size = axis.size or 0
    return _discrete(axis, min(size - 1, math.floor(q * size)))
