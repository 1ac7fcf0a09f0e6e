"""Read a sweep file (``kind: sweep``) into a frozen :class:`SweepSpec`, and check its axes.

A sweep starts from a base cluster file (with its ``deployment:`` section) and, in simulate
mode, a trace. Each axis names one field path of the cluster file (or several linked paths)
and its values; ``combine`` says how axes combine (grid, zip, random, Latin hypercube). See
``docs/sweeps.md`` for the format and ``hwsim/io/schemas/v1/sweep.json`` for its schema.

Checks happen in two stages, as for every hwsim file: the JSON Schema, then meaning (linked
values have one entry per path, ranges only where values are drawn, zipped axes have equal
lengths). :func:`check_axes` then resolves every axis path against the base document and checks
the patched document against the cluster and deployment schemas for each distinct value, so a
misspelt path or a value of the wrong type fails before any configuration runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwsim.errors import SpecError
from hwsim.io.fields import Fields
from hwsim.io.patch import apply_patch, check_path
from hwsim.io.source import Document, read_document
from hwsim.io.validate import check_schema
from hwsim.units import Dim

__all__ = ["ValueRange", "Axis", "SweepSpec", "load_sweep_spec", "check_axes", "MODES", "COMBINES"]

MODES = ("estimate", "simulate")
COMBINES = ("grid", "zip", "random", "latin-hypercube")
_ROOT = "cluster."  # an optional prefix naming the cluster file's top level


@dataclass(frozen=True, slots=True, kw_only=True)
class ValueRange:
    """A numeric range sampled by ``random`` and ``latin-hypercube`` sweeps.

    >>> ValueRange(low=1.0, high=100.0, log=True).at(0.5)
    10.0
    >>> ValueRange(low=8, high=11, integer=True).at(0.99)
    11
    >>> ValueRange(low=400, high=700, unit="W").at(0.5)
    '550 W'
    """

    low: float
    high: float
    log: bool = False
    integer: bool = False
    unit: str | None = None

    def __post_init__(self) -> None:
        if self.high < self.low:
            raise ValueError(f"high ({self.high:g}) is below low ({self.low:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low:g}")

    def at(self, q: float) -> Any:
        """The value at quantile ``q`` in ``[0, 1)`` of the range (uniform, or in log space)."""
        lo, hi = self.low, self.high
        if self.integer and not self.log:
            x: float = min(math.floor(lo + (math.floor(hi) - lo + 1) * q), math.floor(hi))
        else:
            x = lo * (hi / lo) ** q if self.log else lo + (hi - lo) * q
        value: Any = int(round(x)) if self.integer else float(f"{x:.12g}")
        return f"{value:.6g} {self.unit}" if self.unit else value


@dataclass(frozen=True, slots=True, kw_only=True)
class Axis:
    """One axis: linked field ``paths`` and either discrete ``choices`` or a numeric ``span``.

    For one path a choice is its value; for linked paths a choice is a tuple with one value per
    path. ``name`` and ``labels`` (one per choice) add a column of readable labels.
    """

    paths: tuple[str, ...]
    choices: tuple[Any, ...] | None = None
    span: ValueRange | None = None
    name: str | None = None
    labels: tuple[str, ...] | None = None
    where: str = ""  # location in the sweep file, for error messages

    @property
    def size(self) -> int | None:
        """Number of discrete choices (``None`` for a range)."""
        return None if self.choices is None else len(self.choices)

    def patch(self, choice: Any) -> tuple[tuple[str, Any], ...]:
        """``(path, value)`` pairs that set ``choice`` (a value, or one value per linked path)."""
        if len(self.paths) == 1:
            return ((self.paths[0], choice),)
        return tuple(zip(self.paths, choice, strict=True))

    def label(self, index: int) -> str | None:
        return None if self.labels is None else self.labels[index]


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepSpec:
    """A checked sweep file; paths are resolved, quantities are SI floats."""

    file: str
    name: str
    cluster_file: Path
    trace_file: Path | None
    mode: str
    combine: str
    samples: int | None
    seed: int
    axes: tuple[Axis, ...]
    metrics: tuple[str, ...] | None
    input_tokens: int | None = None
    output_tokens: int | None = None
    batch: int | None = None
    max_requests: int | None = None
    duration_s: float | None = None
    router: str = "round-robin"
    power_cap_w: float | None = None
    warmup_s: float = 0.0
    slo_ttft_s: float | None = None
    slo_tpot_s: float | None = None

    def options(self) -> dict[str, Any]:
        """Everything besides the axes that changes a configuration's result (for its key)."""
        names = ("mode", "seed", "input_tokens", "output_tokens", "batch", "max_requests", "duration_s",
                 "router", "power_cap_w", "warmup_s", "slo_ttft_s", "slo_tpot_s")
        return {n: getattr(self, n) for n in names}


