"""Find catalog entries (devices, nodes, clusters, models) by name.

The search path is, in order: directories given explicitly (``--catalog DIR``), those in the
``HWSIM_PATH`` environment variable (``os.pathsep``-separated), then the built-in
``hardware/`` and ``workloads/models/`` folders. An earlier directory shadows a later one.
Names match case-insensitively, and a file may list ``aliases``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from hwsim.errors import SpecError
from hwsim.io.source import YAML_LOADER
from hwsim.registry import unknown_name_error

CATALOG_KINDS = ("device", "node", "cluster", "model")



def builtin_roots() -> list[Path]:
    """The built-in catalog folders: ``hardware/`` and ``workloads/models/``."""
    here = Path(__file__).resolve()
    checkout = here.parents[2]  # a source checkout or editable install
    if (checkout / "hardware").is_dir() and (checkout / "workloads").is_dir():
        return [checkout / "hardware", checkout / "workloads" / "models"]
    wheel = here.parents[1] / "_catalog"  # an installed wheel carries the catalog inside the package
    return [wheel / "hardware", wheel / "models"]


def search_path(extra: Sequence[str | Path] = ()) -> tuple[Path, ...]:
    env = [Path(p) for p in os.environ.get("HWSIM_PATH", "").split(os.pathsep) if p]
    return tuple(Path(p) for p in extra) + tuple(env) + tuple(builtin_roots())


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str
    name: str
    file: Path
    aliases: tuple[str, ...]
    title: str


def _scan(root: Path) -> list[Entry]:
    entries = []
    for f in sorted(root.rglob("*.yaml")):
        try:
            data = yaml.load(f.read_text(encoding="utf-8"), Loader=YAML_LOADER)
        except (yaml.YAMLError, OSError, UnicodeDecodeError):
            continue  # reported when the file itself is loaded or validated
        if isinstance(data, dict) and data.get("kind") in CATALOG_KINDS and isinstance(data.get("name"), str):
            aliases = tuple(str(a) for a in data.get("aliases") or ())
            title = str(data.get("title") or data.get("description") or "")
            entries.append(Entry(data["kind"], data["name"], f, aliases, title))
    return entries


@cache
def _index(roots: tuple[Path, ...]) -> dict[str, dict[str, Entry]]:
    index: dict[str, dict[str, Entry]] = {k: {} for k in CATALOG_KINDS}
    for root in reversed(roots):  # earlier roots shadow later ones
        if root.is_dir():
            for e in _scan(root):
                index[e.kind][e.name] = e
    return index


def entries(kind: str, extra: Sequence[str | Path] = ()) -> list[Entry]:
    """All catalog entries of ``kind``, sorted by name."""
    return sorted(_index(search_path(extra))[kind].values(), key=lambda e: e.name.lower())


def find(kind: str, name: str, extra: Sequence[str | Path] = (), path: str = "") -> Path:
    """The file defining catalog entry ``name`` of ``kind``; unknown names list the choices."""
    table = _index(search_path(extra))[kind]
    if name in table:
        return table[name].file
    key = name.lower()
    for e in table.values():
        if e.name.lower() == key or key in (a.lower() for a in e.aliases):
            return e.file
    raise unknown_name_error(kind, name, list(table), path)


def clear_cache() -> None:
    """Forget scanned folders (tests that write catalog files call this)."""
    _index.cache_clear()


def looks_like_path(ref: str) -> bool:
    return ref.endswith((".yaml", ".yml", ".json")) or os.sep in ref or "/" in ref


def resolve(kind: str, ref: str, *, base_dir: Path | None, extra: Sequence[str | Path] = (), path: str = "") -> Path:
    """A reference is a file path (relative to the referring file) or a catalog name."""
    if looks_like_path(ref):
        p = Path(ref)
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        if not p.exists():
            raise SpecError(f"{kind} file not found: {p}", path=path)
        return p
    return find(kind, ref, extra, path)
