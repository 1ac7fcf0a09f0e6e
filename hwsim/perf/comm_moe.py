"""MoE expert-parallel traffic: routing counts from expert choices, and DeepEP's two modes.

* :func:`routing_counts` turns per-token expert choices (``tokens x top_k`` expert ids) into
  the matrices the cost model needs: tokens per (source rank, destination rank) counted
  once per rank, (token, expert) pairs per rank pair, and tokens per (source rank,
  destination node) counted once per node (what crosses a NIC under DeepEP normal mode).
* :class:`EpLayout` holds, for an ordered group of ranks, each rank's node (scale-up
  domain) and its RDMA *forwarder* on every other node: the rank at the same position
  (same rail / network plane), as in DeepEP's normal internode kernels.
* :func:`normal_mode_matrix` builds the bytes each rank pair carries in normal mode: a
  token bound for a remote node crosses RDMA once, to the forwarder, which forwards it over
  NVLink to every destination rank of that node.

"Node" means scale-up domain throughout: a server, or a whole NVL72 rack whose trays share
one NVLink switch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class RoutingCounts:
    """Counts from per-token expert choices (all ``float`` arrays, indexed by rank).

    ``tokens_to_rank[i, j]``: tokens of rank ``i`` with at least one expert on rank ``j``;
    ``pairs_to_rank[i, j]``: (token, expert) pairs from ``i`` to experts on ``j`` (DeepEP
    low-latency sends one message per pair); ``tokens_to_node[i, b]``: tokens of ``i`` with
    at least one expert on node ``b`` (per-node dedup).
    """

    tokens_to_rank: np.ndarray
    pairs_to_rank: np.ndarray
    tokens_to_node: np.ndarray


def _distinct_per_row(keys: np.ndarray, invalid: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows sorted, and the mask of each value's first occurrence (``invalid`` never counts)."""
    order = np.sort(keys, axis=1)
    first = np.ones_like(order, dtype=bool)
    first[:, 1:] = order[:, 1:] != order[:, :-1]
    return order, first & (order != invalid)


def routing_counts(expert_ids: np.ndarray, source_rank: np.ndarray, expert_to_rank: np.ndarray,
                   rank_node: np.ndarray) -> RoutingCounts:
    """Counts of where tokens go, vectorised over tokens.

    Parameters
    ----------
    expert_ids : (T, k) int array of chosen experts per token; negative ids are skipped.
    source_rank : (T,) int array, the rank that holds each token.
    expert_to_rank : (E,) int array, the rank hosting each expert.
    rank_node : (R,) int array, the node (0..N-1) of each rank.

    >>> c = routing_counts(np.array([[0, 1], [2, 3]]), np.array([0, 0]),
    ...                    np.array([0, 1, 2, 3]), np.array([0, 0, 1, 1]))
    >>> c.tokens_to_rank[0].tolist(), c.tokens_to_node[0].tolist()
    ([1.0, 1.0, 1.0, 1.0], [1.0, 1.0])
    """
    ids = np.asarray(expert_ids, dtype=np.int64)
    src = np.asarray(source_rank, dtype=np.int64)
    e2r = np.asarray(expert_to_rank, dtype=np.int64)
    rank_node = np.asarray(rank_node, dtype=np.int64)
    r, n = len(rank_node), int(rank_node.max()) + 1 if len(rank_node) else 0
    valid = ids >= 0
    ranks = np.where(valid, e2r[np.where(valid, ids, 0)], -1)
    rows = np.broadcast_to(src[:, None], ranks.shape)
    pairs = np.bincount((rows * r + ranks)[valid], minlength=r * r).reshape(r, r).astype(float)
    ranks_sorted, first = _distinct_per_row(ranks, -1)
    tokens = np.bincount((rows * r + ranks_sorted)[first], minlength=r * r).reshape(r, r).astype(float)
    nodes = np.where(ranks >= 0, rank_node[np.where(ranks >= 0, ranks, 0)], -1)
    nodes_sorted, nfirst = _distinct_per_row(nodes, -1)
    per_node = np.bincount((rows * n + nodes_sorted)[nfirst], minlength=r * n).reshape(r, n).astype(float)
    return RoutingCounts(tokens_to_rank=tokens, pairs_to_rank=pairs, tokens_to_node=per_node)


