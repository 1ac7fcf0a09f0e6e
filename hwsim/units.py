"""Units: parse quantity strings into SI floats at the edge, print them back.

Inside hwsim every quantity is a plain float in SI base units: seconds, bytes, FLOP,
FLOP/s, bytes/s, watts, joules, US dollars (and USD/s for rates). This module is the only
place that knows about prefixes and unit symbols.

Rules
-----
* Decimal prefixes are decimal (``GB`` = 1e9 B); binary prefixes are written ``Ki``, ``Mi``,
  ``Gi``, ``Ti``, ``Pi`` (``GiB`` = 2**30 B). ``KB`` is rejected as ambiguous.
* ``B`` is a byte and ``b`` a bit: ``400 Gb/s`` is 5e10 bytes/s.
* A bare number is rejected where a dimension is expected.

>>> parse_quantity("3.35 TB/s", Dim.BANDWIDTH)
3350000000000.0
>>> parse_quantity("80 GiB", Dim.BYTES)
85899345920.0
>>> parse_quantity("400 Gb/s", Dim.BANDWIDTH)
50000000000.0
>>> format_quantity(989e12, Dim.FLOP_RATE)
'989 TFLOP/s'
"""

from __future__ import annotations

import math
import re
from enum import Enum

from hwsim.errors import UnitError

__all__ = ["Dim", "parse_quantity", "format_quantity", "parse_fraction", "SECONDS_PER_HOUR", "SECONDS_PER_YEAR"]

SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86400.0
SECONDS_PER_YEAR = 365.0 * SECONDS_PER_DAY


class Dim(Enum):
    """Physical dimensions hwsim reads from files. The value is a human name."""

    TIME = "time"
    BYTES = "size"
    BANDWIDTH = "bandwidth"
    FLOP = "amount of work"
    FLOP_RATE = "compute rate"
    POWER = "power"
    ENERGY = "energy"
    MONEY = "amount of money"
    MONEY_RATE = "price per time"
    FREQUENCY = "frequency"
    IO_RATE = "I/O rate"

    @property
    def example(self) -> str:
        return _EXAMPLES[self]


_EXAMPLES = {
    Dim.TIME: "'2 us', '1.5 ms', '3 s', '5 yr'",
    Dim.BYTES: "'80 GB', '80 GiB', '512 KiB'",
    Dim.BANDWIDTH: "'3.35 TB/s', '400 Gb/s'",
    Dim.FLOP: "'1.2 TFLOP'",
    Dim.FLOP_RATE: "'989 TFLOP/s', '1979 TOP/s'",
    Dim.POWER: "'700 W', '40 kW'",
    Dim.ENERGY: "'3 J', '1.2 kWh'",
    Dim.MONEY: "'25000 USD'",
    Dim.MONEY_RATE: "'2.5 USD/h'",
    Dim.FREQUENCY: "'1.98 GHz'",
    Dim.IO_RATE: "'1M IOPS', '800k IOPS'",
}

_DECIMAL = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}
_SMALL = {"m": 1e-3, "u": 1e-6, "µ": 1e-6, "n": 1e-9, "p": 1e-12}

# base symbol -> (dimension, factor to SI, which prefixes are allowed)
_TIME_UNITS = {
    "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "ps": 1e-12,
    "min": 60.0, "h": SECONDS_PER_HOUR, "d": SECONDS_PER_DAY, "day": SECONDS_PER_DAY,
    "days": SECONDS_PER_DAY, "yr": SECONDS_PER_YEAR, "y": SECONDS_PER_YEAR, "year": SECONDS_PER_YEAR,
    "years": SECONDS_PER_YEAR,
}
_PER_TIME = {"s": 1.0, "h": SECONDS_PER_HOUR, "hr": SECONDS_PER_HOUR, "day": SECONDS_PER_DAY,
             "d": SECONDS_PER_DAY, "yr": SECONDS_PER_YEAR, "month": SECONDS_PER_YEAR / 12}

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_QUANTITY_RE = re.compile(rf"^\s*({_NUMBER})\s*([^\s\d].*?)?\s*$")
_PREFIX_RE = re.compile(r"^(Ki|Mi|Gi|Ti|Pi|[kMGTPE]|)(.*)$")