def load_sweep_spec(path: str | Path) -> SweepSpec:
    """Read and check a sweep file (stage 1: schema; stage 2: meaning). Errors are located."""
    doc = read_document(path)
    if not isinstance(doc.data, dict):
        raise SpecError("expected a sweep mapping", file=doc.file, expected="kind: sweep", found=doc.data)
    try:
        check_schema(doc.data, "sweep")
        return _build(Fields(doc.data), doc)
    except SpecError as err:
        if err.file is not None:
            raise
        raise doc.error(err) from None


def _build(f: Fields, doc: Document) -> SweepSpec:
    here = Path(doc.file).parent
    base = f.sub("base")
    cluster = _existing(here / base.require("cluster"), base.at("cluster"))
    trace = _existing(here / base.get("trace"), base.at("trace")) if base.has("trace") else None
    mode = f.get("mode", "estimate")
    if mode == "simulate" and trace is None:
        raise SpecError("simulate mode replays a trace", path=base.at("trace"), expected="a trace file")
    combine = f.get("combine", "grid")
    samples = f.get("samples")
    if combine in ("random", "latin-hypercube") and samples is None:
        raise SpecError(f"combine: {combine} draws 'samples' configurations", path="samples",
                        expected="a number of samples")
    if combine in ("grid", "zip") and samples is not None:
        raise SpecError(f"'samples' is for random and latin-hypercube, not {combine}", path="samples",
                        expected="no samples, or combine: random", found=samples)
    axes = tuple(_axes(f))
    _check_combination(axes, combine)
    est, sim, slo = f.sub("estimate"), f.sub("simulate"), f.sub("slo")
    return SweepSpec(
        file=doc.file, name=f.get("name", Path(doc.file).stem), cluster_file=cluster, trace_file=trace,
        mode=mode, combine=combine, samples=samples, seed=f.get("seed", 0), axes=axes,
        metrics=tuple(f.get("metrics")) if f.has("metrics") else None,
        input_tokens=est.get("input_tokens"), output_tokens=est.get("output_tokens"), batch=est.get("batch"),
        max_requests=sim.get("max_requests"), duration_s=sim.quantity("duration", Dim.TIME, None, positive=True),
        router=sim.get("router", "round-robin"), power_cap_w=sim.quantity("power_cap", Dim.POWER, None, positive=True),
        warmup_s=sim.quantity("warmup", Dim.TIME, 0.0),
        slo_ttft_s=slo.quantity("ttft", Dim.TIME, None, positive=True),
        slo_tpot_s=slo.quantity("tpot", Dim.TIME, None, positive=True),
    )


def _existing(path: Path, where: str) -> Path:
    if not path.is_file():
        raise SpecError("file not found", path=where, expected="an existing file (relative to the sweep file)",
                        found=str(path))
    return path


def _axes(f: Fields) -> Iterator[Axis]:
    raw = f.require("axes")
    entries = ([(f"axes.{p}", {"path": p, "values": v}) for p, v in raw.items()] if isinstance(raw, dict)
               else [(f"axes[{i}]", entry) for i, entry in enumerate(raw)])
    seen: dict[str, str] = {}
    for where, entry in entries:
        axis = _axis(Fields(entry, where), where)
        for p in axis.paths:
            if p in seen:
                raise SpecError(f"field path '{p}' is swept twice", path=where,
                                expected=f"each path in one axis (also in {seen[p]})", found=p)
            seen[p] = where
        yield axis


