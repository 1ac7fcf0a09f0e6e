"""Printing then parsing a quantity gives it back (to the printed precision)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.units import Dim, format_quantity, parse_quantity

positive = st.floats(min_value=1e-9, max_value=1e18, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(value=positive, dim=st.sampled_from(list(Dim)), binary=st.booleans())
def test_format_then_parse_round_trips(value, dim, binary):
    text = format_quantity(value, dim, digits=12, binary=binary)
    assert parse_quantity(text, dim) == pytest.approx(value, rel=1e-10)


@settings(max_examples=200, deadline=None)
@given(
    number=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    prefix=st.sampled_from(["", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"]),
)
def test_byte_prefixes_scale_exactly(number, prefix):
    factors = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    got = parse_quantity(f"{number!r} {prefix}B", Dim.BYTES)
    assert math.isclose(got, number * factors[prefix], rel_tol=1e-12, abs_tol=0.0)
    assert parse_quantity(f"{number!r} {prefix}b", Dim.BYTES) == pytest.approx(got / 8)
