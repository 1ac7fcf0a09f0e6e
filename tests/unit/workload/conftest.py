"""Fixtures for the workload tests: where the trace fixtures and the shared data live."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
TRACES = REPO / "tests" / "data" / "traces"
SHARED_DATA = REPO / ".." / "shared" / "data"


@pytest.fixture
def traces_dir() -> Path:
    """``tests/data/traces``: raw-format samples and bad_*.jsonl fixtures."""
    return TRACES


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` next to the repository; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
