"""Every published case of ``../shared/validation/cases.yaml`` appears in ``hwsim validate``.

A case is covered when some validation row names it: an operator, communication or power row
built in code, or an entry of the runnable index (``validation/cases.yaml``) that either runs a
scenario or is listed with what hwsim lacks (``missing:``). A case no row names has been
dropped silently; these tests fail and name it.

Communication rows are taken from their specifications (:func:`hwsim.validate.comm.rows`, the
same case names ``comm_rows`` predicts for) to keep the test fast; operator, power and
end-to-end rows are built as ``hwsim validate`` builds them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from hwsim.io.source import read_document
from hwsim.validate import comm
from hwsim.validate.endtoend import DEFAULT_INDEX, end_to_end_rows, read_index
from hwsim.validate.operators import operator_rows
from hwsim.validate.power import power_rows
from hwsim.validate.shared import REPO, SharedData

SHARED = REPO.parent / "shared" / "validation"
pytestmark = pytest.mark.skipif(not (SHARED / "cases.yaml").is_file(),
                                reason="published validation data (../shared/validation) not present")


def published_ids(folder: Path) -> list[str]:
    """The case ids of ``cases.yaml`` in the shared folder, read as :class:`SharedData` reads it."""
    data = read_document(folder / "cases.yaml").data
    items = data if isinstance(data, list) else (data or {}).get("cases", [])
    return [str(c["id"]) for c in items if isinstance(c, dict) and "id" in c]


def row_case_id(name: str) -> str:
    """A row's case without the source note some rows append (``deepep-v1-low-latency (DeepEP
    docs/legacy.md)`` -> ``deepep-v1-low-latency``)."""
    return name.split(" (", 1)[0].strip()


def uncovered(ids: Iterable[str], row_cases: Iterable[str]) -> list[str]:
    named = {row_case_id(c) for c in row_cases}
    return [i for i in ids if i not in named]


@pytest.fixture(scope="module")
def shared() -> SharedData:
    return SharedData.locate(SHARED)


@pytest.fixture(scope="module")
def code_built_cases(shared) -> list[str]:
    """Case names of the operator, communication and power rows."""
    return ([r.case for r in operator_rows(shared.cases)] + [r.case for r in comm.rows(shared)]
            + [r.case for r in power_rows(shared.cases)])


@pytest.fixture(scope="module")
def index_rows(shared):
    return end_to_end_rows(shared, DEFAULT_INDEX)


def test_every_published_case_is_a_row_or_listed(shared, code_built_cases, index_rows):
    ids = published_ids(shared.folder)
    assert len(ids) == len(set(ids)), "duplicate ids in the published cases"
    lost = uncovered(ids, code_built_cases + [r.case for r in index_rows])
    assert not lost, (f"{len(lost)} published case(s) appear in no validation row; add each to "
                      f"validation/cases.yaml (runnable, or with `missing:`): {', '.join(lost)}")


def test_listed_cases_name_what_is_missing(index_rows):
    listed = [r for r in index_rows if r.predicted is None]
    assert listed
    for r in listed:
        assert r.missing and len(r.missing.split()) >= 4, (r.case, r.label, r.missing)
        assert not r.counted


def test_runnable_entries_give_predictions(index_rows):
    _, entries = read_index(DEFAULT_INDEX)
    runnable = {str(e["id"]) for e in entries if "missing" not in e}
    predicted = {r.case for r in index_rows if r.predicted is not None}
    assert runnable <= predicted, sorted(runnable - predicted)
    for r in index_rows:
        if r.predicted is not None:
            assert r.predicted > 0 and r.measured > 0, (r.case, r.label)


def test_a_dropped_case_is_reported(shared, code_built_cases, tmp_path):
    """The check is not vacuous: an index that lists only one case leaves the others uncovered."""
    _, entries = read_index(DEFAULT_INDEX)
    only = next(e for e in entries if "missing" in e)
    index = tmp_path / "cases.yaml"
    index.write_text(f"version: 1\ncases:\n  - id: {only['id']}\n    missing: a feature hwsim lacks\n",
                     encoding="utf-8")
    rows = end_to_end_rows(shared, index)
    lost = uncovered(published_ids(shared.folder), code_built_cases + [r.case for r in rows])
    code_built = {row_case_id(c) for c in code_built_cases}
    assert str(only["id"]) not in lost
    assert set(lost) == set(published_ids(shared.folder)) - code_built - {str(only["id"])}
    assert any(str(e["id"]) in lost for e in entries if "missing" not in e)
