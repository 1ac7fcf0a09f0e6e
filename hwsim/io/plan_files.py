"""Text of the files the planners write: patch files (``kind: patch``) for ``--patch``.

YAML is produced only in ``hwsim/io`` (the one layer that imports ``yaml``); callers write the
text atomically (``hwsim.workload.files.atomic_text_writer``), as ``dump_placement`` is used.
Keys keep their insertion order so a plan's patch reads top-down; :func:`read_patch_file`
(:mod:`hwsim.io.patch`) reads it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

__all__ = ["dump_patch"]


def dump_patch(changes: Mapping[str, Any], *, source: str | None = None, header: str | None = None) -> str:
    """The text of a patch file setting ``changes`` (field path -> value).

    ``source`` says what wrote it (e.g. the command line); ``header`` lines become leading
    ``#`` comments.
    """
    doc: dict[str, Any] = {"kind": "patch"}
    if source:
        doc["source"] = source
    doc["set"] = dict(changes)
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100, allow_unicode=True)
    if header:
        text = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) + text
    return text
