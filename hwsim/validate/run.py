"""Collect the validation rows of the selected kinds.

Operator, communication and power rows, and the offload and placement rows of
:mod:`hwsim.validate.offload`, are built from the published cases alone (the package carries
their scenarios); memory and end-to-end rows come from the runnable index
(``validation/cases.yaml`` by default), which names a scenario file per case and also lists, of
any kind, the cases hwsim cannot express yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hwsim.errors import SpecError
from hwsim.validate.comm import comm_rows
from hwsim.validate.endtoend import DEFAULT_INDEX, end_to_end_rows
from hwsim.validate.offload import offload_placement_rows
from hwsim.validate.operators import operator_rows
from hwsim.validate.power import power_rows
from hwsim.validate.rows import KINDS, ValidationRow
from hwsim.validate.shared import SharedData


def parse_kinds(text: str | Iterable[str] | None) -> frozenset[str]:
    """``"operator,communication"`` -> the kinds; None or empty -> all of :data:`KINDS`."""
    if text is None:
        return frozenset(KINDS)
    items = [k.strip() for k in (text.split(",") if isinstance(text, str) else text) if k.strip()]
    unknown = [k for k in items if k not in KINDS]
    if unknown:
        raise SpecError(f"unknown validation kind {unknown[0]!r}", path="--kind",
                        expected=", ".join(KINDS), found=unknown[0])
    return frozenset(items) if items else frozenset(KINDS)


@dataclass(frozen=True, slots=True)
class Validation:
    """The rows of one run, the folder of the published data and the index used."""

    rows: tuple[ValidationRow, ...]
    shared_dir: Path
    index: Path | None


def run_validation(*, kinds: Iterable[str] | str | None = None, shared_dir: str | Path | None = None,
                   index: str | Path | None = None) -> Validation:
    """Predict every selected row; ``index`` None uses ``validation/cases.yaml`` when present."""
    selected = parse_kinds(kinds)
    shared = SharedData.locate(shared_dir)
    rows: list[ValidationRow] = []
    if "operator" in selected:
        rows += operator_rows(shared.cases)
    if "communication" in selected:
        rows += comm_rows(shared)
    if "power" in selected:
        rows += power_rows(shared.cases)
    rows += offload_placement_rows(shared, selected)
    idx = Path(index) if index is not None else (DEFAULT_INDEX if DEFAULT_INDEX.is_file() else None)
    if idx is not None:   # the index may also list operator or power cases that cannot run yet
        rows += end_to_end_rows(shared, idx, selected)
    return Validation(rows=tuple(rows), shared_dir=shared.folder, index=idx)


__all__ = ["Validation", "parse_kinds", "run_validation"]
