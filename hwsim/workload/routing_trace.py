"""Recorded routing: per-token expert ids and per-layer histograms, their files.

Two kinds of record (docs/routing.md has the formats with examples):

* :class:`RoutingTrace`, the experts each token picked: ``ids (T, L, k)`` (``-1``: a
  zero-computation expert) and where each sequence starts. Files: ``.npz`` with ``ids``
  (int16 or int32), optional ``sequence_starts (S,)``, ``layers (L,)`` (the MoE-layer index
  of each recorded layer) and ``num_experts``; or ``.parquet`` in long form, one row per pick,
  columns ``token, layer, rank, expert`` (int), optional ``sequence`` (the sequence of the
  token); ``layer`` there is the recorded MoE-layer index.
* :class:`RoutingHistogram`, per-layer expert counts: ``counts (W, L, E)`` over ``W`` windows
  (``W = 1``: one histogram). Files: ``.npz`` with ``counts`` ``(L, E)`` or ``(W, L, E)`` and
  optional ``layers``; or CSV with columns ``layer, expert, count`` (plus any others, e.g.
  ``model, domain, selection``, that a ``select`` filter keeps rows by).

Readers check shapes and values and raise :class:`~hwsim.errors.SpecError` naming the file and
what they found; Parquet is read in row batches and CSV line by line. Writers are atomic (a
temporary file renamed into place).
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.errors import SpecError
from hwsim.workload.files import atomic_path, open_text, read_errors

__all__ = [
    "RoutingTrace",
    "RoutingHistogram",
    "read_routing_trace",
    "read_routing_histogram",
    "write_routing_trace",
    "parse_select",
    "TRACE_SUFFIXES",
    "HISTOGRAM_SUFFIXES",
]

TRACE_SUFFIXES = (".npz", ".parquet")
HISTOGRAM_SUFFIXES = (".npz", ".csv", ".csv.gz")
PARQUET_COLUMNS = ("token", "layer", "rank", "expert")
MAX_EXPERT_ID = 32767


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True, slots=True, eq=False)
class RoutingTrace:
    """Experts picked by ``T`` consecutive tokens in ``L`` MoE layers, ``k`` each.

    ``ids``: ``(T, L, k)`` int32, ``-1`` a zero-computation expert. ``sequence_starts``:
    ``(S,)`` int64, the first token of each sequence (starts with 0, increasing; a sequence
    runs to the next start). ``layers``: ``(L,)`` the MoE-layer index of each recorded layer
    (default ``0..L-1``). ``num_experts``: the model's expert count when known (default: the
    largest id + 1).
    """

    ids: np.ndarray
    sequence_starts: np.ndarray
    layers: np.ndarray | None = None
    num_experts: int | None = None

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids)
        if ids.ndim != 3 or ids.shape[1] < 1 or ids.shape[2] < 1:
            raise ValueError(f"ids must be a (tokens, layers, k) array, got shape {ids.shape}")
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"ids must be integers, got {ids.dtype}")
        if ids.size and (ids.min() < -1 or ids.max() > MAX_EXPERT_ID):
            raise ValueError(f"expert ids must be in -1..{MAX_EXPERT_ID}, got {ids.min()}..{ids.max()}")
        starts = np.asarray(self.sequence_starts, dtype=np.int64).reshape(-1)
        if len(ids) and (len(starts) == 0 or starts[0] != 0 or np.any(np.diff(starts) <= 0)
                         or starts[-1] >= len(ids)):
            raise ValueError("sequence_starts must start at 0 and increase strictly, below the token count")
        layers = None
        if self.layers is not None:
            layers = np.asarray(self.layers, dtype=np.int64).reshape(-1)
            if len(layers) != ids.shape[1] or np.any(layers < 0) or np.any(np.diff(layers) <= 0):
                raise ValueError(f"layers must be {ids.shape[1]} increasing MoE-layer indices >= 0")
            layers = _readonly(layers)
        if self.num_experts is not None:
            if self.num_experts < 1 or (ids.size and ids.max() >= self.num_experts):
                raise ValueError(f"num_experts ({self.num_experts}) must exceed every expert id")
            object.__setattr__(self, "num_experts", int(self.num_experts))
        object.__setattr__(self, "ids", _readonly(ids.astype(np.int32, copy=True)))
        object.__setattr__(self, "sequence_starts", _readonly(starts.copy()))
        object.__setattr__(self, "layers", layers)

    @property
    def tokens(self) -> int:
        return int(self.ids.shape[0])

    @property
    def num_layers(self) -> int:
        return int(self.ids.shape[1])

    @property
    def top_k(self) -> int:
        return int(self.ids.shape[2])

    @property
    def experts(self) -> int:
        """``num_experts``, or the largest id + 1 when unknown."""
        if self.num_experts is not None:
            return self.num_experts
        return int(self.ids.max()) + 1 if self.ids.size and self.ids.max() >= 0 else 1

    @property
    def layer_indices(self) -> np.ndarray:
        return self.layers if self.layers is not None else np.arange(self.num_layers)

    def counts(self) -> np.ndarray:
        """``(L, E)`` int64 picks of each real expert per recorded layer."""
        e = self.experts
        out = np.zeros((self.num_layers, e), dtype=np.int64)
        for layer in range(self.num_layers):
            picks = self.ids[:, layer, :].ravel()
            out[layer] = np.bincount(picks[picks >= 0], minlength=e)
        return out

    def sequence_lengths(self) -> np.ndarray:
        """(S,) tokens of each sequence."""
        return np.diff(np.append(self.sequence_starts, self.tokens))


@dataclass(frozen=True, slots=True, eq=False)
class RoutingHistogram:
    """Expert counts per window and recorded layer: ``counts (W, L, E)`` (non-negative).

    ``layers``: ``(L,)`` the MoE-layer index of each recorded layer (default ``0..L-1``).
    """

    counts: np.ndarray
    layers: np.ndarray | None = None

    def __post_init__(self) -> None:
        c = np.asarray(self.counts, dtype=float)
        if c.ndim == 2:
            c = c[None]
        if c.ndim != 3 or 0 in c.shape:
            raise ValueError(f"counts must be (layers, experts) or (windows, layers, experts), got shape {c.shape}")
        if not np.all(np.isfinite(c)) or np.any(c < 0):
            raise ValueError("counts must be finite and >= 0")
        if np.any(c.sum(axis=2) <= 0):
            raise ValueError("every layer of every window needs a positive count")
        layers = None
        if self.layers is not None:
            layers = np.asarray(self.layers, dtype=np.int64).reshape(-1)
            if len(layers) != c.shape[1] or np.any(layers < 0) or np.any(np.diff(layers) <= 0):
                raise ValueError(f"layers must be {c.shape[1]} increasing MoE-layer indices >= 0")
            layers = _readonly(layers)
        object.__setattr__(self, "counts", _readonly(c.copy()))
        object.__setattr__(self, "layers", layers)

    @property
    def windows(self) -> int:
        return int(self.counts.shape[0])

    @property
    def num_layers(self) -> int:
        return int(self.counts.shape[1])

    @property
    def num_experts(self) -> int:
        return int(self.counts.shape[2])

    @property
    def layer_indices(self) -> np.ndarray:
        return self.layers if self.layers is not None else np.arange(self.num_layers)


# ---------------------------------------------------------------------- reading


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".csv.gz" if name.endswith(".csv.gz") else path.suffix.lower()


def read_routing_trace(path: str | Path) -> RoutingTrace:
    """Read an ids trace (``.npz`` or ``.parquet``; see the module docstring)."""
    p = Path(path)
    suffix = _suffix(p)
    if suffix == ".npz":
        with _npz(p) as data:
            if "ids" not in data:
                raise SpecError("no 'ids' array in the file", file=str(p), path="ids",
                                expected="an ids array (tokens, layers, k)", found=sorted(data))
            ids = _array(data, "ids", p, ndim=3, integer=True)
            starts = _array(data, "sequence_starts", p, ndim=1, integer=True) if "sequence_starts" in data else None
            layers = _array(data, "layers", p, ndim=1, integer=True) if "layers" in data else None
            experts = _scalar(data, "num_experts", p) if "num_experts" in data else None
    elif suffix == ".parquet":
        ids, starts, layers = _read_parquet(p)
        experts = None
    else:
        raise SpecError("unknown routing trace format", file=str(p),
                        expected="a file ending in " + " or ".join(TRACE_SUFFIXES), found=p.name)
    if starts is None:
        starts = np.zeros(min(1, len(ids)), dtype=np.int64)
    try:
        return RoutingTrace(ids=ids, sequence_starts=starts, layers=layers, num_experts=experts)
    except ValueError as err:
        raise SpecError(str(err), file=str(p)) from None


def read_routing_histogram(path: str | Path, select: Mapping[str, str] | None = None) -> RoutingHistogram:
    """Read per-layer expert counts (``.npz`` or CSV; see the module docstring).

    ``select``: for CSV, keep only rows whose columns equal these values (e.g. ``{"model":
    "olmoe", "domain": "arxiv", "selection": "topk"}``); the kept rows must give each
    ``(layer, expert)`` at most once.
    """
    p = Path(path)
    suffix = _suffix(p)
    if suffix == ".npz":
        if select:
            raise SpecError("select filters apply to CSV counts only", file=str(p), found=dict(select))
        with _npz(p) as data:
            if "counts" not in data:
                raise SpecError("no 'counts' array in the file", file=str(p), path="counts",
                                expected="counts (layers, experts) or (windows, layers, experts)",
                                found=sorted(data))
            counts = _array(data, "counts", p, ndim=None, integer=False)
            layers = _array(data, "layers", p, ndim=1, integer=True) if "layers" in data else None
        if counts.ndim not in (2, 3):
            raise SpecError("counts has the wrong shape", file=str(p), path="counts",
                            expected="(layers, experts) or (windows, layers, experts)", found=counts.shape)
    elif suffix in (".csv", ".csv.gz"):
        counts, layers = _read_count_csv(p, dict(select or {}))
    else:
        raise SpecError("unknown routing histogram format", file=str(p),
                        expected="a file ending in " + " or ".join(HISTOGRAM_SUFFIXES), found=p.name)
    try:
        return RoutingHistogram(counts=counts, layers=layers)
    except ValueError as err:
        raise SpecError(str(err), file=str(p), path="counts") from None


@contextmanager
def _npz(path: Path) -> Iterator[Any]:
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise SpecError("file not found", file=str(path)) from None
    except IsADirectoryError:
        raise SpecError("is a folder, expected a file", file=str(path)) from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise SpecError(f"not a readable .npz archive: {err}", file=str(path)) from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise SpecError("not an .npz archive (a single array?)", file=str(path), expected="an .npz archive")
    try:
        with data:
            yield data
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise SpecError(f"broken .npz archive: {err}", file=str(path)) from None


def _array(data: Any, key: str, path: Path, *, ndim: int | None, integer: bool) -> np.ndarray:
    try:
        a = np.asarray(data[key])
    except ValueError as err:  # object arrays need pickle: refused
        raise SpecError(f"cannot read '{key}': {err}", file=str(path), path=key) from None
    if ndim is not None and a.ndim != ndim:
        raise SpecError(f"'{key}' has {a.ndim} dimensions", file=str(path), path=key,
                        expected=f"{ndim} dimensions", found=a.shape)
    kind = np.integer if integer else np.number
    if not np.issubdtype(a.dtype, kind) or a.dtype == np.bool_:
        raise SpecError(f"'{key}' has the wrong type", file=str(path), path=key,
                        expected="integers" if integer else "numbers", found=str(a.dtype))
    return a


def _scalar(data: Any, key: str, path: Path) -> int:
    a = _array(data, key, path, ndim=None, integer=True)
    if a.size != 1:
        raise SpecError(f"'{key}' must be one integer", file=str(path), path=key, found=a.shape)
    return int(a.reshape(-1)[0])


def _read_parquet(path: Path) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Long-form picks -> (ids (T, L, k), sequence_starts or None, layers)."""
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except FileNotFoundError:
        raise SpecError("file not found", file=str(path)) from None
    except (OSError, ValueError) as err:
        raise SpecError(f"not a readable Parquet file: {err}", file=str(path)) from None
    names = handle.schema_arrow.names
    missing = [c for c in PARQUET_COLUMNS if c not in names]
    if missing:
        raise SpecError(f"missing column(s) {', '.join(missing)}", file=str(path),
                        expected="columns " + ", ".join(PARQUET_COLUMNS) + " (and optionally sequence)",
                        found=names)
    wanted = list(PARQUET_COLUMNS) + (["sequence"] if "sequence" in names else [])
    parts: dict[str, list[np.ndarray]] = {c: [] for c in wanted}
    for batch in handle.iter_batches(columns=wanted, batch_size=1 << 20):
        for c in wanted:
            col = batch.column(c)
            if col.null_count:
                raise SpecError(f"column '{c}' has missing values", file=str(path), path=c)
            values = col.to_numpy(zero_copy_only=False)
            if not np.issubdtype(values.dtype, np.integer):
                raise SpecError(f"column '{c}' must hold integers", file=str(path), path=c, found=str(values.dtype))
            parts[c].append(values.astype(np.int64))
    cols = {c: np.concatenate(v) if v else np.zeros(0, np.int64) for c, v in parts.items()}
    if not len(cols["token"]):
        raise SpecError("the file holds no picks", file=str(path))
    layers, layer_col = np.unique(cols["layer"], return_inverse=True)
    tokens, k = int(cols["token"].max()) + 1, int(cols["rank"].max()) + 1
    if cols["token"].min() < 0 or cols["rank"].min() < 0 or layers[0] < 0:
        raise SpecError("token, layer and rank must be >= 0", file=str(path))
    ids = np.full((tokens, len(layers), k), -2, dtype=np.int64)
    flat = (cols["token"] * len(layers) + layer_col) * k + cols["rank"]
    if len(np.unique(flat)) != len(flat):
        raise SpecError("a (token, layer, rank) appears twice", file=str(path))
    ids.reshape(-1)[flat] = cols["expert"]
    if np.any(ids == -2):
        raise SpecError("some (token, layer, rank) picks are missing: every token needs k picks in every "
                        "layer", file=str(path), expected=f"{tokens} x {len(layers)} x {k} picks", found=len(flat))
    starts = None
    if "sequence" in cols:
        seq = np.full(tokens, -1, dtype=np.int64)
        seq[cols["token"]] = cols["sequence"]
        if np.any(np.diff(seq) < 0):
            raise SpecError("sequence ids must not decrease with token", file=str(path), path="sequence")
        starts = np.flatnonzero(np.diff(seq, prepend=seq[0] - 1) != 0)
    return ids, starts, layers


