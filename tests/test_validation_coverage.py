"""Every published case of ``../shared/validation/`` appears in ``hwsim validate``: the cases of
``cases.yaml``, ``cases-power.yaml`` and ``cases-offload-placement.yaml``.

A case is covered when some validation row names it: an operator, communication, power, offload
or placement row built in code, or an entry of the runnable index (``validation/cases.yaml``)
that either runs a scenario or is listed with what hwsim lacks (``missing:``). A case no row
names has been dropped silently; these tests fail and name it.

To stay fast the tests do not run the scenarios (``tests/test_validate.py`` runs every one):
runnable entries are checked to name a scenario file and at least one metric, so each gives
rows; the listed entries and the operator, power, offload and placement rows go through
``run_validation`` as the CLI calls it; communication rows are taken from their specifications
(:func:`hwsim.validate.comm.rows`, the case names ``comm_rows`` predicts for).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from hwsim.io.source import read_document
from hwsim.validate import comm, run_validation
from hwsim.validate.endtoend import DEFAULT_INDEX, end_to_end_rows, read_index
from hwsim.validate.offload import BUILDERS
from hwsim.validate.rows import KINDS
from hwsim.validate.shared import CASE_FILES, REPO, SharedData

SHARED = REPO.parent / "shared" / "validation"
pytestmark = pytest.mark.skipif(not (SHARED / "cases.yaml").is_file(),
                                reason="published validation data (../shared/validation) not present")
NOT_COMM = tuple(k for k in KINDS if k != "communication")


def published_ids(folder: Path, name: str = "cases.yaml") -> list[str]:
    """The case ids of one file of the shared folder, read as :class:`SharedData` reads it."""
    data = read_document(folder / name).data
    items = data if isinstance(data, list) else (data or {}).get("cases", [])
    return [str(c["id"]) for c in items if isinstance(c, dict) and "id" in c]


def all_published_ids(folder: Path) -> list[str]:
    """The case ids of every shared case file present."""
    return [i for name in CASE_FILES if (folder / name).is_file() for i in published_ids(folder, name)]


def row_case_id(name: str) -> str:
    """A row's case without the source note some rows append (``deepep-v1-low-latency (DeepEP
    docs/legacy.md)`` -> ``deepep-v1-low-latency``)."""
    return name.split(" (", 1)[0].strip()


def uncovered(ids: Iterable[str], row_cases: Iterable[str]) -> list[str]:
    named = {row_case_id(c) for c in row_cases}
    return [i for i in ids if i not in named]


def listed_index(entries: list[dict[str, Any]], path: Path) -> Path:
    """An index holding only the listed (``missing:``) entries, which need no scenario."""
    path.write_text(yaml.safe_dump({"version": 1, "cases": [e for e in entries if "missing" in e]},
                                   sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def entries() -> list[dict[str, Any]]:
    return read_index(DEFAULT_INDEX)[1]


@pytest.fixture(scope="module")
def validation(entries, tmp_path_factory):
    """Operator, power, offload and placement rows plus the listed entries' rows (communication
    ones included), through ``run_validation``."""
    index = listed_index(entries, tmp_path_factory.mktemp("index") / "cases.yaml")
    v = run_validation(kinds=NOT_COMM, shared_dir=SHARED, index=index)
    listed_comm = end_to_end_rows(SharedData.locate(SHARED), index, frozenset({"communication"}))
    return replace(v, rows=v.rows + tuple(listed_comm))


@pytest.fixture(scope="module")
def comm_cases() -> list[str]:
    return [r.case for r in comm.rows(SharedData.locate(SHARED))]


def runnable_ids(entries: list[dict[str, Any]]) -> list[str]:
    return [str(e["id"]) for e in entries if "missing" not in e]


def test_runnable_entries_give_rows(entries):
    folder = DEFAULT_INDEX.parent
    for e in entries:
        if "missing" in e:
            continue
        assert (folder / str(e["scenario"])).is_file(), e["id"]
        assert e["mode"] == "memory" or e.get("metrics"), f"{e['id']}: no metric, so no row"


@pytest.mark.parametrize("name", CASE_FILES)
def test_every_published_case_is_a_row_or_listed(name, entries, validation, comm_cases):
    if not (SHARED / name).is_file():
        pytest.skip(f"{name} not present")
    ids = published_ids(SHARED, name)
    assert ids, f"{name} holds no cases"
    assert len(ids) == len(set(ids)), f"duplicate ids in {name}"
    lost = uncovered(ids, [r.case for r in validation.rows] + comm_cases + runnable_ids(entries))
    assert not lost, (f"{len(lost)} published case(s) of {name} appear in no validation row; add each "
                      f"to validation/cases.yaml (runnable, or with `missing:`): {', '.join(lost)}")


def test_index_names_only_published_cases(entries):
    """An index entry with a mistyped id would cover nothing (and fail when run)."""
    known = set(all_published_ids(SHARED))
    assert not {str(e["id"]) for e in entries} - known


def test_code_built_offload_and_placement_rows_reach_the_output(validation):
    """Each builder of hwsim.validate.offload gives predicted rows of its kind for its case."""
    for kind, cid, _ in BUILDERS:
        rows = [r for r in validation.rows if r.case == cid and not r.missing]
        assert rows and all(r.kind == kind and r.predicted is not None for r in rows), cid
        assert all(r.error is not None for r in rows), cid


def test_listed_cases_name_what_is_missing(entries, validation):
    listed = {str(e["id"]) for e in entries if "missing" in e}
    rows = [r for r in validation.rows if r.missing]
    assert {r.case for r in rows} == listed    # every kind of listed entry reaches the output
    for r in rows:
        assert r.predicted is None and not r.counted
        assert len(r.missing.split()) >= 4, (r.case, r.missing)


def test_a_dropped_case_is_reported(entries, validation, comm_cases):
    """The check is not vacuous: without one listed entry and the runnable ones, exactly the
    cases no code-built row covers are reported."""
    dropped = next(e for e in entries if "missing" in e and e.get("kind", "end-to-end") == "power")
    kept = {r.case for r in validation.rows if r.missing} - {str(dropped["id"])}
    code_built = [r.case for r in validation.rows if not r.missing] + comm_cases
    ids = all_published_ids(SHARED)
    lost = uncovered(ids, code_built + sorted(kept))
    assert str(dropped["id"]) in lost
    assert set(lost) == set(ids) - {row_case_id(c) for c in code_built} - kept
    assert set(runnable_ids(entries)) & set(lost)
