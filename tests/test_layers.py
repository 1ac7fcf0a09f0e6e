"""Imports flow one way (DESIGN.md): each layer imports only the layers below it.

Heavy third-party libraries are confined: simpy to sim/, pulp to solvers/, numba to perf/,
yaml and jsonschema to io/, matplotlib to report/ (and only inside functions).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BASE = {"units", "errors", "registry"}
ALLOWED: dict[str, set[str]] = {
    "units": BASE, "errors": BASE, "registry": BASE, "__init__": BASE, "__main__": {"cli"},
    "spec": BASE | {"spec"},
    "io": BASE | {"spec", "io"},
    "workload": BASE | {"spec", "workload"},
    "perf": BASE | {"spec", "perf"},
    "sim": BASE | {"spec", "perf", "workload", "sim"},
    "solvers": BASE | {"spec", "perf", "workload", "solvers"},
    "sweep": BASE | {"spec", "io", "perf", "workload", "sim", "solvers", "sweep"},
    "report": BASE | {"spec", "workload", "perf", "sim", "solvers", "validate", "report"},
    "validate": BASE | {"spec", "io", "perf", "workload", "sim", "solvers", "validate"},
    "cli": BASE | {"spec", "io", "perf", "workload", "sim", "solvers", "sweep", "report", "validate", "cli"},
}
CONFINED = {"simpy": "sim", "pulp": "solvers", "numba": "perf", "yaml": "io", "jsonschema": "io", "matplotlib": "report"}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted((REPO / "hwsim").rglob("*.py")):
        rel = path.relative_to(REPO / "hwsim")
        layer = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 else rel.stem
        out.append((layer, path))
    out += [("solvers", p) for p in sorted((REPO / "solvers").rglob("*.py"))]
    return out


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at_module_level) for every import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "hwsim" else [node.module]
            found += [(n, id(node) in top) for n in names]
    return found


@pytest.mark.parametrize(("layer", "path"), _modules(), ids=lambda x: str(x).split("hwsim/")[-1])
def test_imports_respect_layers(layer, path):
    for module, top_level in _imports(path):
        parts = module.split(".")
        if parts[0] == "hwsim" and len(parts) > 1 and parts[1] != "__version__":
            target = parts[1]
            assert target in ALLOWED[layer], f"{path.name}: layer '{layer}' may not import hwsim.{target}"
        if parts[0] == "solvers":
            pytest.fail(f"{path.name}: import hwsim.solvers, not the top-level 'solvers' package")
        home = CONFINED.get(parts[0])
        if home is not None:
            assert layer == home, f"{path.name}: '{parts[0]}' may only be imported in {home}/"
        if parts[0] == "matplotlib":
            assert not top_level, f"{path.name}: import matplotlib lazily, inside the function that plots"


def test_import_hwsim_is_light():
    import subprocess
    import sys

    code = "import sys, hwsim.cli; print(','.join(m for m in ('simpy','pulp','numba','matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "", f"`import hwsim.cli` pulled in heavy modules: {out.stdout.strip()}"