def _axis(f: Fields, where: str) -> Axis:
    if f.has("path") == f.has("paths"):
        raise SpecError("an axis names either 'path' or 'paths' (linked fields)", path=where,
                        expected="path: a.b or paths: [a.b, c.d]")
    paths = tuple(_normal(p) for p in ([f.data["path"]] if f.has("path") else f.data["paths"]))
    values = f.require("values")
    name = f.get("name")
    labels = tuple(f.get("labels")) if f.has("labels") else None
    if isinstance(values, dict):
        if len(paths) > 1:
            raise SpecError("linked paths take a list of values, not a range", path=f.at("values"))
        if labels is not None:
            raise SpecError("a range has no labels", path=f.at("labels"))
        span = _span(values, f.at("values"))
        return Axis(paths=paths, span=span, name=name, where=where)
    choices: tuple[Any, ...] = tuple(values)
    if len(paths) > 1:
        for i, v in enumerate(values):
            if not isinstance(v, list) or len(v) != len(paths):
                raise SpecError("each value of linked paths is a list with one entry per path",
                                path=f"{f.at('values')}[{i}]", expected=f"a list of {len(paths)} values", found=v)
        choices = tuple(tuple(v) for v in values)
    if labels is not None and len(labels) != len(choices):
        raise SpecError("one label per value", path=f.at("labels"), expected=f"{len(choices)} labels",
                        found=len(labels))
    if labels is not None and name is None:
        raise SpecError("labels need a name (the column that holds them)", path=f.at("name"), expected="a name")
    return Axis(paths=paths, choices=choices, name=name, labels=labels, where=where)


def _normal(path: str) -> str:
    return path[len(_ROOT):] if path.startswith(_ROOT) else path


def _span(values: dict[str, Any], where: str) -> ValueRange:
    try:
        return ValueRange(low=values["low"], high=values["high"], log=values.get("log", False),
                          integer=values.get("integer", False), unit=values.get("unit"))
    except ValueError as err:
        raise SpecError(str(err), path=where, found=values) from None


def _check_combination(axes: tuple[Axis, ...], combine: str) -> None:
    if combine in ("grid", "zip"):
        for axis in axes:
            if axis.span is not None:
                raise SpecError(f"a range is sampled: it needs combine: random or latin-hypercube, not {combine}",
                                path=f"{axis.where}.values" if axis.where.startswith("axes[") else axis.where,
                                expected="a list of values")
    if combine == "zip":
        sizes = {axis.where: axis.size for axis in axes}
        if len(set(sizes.values())) > 1:
            listed = ", ".join(f"{w}: {n}" for w, n in sizes.items())
            raise SpecError("zipped axes need the same number of values", path="axes",
                            expected="equal lengths", found=listed)


# -- axes against the base document ------------------------------------------------------------
def check_axes(spec: SweepSpec) -> Document:
    """Resolve every axis path in the base cluster file, and schema-check each distinct value.

    Returns the parsed base document. Raises a SpecError located in the sweep file that names
    the axis path and says what the base file holds there.
    """
    base = read_document(spec.cluster_file)
    _check_document(base.data, base)
    sweep = read_document(spec.file)
    for axis in spec.axes:
        for path in axis.paths:
            try:
                check_path(base.data, path)
            except SpecError as err:
                raise _axis_error(err, path, axis, spec, sweep) from None
        samples = axis.choices if axis.choices is not None else _span_ends(axis)
        for choice in samples:
            try:
                _check_document(apply_patch(base.data, axis.patch(choice)), None)
            except SpecError as err:
                raise _axis_error(err, ", ".join(axis.paths), axis, spec, sweep) from None
    return base


def _span_ends(axis: Axis) -> tuple[Any, ...]:
    assert axis.span is not None  # an axis has choices or a span
    return (axis.span.at(0.0), axis.span.at(0.999999))


def _check_document(data: Any, doc: Document | None) -> None:
    """Stage 1 of a cluster document and of its deployment section (errors relative, or located)."""
    if not isinstance(data, dict):
        err = SpecError("expected a cluster mapping", found=data)
        raise doc.error(err) if doc is not None else err
    body = {"kind": "cluster", "version": 1, **data}
    try:
        check_schema(body, "cluster")
        if "deployment" not in body:
            raise SpecError("a sweep's base needs a 'deployment:' section", path="deployment",
                            expected="a deployment mapping")
        try:
            check_schema(body["deployment"], "deployment")
        except SpecError as err:
            raise err.with_context(prefix="deployment") from None
    except SpecError as err:
        raise (doc.error(err) if doc is not None else err) from None


def _axis_error(err: SpecError, path: str, axis: Axis, spec: SweepSpec, sweep: Document) -> SpecError:
    found_at = f" (at {err.path})" if err.path and err.path != path else ""
    return SpecError(f"axis '{path}' does not fit {spec.cluster_file}: {err.message}{found_at}",
                     file=spec.file, path=axis.where, line=sweep.line_of(axis.where),
                     expected=err.expected, found=err.found)
