"""Validation rows: signed error, medians, kinds, the published-data locator."""

from __future__ import annotations

import pytest

from hwsim.errors import SpecError
from hwsim.report.validation import markdown, text_table
from hwsim.validate import KINDS, ValidationRow, by_kind, median_abs_error, parse_kinds
from hwsim.validate.shared import find_shared_dir


def row(kind="operator", measured=100.0, predicted=110.0, **kw):
    return ValidationRow(kind=kind, case="c", label="r", unit="x", measured=measured, predicted=predicted, **kw)


def test_signed_error_and_median():
    assert row(predicted=110.0).error == pytest.approx(0.10)
    assert row(predicted=80.0).error == pytest.approx(-0.20)
    rows = [row(predicted=p) for p in (90.0, 105.0, 130.0)] + [row(predicted=500.0, modelled=False)]
    med, n = median_abs_error(rows)
    assert n == 3 and med == pytest.approx(0.10)


def test_missing_rows_need_a_feature_and_are_not_counted():
    with pytest.raises(ValueError, match="missing feature"):
        row(predicted=None)
    r = row(predicted=None, missing="simulate mode")
    assert r.error is None and not r.counted
    assert median_abs_error([r]) == (None, 0)
    with pytest.raises(ValueError, match="unknown validation kind"):
        row(kind="kernels")


def test_kinds_parse_and_group_in_order():
    assert parse_kinds(None) == frozenset(KINDS)
    assert parse_kinds("memory, operator") == {"memory", "operator"}
    with pytest.raises(SpecError, match="unknown validation kind"):
        parse_kinds("operator,gpu")
    groups = by_kind([row(kind="memory"), row(kind="operator"), row(kind="memory")])
    assert list(groups) == ["operator", "memory"] and len(groups["memory"]) == 2


def test_tables_show_signed_errors_and_medians():
    rows = [row(predicted=90.0), row(predicted=120.0, tier=1), row(kind="end-to-end", predicted=None, missing="x")]
    text = text_table(rows)
    assert "-10.0%" in text and "+20.0%" in text and "(missing: x)" in text
    assert "operator: median |error| 15.0% over 2 rows; tier 1: 20.0% over 1 (worst 20.0%)" in text
    md = markdown(rows)
    assert "| operator | 2 | 2 | 15.0% | 1 | 20.0% | 20.0% | 0 |" in md
    assert "| end-to-end | 1 | 0 | - | 0 | - | - | 1 |" in md


def test_shared_dir_missing_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="cannot find the published validation data"):
        find_shared_dir(tmp_path)
    (tmp_path / "cases.yaml").write_text("cases: []\n", encoding="utf-8")
    assert find_shared_dir(tmp_path) == tmp_path