def parse_select(text: str | None) -> dict[str, str]:
    """``"model=olmoe,domain=arxiv"`` -> ``{"model": "olmoe", "domain": "arxiv"}``."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise SpecError("a select filter is key=value", path="select", expected="key=value[,key=value...]",
                            found=part)
        out[key.strip()] = value.strip()
    return out


def _read_count_csv(path: Path, select: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """``layer, expert, count`` rows (filtered by ``select``) -> ((L, E) counts, layers)."""
    found: dict[tuple[int, int], float] = {}
    with open_text(path) as f, read_errors(path):
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        need = ("layer", "expert", "count")
        missing = [c for c in (*need, *select) if c not in header]
        if missing:
            raise SpecError(f"missing column(s) {', '.join(missing)}", file=str(path), line=1,
                            expected="columns layer, expert, count (and those named in select)", found=header)
        at = {name: header.index(name) for name in (*need, *select)}
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise SpecError(f"the row has {len(row)} fields, the header {len(header)}", file=str(path), line=line)
            if any(row[at[key]].strip() != value for key, value in select.items()):
                continue
            try:
                layer, expert = int(row[at["layer"]]), int(row[at["expert"]])
                count = float(row[at["count"]])
            except ValueError:
                raise SpecError("layer and expert must be integers and count a number", file=str(path),
                                line=line, found=row) from None
            if layer < 0 or not 0 <= expert <= MAX_EXPERT_ID or not np.isfinite(count) or count < 0:
                raise SpecError("layer and expert must be >= 0 and count a finite number >= 0",
                                file=str(path), line=line, found=row)
            if (layer, expert) in found:
                raise SpecError(f"layer {layer}, expert {expert} appears twice after filtering (is a select "
                                "filter missing?)", file=str(path), line=line,
                                expected="one row per (layer, expert), e.g. --select model=olmoe,domain=arxiv,"
                                "selection=topk")
            found[(layer, expert)] = count
    if not found:
        raise SpecError("no rows left" + (f" after the select filter {select}" if select else ""), file=str(path))
    layers = np.array(sorted({layer for layer, _ in found}), dtype=np.int64)
    experts = max(expert for _, expert in found) + 1
    counts = np.zeros((len(layers), experts))
    row_of = {int(layer): i for i, layer in enumerate(layers)}
    for (layer, expert), count in found.items():
        counts[row_of[layer], expert] = count
    return counts, layers


# ---------------------------------------------------------------------- writing


def write_routing_trace(path: str | Path, trace: RoutingTrace) -> Path:
    """Write ``trace`` atomically: ``.npz`` (compressed; ids as int16 when they fit) or
    ``.parquet`` (long form with a ``sequence`` column)."""
    p = Path(path)
    suffix = _suffix(p)
    if suffix not in TRACE_SUFFIXES:
        raise SpecError("unknown routing trace format", file=str(p),
                        expected="a file ending in " + " or ".join(TRACE_SUFFIXES), found=p.name)
    with atomic_path(p) as tmp:
        if suffix == ".npz":
            arrays: dict[str, np.ndarray] = {
                "ids": trace.ids.astype(np.int16 if trace.experts <= MAX_EXPERT_ID + 1 else np.int32),
                "sequence_starts": trace.sequence_starts,
                "layers": trace.layer_indices,
            }
            if trace.num_experts is not None:
                arrays["num_experts"] = np.array(trace.num_experts, dtype=np.int64)
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)  # type: ignore[arg-type]
        else:
            _write_parquet(tmp, trace)
    return p


def _write_parquet(path: Path, trace: RoutingTrace) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    t, layers, k = trace.ids.shape
    token = np.repeat(np.arange(t, dtype=np.int64), layers * k)
    layer = np.tile(np.repeat(trace.layer_indices.astype(np.int64), k), t)
    rank = np.tile(np.arange(k, dtype=np.int64), t * layers)
    sequence = np.repeat(np.arange(len(trace.sequence_starts), dtype=np.int64), trace.sequence_lengths())
    table = pa.table({"token": token, "layer": layer, "rank": rank,
                      "expert": trace.ids.reshape(-1).astype(np.int32),
                      "sequence": np.repeat(sequence, layers * k)})
    pq.write_table(table, path)
