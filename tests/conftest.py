"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def datadir() -> Path:
    """Input fixtures (good_*.yaml, bad_*.yaml, traces)."""
    return REPO / "tests" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The shared public data folder next to the repository (skips when absent)."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is not present")
    return path
