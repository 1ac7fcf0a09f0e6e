import math

import pytest

from hwsim.errors import UnitError
from hwsim.units import Dim, format_quantity, parse_fraction, parse_quantity


@pytest.mark.parametrize(
    ("text", "dim", "expected"),
    [
        ("80 GiB", Dim.BYTES, 80 * 2**30),
        ("80 GB", Dim.BYTES, 80e9),
        ("512 KiB", Dim.BYTES, 512 * 1024),
        ("1 kB", Dim.BYTES, 1e3),
        ("8 Gb", Dim.BYTES, 1e9),
        ("3.35 TB/s", Dim.BANDWIDTH, 3.35e12),
        ("400 Gb/s", Dim.BANDWIDTH, 50e9),
        ("64 GiB/s", Dim.BANDWIDTH, 64 * 2**30),
        ("989 TFLOP/s", Dim.FLOP_RATE, 989e12),
        ("1979 TOP/s", Dim.FLOP_RATE, 1979e12),
        ("1.2 PFLOPS", Dim.FLOP_RATE, 1.2e15),
        ("3 GFLOP", Dim.FLOP, 3e9),
        ("700 W", Dim.POWER, 700.0),
        ("40 kW", Dim.POWER, 40e3),
        ("250 mW", Dim.POWER, 0.25),
        ("2 us", Dim.TIME, 2e-6),
        ("2 µs", Dim.TIME, 2e-6),
        ("1.5 ms", Dim.TIME, 1.5e-3),
        ("10 min", Dim.TIME, 600.0),
        ("5 yr", Dim.TIME, 5 * 365 * 86400.0),
        ("1 kWh", Dim.ENERGY, 3.6e6),
        ("3 J", Dim.ENERGY, 3.0),
        ("2.5 USD/h", Dim.MONEY_RATE, 2.5 / 3600),
        ("25000 USD", Dim.MONEY, 25000.0),
        ("1.98 GHz", Dim.FREQUENCY, 1.98e9),
        ("1.5M IOPS", Dim.IO_RATE, 1.5e6),
        ("1e3 W", Dim.POWER, 1000.0),
        ("3.35TB/s", Dim.BANDWIDTH, 3.35e12),
    ],
)
def test_parse_known_quantities(text, dim, expected):
    assert parse_quantity(text, dim) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("text", "dim", "fragment"),
    [
        ("80", Dim.BYTES, "bare number"),
        (80, Dim.BYTES, "bare number"),
        ("80 KB", Dim.BYTES, "ambiguous"),
        ("80 GB/s", Dim.BYTES, "unit of bandwidth"),
        ("80 GB", Dim.BANDWIDTH, "unit of size"),
        ("fast", Dim.BANDWIDTH, "expected a bandwidth"),
        ("700 V", Dim.POWER, "expected a power"),
        ("1 GiFLOP/s", Dim.FLOP_RATE, "expected a compute rate"),
        (None, Dim.TIME, "expected a time"),
        (True, Dim.TIME, "expected a time"),
    ],
)
def test_bad_quantities_are_rejected_with_a_reason(text, dim, fragment):
    with pytest.raises(UnitError, match=fragment):
        parse_quantity(text, dim)


def test_gb_is_decimal_and_gib_is_binary():
    assert parse_quantity("1 GiB", Dim.BYTES) / parse_quantity("1 GB", Dim.BYTES) == pytest.approx(1.073741824)


def test_bits_are_an_eighth_of_bytes():
    assert parse_quantity("8 Gb/s", Dim.BANDWIDTH) == parse_quantity("1 GB/s", Dim.BANDWIDTH)


@pytest.mark.parametrize(
    ("value", "dim", "text"),
    [
        (989e12, Dim.FLOP_RATE, "989 TFLOP/s"),
        (80e9, Dim.BYTES, "80 GB"),
        (3.35e12, Dim.BANDWIDTH, "3.35 TB/s"),
        (700.0, Dim.POWER, "700 W"),
        (2e-6, Dim.TIME, "2 us"),
        (0.0015, Dim.TIME, "1.5 ms"),
        (2.5 / 3600, Dim.MONEY_RATE, "2.5 USD/h"),
    ],
)
def test_format(value, dim, text):
    assert format_quantity(value, dim) == text


def test_format_binary():
    assert format_quantity(80 * 2**30, Dim.BYTES, binary=True) == "80 GiB"


def test_fraction():
    assert parse_fraction("80%") == pytest.approx(0.8)
    assert parse_fraction(0.5) == 0.5
    with pytest.raises(UnitError):
        parse_fraction("most")


def test_infinite_is_rejected():
    with pytest.raises(UnitError, match="finite"):
        parse_quantity("1e400 W", Dim.POWER)
    assert math.isfinite(parse_quantity("1e300 W", Dim.POWER))
