"""Numeric formats: their names and storage sizes."""

from __future__ import annotations

BYTES_PER_ELEM: dict[str, float] = {
    "fp32": 4.0,
    "tf32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "fp4": 0.5,   # e.g. NVFP4 / MXFP4 payload; block scales are counted by the cost model
    "int4": 0.5,
}
"""Storage bytes per element of each format."""

COMPUTE_DTYPES: tuple[str, ...] = tuple(BYTES_PER_ELEM)


def bytes_per_elem(dtype: str) -> float:
    """Bytes per element of ``dtype``; raises ValueError for an unknown name."""
    try:
        return BYTES_PER_ELEM[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(COMPUTE_DTYPES)}") from None
