"""Collective algorithms as flows: which vertex sends how many bytes to which, per phase.

Every builder returns a list of :class:`Phase`. Phases run one after another; the flows of
one phase run at the same time and share links. Bytes are *per byte of the collective's
size* (``nbytes`` = NCCL's "size"), so a plan is built once per group and scaled by the
size of each call. ``steps`` is the number of sequential message rounds inside the phase
(each pays the per-message latency); ``nvls`` marks phases that run at the NVLS fraction
of the link rate.

Ring (NCCL ``Ring``): ``n`` ranks; all-reduce sends ``2 (n-1)/n`` of the size to the next
rank in ``2 (n-1)`` steps (reduce-scatter then all-gather, ``(n-1)/n`` and ``n-1`` each).
Across scale-up domains NCCL runs one ring per NIC rail; here one ring per device of a
domain (``C = devices per domain``), ring ``c`` rotated by ``c`` inside every domain, so that
each ring leaves a domain from a different device and the rings spread over all rails.

Tree (NCCL ``Tree``, all-reduce only): double binary tree; each tree carries half the size,
reduce up and broadcast down pipelined, ``2 floor(log2 n)`` steps.

Direct (one-shot all-pairs, as custom all-reduce kernels and full-mesh fabrics do): every
rank sends its ``1/n`` shard to every other rank in one step; all-reduce = reduce-scatter +
all-gather, two steps.

NVLS (NVLink SHARP, in-switch reduction): each device pushes its buffer into the switch and
pulls the reduced result: about ``nbytes`` each way per device for an all-reduce
(``nbytes`` up / ``nbytes/n`` down for a reduce-scatter, the reverse for an all-gather).

Hierarchical: reduce-scatter inside each domain, the collective across domains on the
``1/m`` shard among devices at the same position (same rail), all-gather inside each domain;
``hierarchical(intra/inter)`` names the algorithms of the two levels. The phases run
pipelined in chunks (as NCCL runs its multi-level algorithms): the caller prices their
flows as one bandwidth pool and adds their latencies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPS = ("all_reduce", "all_gather", "reduce_scatter")
Subgroup = list[list[int]]
"""One collective's vertices, split by scale-up domain (each inner list in rank order)."""


@dataclass(frozen=True, slots=True)
class Phase:
    """Simultaneous flows; ``steps`` message rounds, each paying the flows' latency.

    ``chained``: a chunk travels the flows one after another (ring, tree), so a step pays
    the *mean* latency of the flows; otherwise (one-shot rounds) the *largest*.
    """

    src: np.ndarray
    dst: np.ndarray
    unit_bytes: np.ndarray
    steps: int
    nvls: bool = False
    chained: bool = False


def make_phase(flows: list[tuple[int, int, float]], steps: int, *, nvls: bool = False,
               chained: bool = False) -> Phase:
    if not flows:
        z = np.zeros(0, dtype=np.int64)
        return Phase(z, z, np.zeros(0), steps, nvls, chained)
    src, dst, b = zip(*flows, strict=True)
    return Phase(np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64), np.array(b, dtype=float),
                 steps, nvls, chained)


def _ring_order(sub: Subgroup, c: int) -> list[int]:
    """Ring ``c``: in domain ``k`` enter at position ``c + k`` and leave from the next one.

    The next domain is entered at the position the previous one left from, so every
    domain-crossing hop joins two devices on the same rail and rings spread over rails.
    """
    if len(sub) == 1:
        return list(sub[0])
    order: list[int] = []
    for k, d in enumerate(sub):
        m = len(d)
        a = (c + k) % m
        order += [d[a]] + [d[(a + j) % m] for j in range(2, m)] + ([d[(a + 1) % m]] if m > 1 else [])
    return order


def _size(sub: Subgroup) -> int:
    return sum(len(d) for d in sub)


