"""Hardware x model x deployment: everything a run needs besides the trace."""

from __future__ import annotations

from dataclasses import dataclass, field

from hwsim.spec.cluster import Cluster
from hwsim.spec.deployment import Deployment
from hwsim.spec.model import Model
from hwsim.spec.placement import PlacementTable


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A cluster, a model and how it is deployed, plus the SHA-256 of each input file.

    ``placement`` is the loaded ``experts.placement_file`` when the placement is ``file``.
    """

    cluster: Cluster
    model: Model
    deployment: Deployment
    input_hashes: dict[str, str] = field(default_factory=dict)
    placement: PlacementTable | None = None
