"""Load a cluster file with its ``deployment:`` section: what ``hwsim simulate`` reads."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from hwsim.errors import SpecError
from hwsim.io.build_deployment import build_deployment, routing_files
from hwsim.io.fields import Fields
from hwsim.io.load import Context, _ensure_builders
from hwsim.io.patch import patch_document, read_patch
from hwsim.io.placement import deployment_placement
from hwsim.io.source import Document, read_document
from hwsim.io.validate import check_schema
from hwsim.spec.scenario import Scenario


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_scenario(path: str | Path, extra: Sequence[str | Path] = (),
                  patches: Sequence[str | Path] = ()) -> Scenario:
    """Read ``cluster.yaml`` (nodes, fabric, power domains and a ``deployment:`` section).

    ``patches`` are patch files (:func:`hwsim.io.patch.read_patch_file`, e.g. written by
    ``hwsim plan``) applied in order to the parsed file before it is built; their hashes join
    the input hashes.
    """
    doc = read_document(path)
    hashes = {str(path): file_sha256(path)}
    for patch in patches:
        try:
            changes, source = read_patch(patch)
            doc = patch_document(doc, changes, source)
        except SpecError as err:
            if err.file is None:
                raise err.with_context(file=str(patch)) from None
            raise
        hashes[str(patch)] = file_sha256(patch)
    return build_scenario(doc, Context(extra), hashes)


def build_scenario(doc: Document, ctx: Context, input_hashes: dict[str, str]) -> Scenario:
    """Build a scenario from a parsed cluster document (e.g. one patched by a sweep).

    ``ctx`` may be shared by many builds: catalog entries it loaded are reused.
    """
    _ensure_builders()
    data = doc.data
    if not isinstance(data, dict):
        raise SpecError("expected a cluster mapping", file=doc.file, found=data)
    if "deployment" not in data:
        raise SpecError("a scenario needs a 'deployment:' section (model, pools, parallelism)",
                        file=doc.file, path="deployment", expected="a deployment mapping")
    cluster = ctx.build("cluster", data, doc=doc, prefix="")
    section = data["deployment"]
    try:
        check_schema(section, "deployment")
    except SpecError as err:
        raise doc.error(err, "deployment") from None
    try:
        deployment, model = build_deployment(Fields(section, "deployment"), ctx, doc, cluster)
    except SpecError as err:
        if err.file is not None:
            raise
        raise doc.error(err) from None
    hashes = dict(input_hashes)
    for field, file in routing_files(deployment.experts.routing.params):
        if not Path(file).is_file():
            raise doc.error(SpecError("routing trace file not found", path=f"deployment.experts.routing.{field}",
                                      expected="a routing trace file (relative to this file)", found=file))
        hashes[file] = file_sha256(file)
    placed = deployment_placement(doc, deployment, model)
    if placed is not None:
        hashes[str(placed[1])] = file_sha256(placed[1])
    return Scenario(cluster=cluster, model=model, deployment=deployment, input_hashes=hashes,
                    placement=placed[0] if placed is not None else None)