def ring(op: str, subgroups: list[Subgroup], scale: float = 1.0) -> list[Phase]:
    flows: list[tuple[int, int, float]] = []
    steps = 0
    for sub in subgroups:
        n = _size(sub)
        if n < 2:
            continue
        factor = (2.0 if op == "all_reduce" else 1.0) * (n - 1) / n * scale
        steps = max(steps, (2 if op == "all_reduce" else 1) * (n - 1))
        channels = max(len(d) for d in sub) if len(sub) > 1 else 1
        for c in range(channels):
            order = _ring_order(sub, c)
            flows += [(order[i], order[(i + 1) % n], factor / channels) for i in range(n)]
    return [make_phase(flows, steps, chained=True)]


def tree(op: str, subgroups: list[Subgroup], scale: float = 1.0) -> list[Phase]:
    if op != "all_reduce":
        raise ValueError("the tree algorithm only exists for all-reduce")
    flows: list[tuple[int, int, float]] = []
    steps = 0
    for sub in subgroups:
        order = [v for d in sub for v in d]
        n = len(order)
        if n < 2:
            continue
        steps = max(steps, 2 * int(np.floor(np.log2(n))))
        for ranks in (order, order[::-1]):
            for i in range(1, n):
                parent, child = ranks[(i - 1) // 2], ranks[i]
                flows += [(child, parent, 0.5 * scale), (parent, child, 0.5 * scale)]
    return [make_phase(flows, steps, chained=True)]


def direct(op: str, subgroups: list[Subgroup], scale: float = 1.0) -> list[Phase]:
    def one_round() -> Phase:
        flows = []
        for sub in subgroups:
            order = [v for d in sub for v in d]
            n = len(order)
            flows += [(a, b, scale / n) for a in order for b in order if a != b]
        return make_phase(flows, 1)

    return [one_round(), one_round()] if op == "all_reduce" else [one_round()]


def nvls(op: str, subgroups: list[Subgroup], switch_of: dict[int, int], scale: float = 1.0) -> list[Phase]:
    """In-switch reduction; ``switch_of`` maps each device vertex to its switch vertex."""
    flows: list[tuple[int, int, float]] = []
    for sub in subgroups:
        order = [v for d in sub for v in d]
        n = len(order)
        up, down = {"all_reduce": (1.0, 1.0), "reduce_scatter": (1.0, 1.0 / n),
                    "all_gather": (1.0 / n, 1.0)}[op]
        for v in order:
            flows += [(v, switch_of[v], up * scale), (switch_of[v], v, down * scale)]
    return [make_phase(flows, 2 if op == "all_reduce" else 1, nvls=True)]


def flat(name: str, op: str, subgroups: list[Subgroup], switch_of: dict[int, int], scale: float = 1.0) -> list[Phase]:
    if name == "ring":
        return ring(op, subgroups, scale)
    if name == "tree":
        return tree(op, subgroups, scale)
    if name == "direct":
        return direct(op, subgroups, scale)
    if name == "nvls":
        return nvls(op, subgroups, switch_of, scale)
    raise ValueError(f"unknown algorithm {name!r}")


def hierarchical(op: str, sub: Subgroup, intra: str, inter: str, switch_of: dict[int, int]) -> list[Phase]:
    """Intra-domain ``intra`` algorithm, inter-domain ``inter`` algorithm on the 1/m shard."""
    m = len(sub[0])
    domains = [[d] for d in sub]                       # each domain is its own subgroup
    rails = [[[d[p]] for d in sub] for p in range(m)]  # position p of every domain
    if op == "all_reduce":
        return (flat(intra, "reduce_scatter", domains, switch_of)
                + flat(inter, "all_reduce", rails, switch_of, 1.0 / m)
                + flat(intra, "all_gather", domains, switch_of))
    if op == "reduce_scatter":
        return flat(intra, "reduce_scatter", domains, switch_of) + flat(inter, "reduce_scatter", rails, switch_of, 1.0 / m)
    return flat(inter, "all_gather", rails, switch_of, 1.0 / m) + flat(intra, "all_gather", domains, switch_of)
