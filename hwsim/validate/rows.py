"""One validation row: a published measurement beside hwsim's prediction.

``error = predicted / measured - 1`` (signed: positive means hwsim predicts more than was
measured; for a time that is "too slow", for a throughput "too fast"). A case hwsim cannot
express yet is a row without a prediction that names the missing feature.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

KINDS = ("operator", "communication", "end-to-end", "offload", "power", "memory")
"""The groups of the validation table, in the order they are printed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationRow:
    """One compared number.

    ``modelled`` False marks a row shown for completeness but left out of the medians (the
    ``note`` says why); ``missing`` names the feature hwsim lacks when ``predicted`` is None.
    """

    kind: str
    case: str
    label: str
    unit: str
    measured: float
    predicted: float | None
    tier: int = 2
    modelled: bool = True
    note: str = ""
    missing: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown validation kind {self.kind!r}; known: {', '.join(KINDS)}")
        if self.predicted is None and not self.missing:
            raise ValueError(f"{self.case}: a row without a prediction must name the missing feature")

    @property
    def error(self) -> float | None:
        """Signed relative error, or None when there is no prediction."""
        if self.predicted is None or not self.measured:
            return None
        return self.predicted / self.measured - 1.0

    @property
    def counted(self) -> bool:
        """Whether the row enters the per-kind median."""
        return self.modelled and self.error is not None and math.isfinite(self.error)


def median_abs_error(rows: Iterable[ValidationRow]) -> tuple[float | None, int]:
    """(median |error| over the counted rows, their number); None when there are none."""
    errs = [abs(r.error) for r in rows if r.counted and r.error is not None]
    return (statistics.median(errs) if errs else None), len(errs)


def by_kind(rows: Sequence[ValidationRow]) -> dict[str, list[ValidationRow]]:
    """Rows grouped by kind, in :data:`KINDS` order, empty kinds left out."""
    out: dict[str, list[ValidationRow]] = {}
    for kind in KINDS:
        sel = [r for r in rows if r.kind == kind]
        if sel:
            out[kind] = sel
    return out


__all__ = ["KINDS", "ValidationRow", "by_kind", "median_abs_error"]
