"""Small helpers shared by the model specs."""

from __future__ import annotations


def _positive(name: str, value: int | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
