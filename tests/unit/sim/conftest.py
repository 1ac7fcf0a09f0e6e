from pathlib import Path

import pytest


@pytest.fixture
def repo_example() -> Path:
    return Path(__file__).resolve().parents[3] / "examples" / "dgx-h100-deepseek-v3" / "cluster.yaml"
