"""Sweep results on disk: Parquet parts written as batches finish, then one consolidated file.

Layout of an output folder::

    results.parquet        one row per configuration, in configuration order (or results.csv)
    parts/part-00000.parquet ...   the rows of each finished batch, in the order they finished
    sweep.json             what ran: the spec, its inputs' hashes, counts

Every file is written to a temporary file in the same folder, synced, and moved into place with
:func:`os.replace`, so a sweep killed at any moment (even with SIGKILL) leaves only complete
files; leftover temporary files are removed when the sweep resumes. A resumed sweep reads the
parts, keeps the rows of configurations already done (by key; a later part wins) and runs the
rest. Columns: ``index``, ``key``, the inputs (one per swept path, then one per named axis),
``status`` (``ok`` or ``error``), ``error`` (the message), the metrics, and ``wall_s`` (seconds
the configuration took: the one column that varies between runs).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from hwsim.errors import SpecError
from hwsim.workload.files import atomic_path

__all__ = ["Layout", "ResultStore", "FORMATS", "WALL_COLUMN", "atomic_write"]

FORMATS = ("parquet", "csv")
WALL_COLUMN = "wall_s"
METADATA_KEY = b"hwsim.sweep"


@dataclass(frozen=True, slots=True)
class Layout:
    """Column names and types of a sweep's rows."""

    inputs: tuple[str, ...]
    input_types: tuple[pa.DataType, ...]
    metrics: tuple[str, ...]
    metadata: Mapping[str, Any]

    @classmethod
    def infer(cls, inputs: Sequence[str], rows: Iterable[Mapping[str, Any]], metrics: Sequence[str],
              metadata: Mapping[str, Any]) -> Layout:
        """Type each input column from its values: bool, int64, float64, else text."""
        seen: dict[str, list[Any]] = {c: [] for c in inputs}
        for row in rows:
            for c in inputs:
                seen[c].append(row[c])
        return cls(tuple(inputs), tuple(_arrow_type(seen[c]) for c in inputs), tuple(metrics), dict(metadata))

    @property
    def columns(self) -> tuple[str, ...]:
        return ("index", "key", *self.inputs, "status", "error", *self.metrics, WALL_COLUMN)

    def schema(self) -> pa.Schema:
        fields = [pa.field("index", pa.int64()), pa.field("key", pa.string())]
        fields += [pa.field(c, t) for c, t in zip(self.inputs, self.input_types, strict=True)]
        fields += [pa.field("status", pa.string()), pa.field("error", pa.string())]
        fields += [pa.field(m, pa.float64()) for m in self.metrics]
        fields.append(pa.field(WALL_COLUMN, pa.float64()))
        meta = json.dumps({**self.metadata, "inputs": list(self.inputs), "metrics": list(self.metrics)},
                          sort_keys=True)
        return pa.schema(fields, metadata={METADATA_KEY: meta.encode("utf-8")})

    def table(self, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
        text = {c for c, t in zip(self.inputs, self.input_types, strict=True) if pa.types.is_string(t)}
        cols = {c: [_as_text(r[c]) if c in text else r.get(c) for r in rows] for c in self.columns}
        return pa.table(cols, schema=self.schema())


def _arrow_type(values: Sequence[Any]) -> pa.DataType:
    if values and all(isinstance(v, bool) for v in values):
        return pa.bool_()
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return pa.int64()
    if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return pa.float64()
    return pa.string()


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(list(value) if isinstance(value, tuple) else value, sort_keys=True, separators=(",", ":"))


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """Run ``write(file)`` on a temporary file next to ``path``, sync it, then move it into place."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    return path


class ResultStore:
    """The output folder of one sweep (see the module docstring)."""

    def __init__(self, out_dir: str | Path, layout: Layout, fmt: str = "parquet") -> None:
        if fmt not in FORMATS:
            raise SpecError("unknown results format", path="--format", expected=" or ".join(FORMATS), found=fmt)
        self.out_dir = Path(out_dir)
        self.parts_dir = self.out_dir / "parts"
        self.results_path = self.out_dir / f"results.{fmt}"
        self.layout = layout
        self.fmt = fmt
        self._next = 0

    def parts(self) -> list[Path]:
        """Complete part files, oldest first."""
        return sorted(self.parts_dir.glob("part-*.parquet")) if self.parts_dir.is_dir() else []

    def has_rows(self) -> bool:
        return bool(self.parts()) or self.results_path.exists()

    def remove_temporaries(self) -> None:
        """Delete temporary files left by a sweep that was killed while writing."""
        for folder in (self.out_dir, self.parts_dir):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    with suppress(OSError):
                        tmp.unlink()

    def load_done(self) -> dict[str, dict[str, Any]]:
        """Rows of the parts, by key (a later part wins); parts lacking a metric column are skipped."""
        wanted = ["key", "status", "error", *self.layout.metrics, WALL_COLUMN]
        done: dict[str, dict[str, Any]] = {}
        for part in self.parts():
            try:
                names = set(pq.read_schema(part).names)
                if not set(wanted) <= names:
                    continue
                rows = pq.read_table(part, columns=wanted).to_pylist()
            except (OSError, pa.ArrowException) as err:
                raise SpecError(f"cannot read a result part: {err}", file=str(part)) from None
            done.update((r["key"], r) for r in rows)
        last = self.parts()
        self._next = int(last[-1].stem.split("-")[1]) + 1 if last else 0
        return done

    def write_part(self, rows: Sequence[Mapping[str, Any]]) -> Path:
        """Write ``rows`` (full rows) as the next part, atomically."""
        if self._next == 0 and self.parts():
            self._next = int(self.parts()[-1].stem.split("-")[1]) + 1
        path = self.parts_dir / f"part-{self._next:05d}.parquet"
        self._next += 1
        table = self.layout.table(rows)
        return atomic_write(path, lambda fh: pq.write_table(table, fh))

    def write_results(self, rows: Sequence[Mapping[str, Any]]) -> Path:
        """Write every row, in the order given, as ``results.parquet`` (or ``.csv``), atomically."""
        table = self.layout.table(rows)
        if self.fmt == "csv":
            return atomic_write(self.results_path, lambda fh: pacsv.write_csv(table, fh))
        return atomic_write(self.results_path, lambda fh: pq.write_table(table, fh))

    def write_manifest(self, manifest: Mapping[str, Any]) -> Path:
        data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")

        def write(fh: BinaryIO) -> None:
            fh.write(data)

        return atomic_write(self.out_dir / "sweep.json", write)
