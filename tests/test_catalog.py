"""Every file of the built-in catalog loads, and cites its sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwsim.io import catalog
from hwsim.io.load import load
from hwsim.io.source import read_document

REPO = Path(__file__).resolve().parents[1]
FILES = sorted((REPO / "hardware").rglob("*.yaml")) + sorted((REPO / "workloads" / "models").rglob("*.yaml"))


def test_catalog_is_not_empty():
    assert len(catalog.entries("device")) >= 1
    assert len(catalog.entries("node")) >= 1


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_catalog_file_loads(path):
    data = read_document(path).data
    assert data["kind"] in catalog.CATALOG_KINDS
    spec = load(data["kind"], path)
    assert spec.name == data["name"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_catalog_file_cites_sources(path):
    text = path.read_text(encoding="utf-8")
    assert "source" in text, f"{path.name} cites no source"


def test_catalog_names_are_unique():
    seen: dict[tuple[str, str], Path] = {}
    for path in FILES:
        data = read_document(path).data
        key = (data["kind"], data["name"].lower())
        assert key not in seen, f"{path} and {seen[key]} both define {key}"
        seen[key] = path


def test_user_catalog_shadows_builtin(tmp_path):
    user = tmp_path / "devices"
    user.mkdir()
    src = (REPO / "hardware" / "devices" / "h100-sxm.yaml").read_text()
    (user / "mine.yaml").write_text(src.replace("title: NVIDIA H100", "title: my H100"))
    entries = {e.name: e for e in catalog.entries("device", [tmp_path])}
    assert entries["H100-SXM"].file == user / "mine.yaml"


def _case_ids(shared: Path) -> set[str]:
    import yaml

    ids: set[str] = set()
    for f in sorted((shared / "validation").glob("cases*.yaml")):
        data = yaml.safe_load(f.read_text(encoding="utf-8"))
        items = data if isinstance(data, list) else list((data or {}).get("cases", []))
        ids |= {c["id"] for c in items if isinstance(c, dict) and "id" in c}
    return ids


def test_efficiency_factors_name_real_validation_cases(shared_data):
    ids = _case_ids(shared_data.parent)
    assert ids, "no validation cases found"
    for e in catalog.entries("device"):
        device = load("device", e.file)
        for factor in device.efficiency:
            missing = [c for c in factor.calibrated_on if c not in ids]
            assert not missing, f"{e.file.name}: efficiency {factor.name} cites unknown cases {missing}"