@dataclass(frozen=True, slots=True)
class EpLayout:
    """Node and forwarders of an ordered group of ranks (see the module docstring)."""

    rank_node: np.ndarray   # (R,) node index 0..N-1 of each rank (nodes in first-seen order)
    forwarder: np.ndarray   # (R, N) rank on node b at the same position as rank s
    nvl_src: np.ndarray     # (R, R) who sends rank s's tokens for rank r over NVLink
    nvl_valid: np.ndarray   # (R, R) False where that sender is r itself (no NVLink hop)
    rdma_valid: np.ndarray  # (R, N) True where node b is remote to rank s

    @classmethod
    def from_domains(cls, domains: np.ndarray) -> EpLayout:
        domains = np.asarray(domains)
        _, first, node = np.unique(domains, return_index=True, return_inverse=True)
        # number the nodes in the order they first appear among the ranks
        rank_node = np.argsort(np.argsort(first))[node]
        r, n = len(domains), len(first)
        members = [np.flatnonzero(rank_node == b) for b in range(n)]
        position = np.zeros(r, dtype=np.int64)
        for m in members:
            position[m] = np.arange(len(m))
        forwarder = np.array([[m[position[s] % len(m)] for m in members] for s in range(r)], dtype=np.int64)
        same = rank_node[:, None] == rank_node[None, :]
        fwd_to_r = forwarder[:, rank_node]                       # (R, R): forwarder of s on r's node
        nvl_src = np.where(same, np.arange(r)[:, None], fwd_to_r)
        nvl_valid = nvl_src != np.arange(r)[None, :]
        rdma_valid = rank_node[:, None] != np.arange(n)[None, :]
        return cls(rank_node=rank_node, forwarder=forwarder, nvl_src=nvl_src,
                   nvl_valid=nvl_valid, rdma_valid=rdma_valid)

    @property
    def num_nodes(self) -> int:
        return int(self.forwarder.shape[1])


def normal_mode_matrix(layout: EpLayout, tokens_to_rank: np.ndarray, tokens_to_node: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(RDMA, NVLink) token counts per rank pair for DeepEP normal-mode dispatch.

    RDMA: rank ``s`` sends ``tokens_to_node[s, b]`` tokens to its forwarder on each remote
    node ``b``. NVLink: ``tokens_to_rank[s, r]`` goes from ``s`` (same node) or from the
    forwarder (remote node) to ``r``, unless the forwarder is ``r`` itself.
    """
    r = len(layout.rank_node)
    t = np.asarray(tokens_to_rank, dtype=float)
    d = np.asarray(tokens_to_node, dtype=float)
    if t.shape != (r, r) or d.shape != (r, layout.num_nodes):
        raise ValueError(f"expected tokens_to_rank {(r, r)} and tokens_to_node {(r, layout.num_nodes)}, "
                         f"got {t.shape} and {d.shape}")
    rows = np.broadcast_to(np.arange(r)[:, None], d.shape)
    rdma_flat = (rows * r + layout.forwarder)[layout.rdma_valid]
    rdma = np.bincount(rdma_flat, weights=d[layout.rdma_valid], minlength=r * r).reshape(r, r)
    cols = np.broadcast_to(np.arange(r)[None, :], t.shape)
    nvl_flat = (layout.nvl_src * r + cols)[layout.nvl_valid]
    nvl = np.bincount(nvl_flat, weights=t[layout.nvl_valid], minlength=r * r).reshape(r, r)
    return rdma, nvl