def _prefixed(symbol: str, bases: dict[str, float], *, binary: bool) -> float | None:
    """Factor of ``symbol`` = optional prefix + one of ``bases``, or None."""
    m = _PREFIX_RE.match(symbol)
    assert m is not None
    prefix, base = m.group(1), m.group(2)
    if base in bases:
        if prefix in _BINARY:
            return _BINARY[prefix] * bases[base] if binary else None
        return _DECIMAL[prefix] * bases[base]
    if prefix == "" and symbol in bases:
        return bases[symbol]
    return None


def _unit_factor(unit: str, dim: Dim) -> float | None:
    """SI factor of ``unit`` in dimension ``dim``, or None when it is not such a unit."""
    u = unit.strip()
    if dim is Dim.TIME:
        if u in _TIME_UNITS:
            return _TIME_UNITS[u]
        return None
    if dim is Dim.BYTES:
        return _prefixed(u, {"B": 1.0, "b": 0.125, "bit": 0.125, "byte": 1.0, "bytes": 1.0}, binary=True)
    if dim is Dim.BANDWIDTH:
        if u.endswith("/s"):
            return _prefixed(u[:-2], {"B": 1.0, "b": 0.125, "bit": 0.125}, binary=True)
        return None
    if dim is Dim.FLOP:
        return _prefixed(u, {"FLOP": 1.0, "OP": 1.0}, binary=False)
    if dim is Dim.FLOP_RATE:
        for suffix in ("FLOP/s", "FLOPS", "OP/s", "OPS"):
            if u.endswith(suffix):
                return _prefixed(u[: -len(suffix)] + "X", {"X": 1.0}, binary=False)
        return None
    if dim is Dim.POWER:
        return _small_or_decimal(u, "W")
    if dim is Dim.ENERGY:
        if u.endswith("Wh"):
            f = _prefixed(u[:-2] + "X", {"X": 1.0}, binary=False)
            return None if f is None else f * SECONDS_PER_HOUR
        return _small_or_decimal(u, "J")
    if dim is Dim.MONEY:
        return _prefixed(u, {"USD": 1.0, "$": 1.0}, binary=False)
    if dim is Dim.MONEY_RATE:
        if "/" not in u:
            return None
        money, per = u.split("/", 1)
        fm = _prefixed(money.strip(), {"USD": 1.0, "$": 1.0}, binary=False)
        ft = _PER_TIME.get(per.strip())
        return None if fm is None or ft is None else fm / ft
    if dim is Dim.FREQUENCY:
        return _prefixed(u, {"Hz": 1.0}, binary=False)
    if dim is Dim.IO_RATE:
        return _prefixed(u, {"IOPS": 1.0, "IO/s": 1.0, "/s": 1.0}, binary=False)
    raise AssertionError(dim)  # pragma: no cover


def _small_or_decimal(u: str, base: str) -> float | None:
    if not u.endswith(base):
        return None
    prefix = u[: -len(base)]
    if prefix in _SMALL:
        return _SMALL[prefix]
    if prefix in _DECIMAL:
        return _DECIMAL[prefix]
    return None


def _a(dim: Dim) -> str:
    return ("an " if dim.value[0] in "aeiouAEIOU" else "a ") + dim.value


