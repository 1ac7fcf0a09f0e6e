"""Placement files: load (schema, then meaning) and dump expert placements.

A placement file (``kind: placement``; schema ``hwsim/io/schemas/v1/placement.json``) lists,
per MoE layer, the experts in each EP rank's slots::

    version: 1
    kind: placement
    model: deepseek-v3
    ep: 32
    slots_per_rank: 9
    default: {ranks: [[0, 1, 2, ...], ...]}      # optional: layers not listed below
    layers:
      - {layer: 0, ranks: [[17, 3, ...], ...]}   # per EP rank its slots; replicas appear twice
    source: "hwsim experts place cluster.yaml --strategy eplb"

Stage 1 checks the structure against the schema; stage 2 checks the meaning: every rank has
``slots_per_rank`` slots and there are ``ep`` ranks, expert ids are in range, every expert has
a slot in every layer, layer indices are MoE layers and appear once, every MoE layer is covered
(or a default is given), and, against a deployment, ``ep`` and the model match the pools and
``ep x slots_per_rank = experts + experts.redundant``. Each error names the file, line and
field path (``layers[3].ranks[5][2]``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hwsim.errors import SpecError
from hwsim.io.source import Document, read_document
from hwsim.io.validate import check_schema
from hwsim.spec.deployment import Deployment
from hwsim.spec.model import Model
from hwsim.spec.placement import PlacementTable, RankSlots

__all__ = ["load_placement", "placement_from_document", "deployment_placement", "dump_placement"]


def _check_schema(doc: Document) -> None:
    try:
        check_schema(doc.data, "placement")
    except SpecError as err:
        raise doc.error(err) from None


def load_placement(path: str | Path, *, num_experts: int | None = None,
                   num_moe_layers: int | None = None) -> PlacementTable:
    """Read and check a placement file (see the module docstring).

    ``num_experts`` bounds the expert ids (default: the largest id + 1); ``num_moe_layers``
    bounds the layer indices and requires every MoE layer to be covered.
    """
    return placement_from_document(read_document(path), num_experts=num_experts, num_moe_layers=num_moe_layers)


def placement_from_document(doc: Document, *, num_experts: int | None = None,
                            num_moe_layers: int | None = None) -> PlacementTable:
    """:func:`load_placement` on an already parsed document."""
    if not isinstance(doc.data, dict):
        raise SpecError("expected a placement mapping (kind: placement)", file=doc.file, found=doc.data)
    _check_schema(doc)
    data = doc.data
    ep, width = int(data["ep"]), int(data["slots_per_rank"])
    tables: list[tuple[str, Any]] = []
    if "default" in data:
        tables.append(("default.ranks", data["default"]["ranks"]))
    tables += [(f"layers[{i}].ranks", item["ranks"]) for i, item in enumerate(data.get("layers", []))]
    if num_experts is None:
        num_experts = 1 + max(e for _, ranks in tables for row in ranks for e in row)
    for path, ranks in tables:
        _check_layout(doc, path, ranks, ep, width, num_experts)
    layers: dict[int, RankSlots] = {}
    for i, item in enumerate(data.get("layers", [])):
        layer = int(item["layer"])
        where = f"layers[{i}].layer"
        if layer in layers:
            raise doc.error(SpecError(f"MoE layer {layer} is listed twice", path=where,
                                      expected="each layer once", found=layer))
        if num_moe_layers is not None and layer >= num_moe_layers:
            raise doc.error(SpecError(f"MoE layer {layer} does not exist: the model has {num_moe_layers} MoE layers",
                                      path=where, expected=f"a MoE-layer index in 0..{num_moe_layers - 1} "
                                      "(0 is the first MoE layer)", found=layer))
        layers[layer] = _freeze(item["ranks"])
    default = _freeze(data["default"]["ranks"]) if "default" in data else None
    if num_moe_layers is not None and default is None:
        missing = [k for k in range(num_moe_layers) if k not in layers]
        if missing:
            raise doc.error(SpecError(f"MoE layers {_short(missing)} have no placement and there is no default",
                                      path="layers", expected=f"every MoE layer 0..{num_moe_layers - 1} listed, "
                                      "or a 'default:'", found=f"{len(layers)} layers"))
    return PlacementTable(ep=ep, slots_per_rank=width, num_experts=num_experts, layers=layers, default=default,
                          model=str(data.get("model", "")), source=str(data.get("source", "")))


def _check_layout(doc: Document, path: str, ranks: list[list[int]], ep: int, width: int, num_experts: int) -> None:
    if len(ranks) != ep:
        raise doc.error(SpecError(f"{len(ranks)} ranks listed, but ep is {ep}", path=path,
                                  expected=f"{ep} ranks (the file's ep)", found=f"{len(ranks)} ranks"))
    for r, row in enumerate(ranks):
        if len(row) != width:
            raise doc.error(SpecError(f"rank {r} has {len(row)} slots, but slots_per_rank is {width}",
                                      path=f"{path}[{r}]", expected=f"{width} expert ids", found=row))
        for j, e in enumerate(row):
            if e >= num_experts:
                raise doc.error(SpecError(f"expert {e} does not exist: the model has {num_experts} experts",
                                          path=f"{path}[{r}][{j}]", expected=f"an expert id in 0..{num_experts - 1}",
                                          found=e))
    placed = {e for row in ranks for e in row}
    if len(placed) < num_experts:
        missing = sorted(set(range(num_experts)) - placed)
        raise doc.error(SpecError(f"experts {_short(missing)} have no slot", path=path,
                                  expected=f"every expert 0..{num_experts - 1} in at least one slot",
                                  found=f"{len(missing)} experts missing"))


def _freeze(ranks: list[list[int]]) -> RankSlots:
    return tuple(tuple(int(e) for e in row) for row in ranks)


def _short(ids: list[int], n: int = 8) -> str:
    return str(ids[:n])[:-1] + (", ...]" if len(ids) > n else "]")


def deployment_placement(cluster_doc: Document, deployment: Deployment, model: Model,
                         prefix: str = "deployment") -> tuple[PlacementTable, Path] | None:
    """The placement file a deployment names (``experts.placement: file``), checked against
    the model and every pool with ``ep > 1``; ``None`` for other placements.

    The file path is relative to the cluster file. Mismatches with the deployment are
    reported in the placement file (``ep``, ``model``), except a slot count that disagrees
    with ``experts.redundant``, which is reported at that field of the cluster file.
    """
    experts = deployment.experts
    if experts.placement != "file" or experts.placement_file is None:
        return None
    field = f"{prefix}.experts.placement_file"
    path = Path(experts.placement_file)
    if not path.is_absolute():
        path = Path(cluster_doc.file).parent / path
    if not path.is_file():
        raise cluster_doc.error(SpecError("placement file not found", path=field,
                                          expected="a placement file (relative to this file)",
                                          found=experts.placement_file))
    if model.moe is None:
        raise cluster_doc.error(SpecError(f"{model.name} is dense: it has no experts to place", path=field))
    doc = read_document(path)
    table = placement_from_document(doc, num_experts=model.moe.num_experts, num_moe_layers=model.num_moe_layers)
    if table.model and table.model != model.name:
        raise doc.error(SpecError(f"the placement is for model '{table.model}', the deployment serves "
                                  f"'{model.name}'", path="model", expected=model.name, found=table.model))
    physical = model.moe.num_experts + experts.redundant
    if table.physical_experts != physical:
        raise cluster_doc.error(SpecError(
            f"{path.name} holds {table.ep} ranks x {table.slots_per_rank} slots = {table.physical_experts} "
            f"experts per MoE layer; the deployment has {model.moe.num_experts} experts + experts.redundant "
            f"{experts.redundant} = {physical}", path=f"{prefix}.experts.redundant",
            expected=f"redundant: {table.physical_experts - model.moe.num_experts}" if table.physical_experts
            >= model.moe.num_experts else "a placement with a slot for every expert", found=experts.redundant))
    for i, pool in enumerate(deployment.pools):
        if pool.parallelism.ep > 1 and pool.parallelism.ep != table.ep:
            raise doc.error(SpecError(f"the placement has ep={table.ep}; pool '{pool.name}' "
                                      f"({prefix}.pools[{i}]) runs ep={pool.parallelism.ep}",
                                      path="ep", expected=f"ep: {pool.parallelism.ep}", found=table.ep))
    return table, path


def dump_placement(table: PlacementTable) -> str:
    """YAML text of a placement file (one line per rank), which :func:`load_placement` reads back."""
    lines = ["# hwsim expert placement: per MoE layer (0 = the first MoE layer), the experts in each",
             "# EP rank's slots; an expert listed more than once is replicated.",
             "version: 1", "kind: placement"]
    if table.model:
        lines.append(f"model: {json.dumps(table.model)}")
    lines += [f"ep: {table.ep}", f"slots_per_rank: {table.slots_per_rank}"]
    if table.source:
        lines.append(f"source: {json.dumps(table.source)}")

    def ranks(slots: RankSlots, indent: str) -> list[str]:
        return [f"{indent}- [{', '.join(str(e) for e in row)}]" for row in slots]

    if table.default is not None:
        lines += ["default:", "  ranks:", *ranks(table.default, "    ")]
    if table.layers:
        lines.append("layers:")
        for layer, slots in sorted(table.layers.items()):
            lines += [f"  - layer: {layer}", "    ranks:", *ranks(slots, "      ")]
    return "\n".join(lines) + "\n"
