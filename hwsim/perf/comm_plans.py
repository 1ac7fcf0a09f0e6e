"""One phase of a communication plan: where its bytes go, and what it costs.

:func:`phase_geometry` maps a :class:`~hwsim.perf.comm_algorithms.Phase` onto the graph once
(edges and bytes per byte of collective size, latency statistics); it depends on the
topology only, so it is cached with the topology. :func:`phase_cost` prices a geometry for
one set of link efficiencies and latency parameters: the bottleneck edge's seconds per byte
and the phase's alpha.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from hwsim.perf.comm_algorithms import Phase
    from hwsim.perf.comm_paths import CommTopology


@dataclass(frozen=True, slots=True)
class PhaseGeometry:
    """Where one phase's bytes go, per byte of collective size (efficiency independent).

    ``plain`` and ``nvls`` split the bytes on ``edges`` by whether NVLS flows carry them (those
    run at the NVLS fraction). ``wire_by_mask``: the largest wire latency among flows with
    each link-kind mask; ``mean_wire`` and ``mask_share`` give the mean over flows.
    ``bandwidth=False`` marks a phase of a pipelined plan whose bytes are counted in the
    plan's merged geometry (only its latency counts here).
    """

    edges: np.ndarray
    plain: np.ndarray
    nvls: np.ndarray
    steps: int
    chained: bool
    wire_by_mask: dict[int, float]
    mean_wire: float
    mask_share: dict[int, float]
    unit_sent: float
    bandwidth: bool = True


@dataclass(frozen=True, slots=True)
class PhaseCost:
    s_per_byte: float   # bottleneck seconds per byte of collective size
    bottleneck: int     # edge id (-1 without traffic)
    alpha_s: float


def phase_geometry(topo: CommTopology, phase: Phase, *, bandwidth: bool = True) -> PhaseGeometry:
    keep = phase.unit_bytes > 0
    src, dst, unit = phase.src[keep], phase.dst[keep], phase.unit_bytes[keep]
    edges, flow = topo.flow_edges(src, dst)
    per_edge = np.bincount(edges, weights=unit[flow], minlength=topo.num_edges)
    wire = np.bincount(flow, weights=topo.latency_s[edges], minlength=len(src))
    mask = np.zeros(len(src), dtype=np.int64)
    np.bitwise_or.at(mask, flow, topo.kind_bits[edges])
    wire_by_mask: dict[int, float] = {}
    share: dict[int, float] = {}
    for m, w in zip(mask.tolist(), wire.tolist(), strict=True):
        wire_by_mask[m] = max(w, wire_by_mask.get(m, 0.0))
        share[m] = share.get(m, 0.0) + 1.0 / len(src)
    nz = np.flatnonzero(per_edge)
    zero = np.zeros(len(nz))
    plain, nvls = (zero, per_edge[nz]) if phase.nvls else (per_edge[nz], zero)
    return PhaseGeometry(nz, plain, nvls, phase.steps, phase.chained, wire_by_mask,
                         float(wire.mean()) if len(src) else 0.0, share, float(unit.sum()), bandwidth)


def merged_geometry(geos: Sequence[PhaseGeometry]) -> PhaseGeometry:
    """One bandwidth pool for pipelined phases (their latencies stay with the phases)."""
    edges = np.unique(np.concatenate([g.edges for g in geos]))
    plain, nvls = np.zeros(len(edges)), np.zeros(len(edges))
    for g in geos:
        at = np.searchsorted(edges, g.edges)
        np.add.at(plain, at, g.plain)
        np.add.at(nvls, at, g.nvls)
    return PhaseGeometry(edges, plain, nvls, 0, False, {}, 0.0, {}, sum(g.unit_sent for g in geos))


def phase_cost(geo: PhaseGeometry, edge_bytes_per_s: np.ndarray, nvls_fraction: float,
               message_s: Callable[[int], float]) -> PhaseCost:
    """Bottleneck and alpha of a phase; ``message_s(mask)`` is a path's message latency."""
    if geo.steps == 0:
        alpha = 0.0
    elif geo.chained:   # a chunk travels the flows in turn: the mean latency per step
        alpha = geo.steps * (geo.mean_wire + sum(f * message_s(m) for m, f in geo.mask_share.items()))
    else:               # one-shot round: the slowest flow
        alpha = geo.steps * max((w + message_s(m) for m, w in geo.wire_by_mask.items()), default=0.0)
    if geo.edges.size == 0 or not geo.bandwidth:
        return PhaseCost(0.0, -1, alpha)
    per = (geo.plain + geo.nvls / nvls_fraction) / edge_bytes_per_s[geo.edges]
    k = int(np.argmax(per))
    return PhaseCost(float(per[k]), int(geo.edges[k]), alpha)
