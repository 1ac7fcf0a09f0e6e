"""Locate and read the published measurements (``../shared/validation/*.yaml``).

The folder sits next to the repository. It is found from an explicit path, else from the
package's location (an editable install: ``<repo>/hwsim/validate`` -> ``<repo>/../shared``),
else from the working directory (``./../shared/validation`` or ``./shared/validation``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from hwsim.errors import SpecError
from hwsim.io.source import read_document

REPO = Path(__file__).resolve().parents[2]
CASE_FILES = ("cases.yaml", "cases-power.yaml", "cases-offload-placement.yaml")


def find_shared_dir(path: str | Path | None = None) -> Path:
    """The validation data folder; :class:`SpecError` (exit 2) when it cannot be found."""
    if path is not None:
        candidates = [Path(path)]
    else:
        candidates = [REPO.parent / "shared" / "validation", Path.cwd().parent / "shared" / "validation",
                      Path.cwd() / "shared" / "validation"]
    for c in candidates:
        if (c / "cases.yaml").is_file():
            return c
    raise SpecError("cannot find the published validation data (a folder holding cases.yaml)",
                    file=str(candidates[0]), expected="../shared/validation next to the repository, "
                    "or --shared-dir PATH", found="no cases.yaml there")


@dataclass(frozen=True)
class SharedData:
    """The published cases by id, read once."""

    folder: Path

    @classmethod
    def locate(cls, path: str | Path | None = None) -> SharedData:
        return cls(find_shared_dir(path))

    @cached_property
    def cases(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name in CASE_FILES:
            p = self.folder / name
            if not p.is_file():
                continue
            data = read_document(p).data
            items = data if isinstance(data, list) else (data or {}).get("cases", [])
            for c in items:
                if isinstance(c, dict) and "id" in c:
                    out.setdefault(str(c["id"]), c)
        return out

    def case(self, case_id: str) -> dict[str, Any]:
        try:
            return self.cases[case_id]
        except KeyError:
            raise SpecError(f"no published case {case_id!r}", file=str(self.folder / "cases.yaml")) from None

    @cached_property
    def hardware_specs(self) -> Any:
        return read_document(self.folder / "hardware-specs.yaml").data


def published_entry(case: Mapping[str, Any], name: str,
                    sections: tuple[str, ...] = ("metrics", "derived")) -> Mapping[str, Any]:
    """The entry called ``name`` among a published case's ``metrics`` (then ``derived``) values."""
    for section in sections:
        for m in case.get(section) or ():
            if isinstance(m, dict) and m.get("name") == name:
                return m
    raise SpecError(f"published case {case.get('id')!r} has no metric {name!r}", path=sections[0],
                    expected="a metric or derived name of the published case", found=name)


__all__ = ["CASE_FILES", "SharedData", "find_shared_dir", "published_entry"]