def parse_quantity(text: object, dim: Dim) -> float:
    """Parse ``text`` (e.g. ``'3.35 TB/s'``) as a quantity of dimension ``dim``; return SI float.

    Raises :class:`~hwsim.errors.UnitError` for a bare number, an unknown unit, a unit of
    another dimension, or an ambiguous prefix such as ``KB``.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise UnitError(f"expected {_a(dim)} with a unit (e.g. {dim.example}); found {text!r}")
    if isinstance(text, (int, float)):
        raise UnitError(f"expected {_a(dim)} with a unit (e.g. {dim.example}); found the bare number {text!r}")
    m = _QUANTITY_RE.match(text)
    if m is None:
        raise UnitError(f"expected {_a(dim)} with a unit (e.g. {dim.example}); found {text!r}")
    number, unit = m.group(1), m.group(2)
    unit = "".join(unit.split()) if unit else unit
    if not unit:
        raise UnitError(f"expected {_a(dim)} with a unit (e.g. {dim.example}); found the bare number {text!r}")
    if re.match(r"^K(i?B|b|B/s|b/s)", unit) and not unit.startswith("Ki"):
        raise UnitError(f"ambiguous unit {unit!r} in {text!r}: write kB (1e3 bytes) or KiB (1024 bytes)")
    factor = _unit_factor(unit, dim)
    if factor is None:
        other = [d.value for d in Dim if d is not dim and _unit_factor(unit, d) is not None]
        hint = f" ({unit!r} is a unit of {other[0]})" if other else ""
        raise UnitError(f"expected {_a(dim)} (e.g. {dim.example}); found {text!r}{hint}")
    value = float(number) * factor
    if not math.isfinite(value):
        raise UnitError(f"expected a finite {dim.value}; found {text!r}")
    return value


def parse_fraction(value: object) -> float:
    """Parse a dimensionless fraction: ``0.8`` or ``'80%'`` -> 0.8."""
    if isinstance(value, bool):
        raise UnitError(f"expected a fraction such as 0.8 or '80%'; found {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        s = value.strip()
        try:
            return float(s[:-1]) / 100.0 if s.endswith("%") else float(s)
        except ValueError:
            pass
    raise UnitError(f"expected a fraction such as 0.8 or '80%'; found {value!r}")


# ---------------------------------------------------------------- printing

_PRINT_UNITS: dict[Dim, str] = {
    Dim.BYTES: "B",
    Dim.BANDWIDTH: "B/s",
    Dim.FLOP: "FLOP",
    Dim.FLOP_RATE: "FLOP/s",
    Dim.POWER: "W",
    Dim.ENERGY: "J",
    Dim.FREQUENCY: "Hz",
    Dim.IO_RATE: "IOPS",
}


def _format_number(x: float, digits: int) -> str:
    return f"{x:.{digits}g}"


def format_quantity(value: float, dim: Dim, *, digits: int = 4, binary: bool = False) -> str:
    """Print an SI float with a readable prefix: ``format_quantity(8.5899e10, Dim.BYTES, binary=True)``.

    The output parses back: ``parse_quantity(format_quantity(x, d), d)`` is ``x`` to ``digits``
    significant digits.
    """
    if not math.isfinite(value):
        return f"{value}"
    if dim is Dim.TIME:
        a = abs(value)
        for factor, sym in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")):
            if a >= factor or sym == "ns":
                return f"{_format_number(value / factor, digits)} {sym}"
    if dim is Dim.MONEY:
        return f"{_format_number(value, digits)} USD"
    if dim is Dim.MONEY_RATE:
        return f"{_format_number(value * SECONDS_PER_HOUR, digits)} USD/h"
    base = _PRINT_UNITS[dim]
    a = abs(value)
    if dim in (Dim.POWER, Dim.ENERGY) and 0 < a < 1:
        return f"{_format_number(value * 1e3, digits)} m{base}"
    table = list(_BINARY.items()) if binary and dim in (Dim.BYTES, Dim.BANDWIDTH) else [
        (p, f) for p, f in _DECIMAL.items() if p
    ]
    best_prefix, best_factor = "", 1.0
    for prefix, factor in table:
        if a >= factor:
            best_prefix, best_factor = prefix, factor
    return f"{_format_number(value / best_factor, digits)} {best_prefix}{base}"
