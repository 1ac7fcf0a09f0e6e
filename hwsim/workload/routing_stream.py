"""Per-sequence routing: the experts of consecutive tokens of many sequences, in any order.

The simulator's expert cache and the offline cache replay ask, sequence by sequence, which
experts the next tokens pick. A :class:`RoutingStream` keeps each sequence's state (its last
token's experts, its traffic domain, its place in a recorded trace), so that a sequence's
tokens continue one another: temporal locality and cross-layer co-activation hold across
calls when the routing model has them (:mod:`hwsim.workload.routing_locality`). A sequence's
first token is a fresh draw.

Determinism: every draw comes from the stream's generator, so the same calls in the same
order with the same seed give the same ids.

>>> import numpy as np
>>> from hwsim.spec.deployment import RoutingRef
>>> from hwsim.spec.moe import MoESpec
>>> from hwsim.workload.routing import make_routing
>>> model = make_routing(RoutingRef(model="zipf", params={"skew": 1.0}),
...                      MoESpec(num_experts=64, top_k=8, expert_ffn_dim=1024))
>>> stream = RoutingStream(model, np.random.default_rng(0), layers=4)
>>> stream.ids(key=7, tokens=3).shape
(3, 4, 8)
>>> token_trace(model, np.random.default_rng(0), 10, 4, sequence_tokens=4).sequence_starts.tolist()
[0, 4, 8]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwsim.workload.routing_base import RoutingModel, SequenceState, check_tokens
from hwsim.workload.routing_trace import RoutingTrace

__all__ = ["RoutingStream", "token_trace"]

#: token_trace samples whole sequences together up to this many (token, layer, pick) cells.
BATCH_CELLS = 1 << 23


class RoutingStream:
    """Expert ids of consecutive tokens, per sequence (``key``), from one routing model.

    Parameters
    ----------
    routing : the routing model (any model :func:`hwsim.workload.routing.make_routing` builds).
    rng : the generator every draw comes from.
    layers : MoE layers per token (``0..layers-1``).
    """

    def __init__(self, routing: RoutingModel, rng: np.random.Generator, layers: int) -> None:
        if isinstance(layers, bool) or not isinstance(layers, int | np.integer) or layers < 1:
            raise ValueError(f"layers must be an integer >= 1, got {layers!r}")
        self.routing = routing
        self.layers = int(layers)
        self._rng = rng
        self._source = routing.sequences(self.layers)
        self._states: dict[int, SequenceState] = {}

    def ids(self, key: int, tokens: int) -> np.ndarray:
        """(tokens, layers, k) int32 expert ids (-1 = zero-computation expert) of the next `tokens`
        consecutive tokens of sequence `key`, continuing that sequence's last token (temporal
        locality and co-activation honoured when the model has them)."""
        n = check_tokens(tokens)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = self._source.start(self._rng)
        if n == 0:
            return np.empty((0, self.layers, self.routing.top_k), dtype=np.int32)
        return self._source.next(self._rng, state, n).astype(np.int32)

    def ids_many(self, keys: Sequence[int], tokens: int) -> np.ndarray:
        """``(len(keys), tokens, layers, k)`` int32: :meth:`ids` for several sequences in one
        call (e.g. every decoding sequence of an engine step), much cheaper than one call each.
        Keys must be distinct."""
        n = check_tokens(tokens)
        if len(set(keys)) != len(keys):
            raise ValueError("keys must be distinct")
        states = []
        for key in keys:
            state = self._states.get(key)
            if state is None:
                state = self._states[key] = self._source.start(self._rng)
            states.append(state)
        if n == 0 or not states:
            return np.empty((len(states), n, self.layers, self.routing.top_k), dtype=np.int32)
        many = getattr(self._source, "next_many", None)
        if many is None:
            return np.stack([self._source.next(self._rng, st, n) for st in states]).astype(np.int32)
        return many(self._rng, states, n).astype(np.int32)

    def forget(self, key: int) -> None:
        """Drop sequence ``key`` (finished); a later call with the key starts a new sequence."""
        self._states.pop(key, None)

    def __len__(self) -> int:
        """Sequences currently held."""
        return len(self._states)


def token_trace(routing: RoutingModel, rng: np.random.Generator, tokens: int, layers: int, *,
                sequence_tokens: int | None = None) -> RoutingTrace:
    """A synthetic ids trace: ``tokens`` tokens in sequences of ``sequence_tokens`` (the last one
    shorter; ``None``: one sequence), each drawn as a :class:`RoutingStream` draws a sequence
    (sequences of equal length sampled together where the model allows it)."""
    n = check_tokens(tokens)
    if sequence_tokens is not None and (isinstance(sequence_tokens, bool) or sequence_tokens < 1):
        raise ValueError(f"sequence_tokens must be >= 1, got {sequence_tokens!r}")
    if isinstance(layers, bool) or layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers!r}")
    length = n if sequence_tokens is None else int(sequence_tokens)
    starts = np.arange(0, n, max(length, 1), dtype=np.int64)
    lengths = np.diff(np.append(starts, n))
    source = routing.sequences(layers)
    states = [source.start(rng) for _ in range(len(starts))]
    ids = np.empty((n, layers, routing.top_k), dtype=np.int32)
    many = getattr(source, "next_many", None)
    batch = max(1, BATCH_CELLS // max(1, length * layers * routing.top_k))
    full = [i for i in range(len(starts)) if lengths[i] == length]
    done = set()
    if many is not None and len(full) > 1:
        for first in range(0, len(full), batch):
            group = full[first: first + batch]
            block = many(rng, [states[i] for i in group], length)
            for j, i in enumerate(group):
                ids[starts[i]: starts[i] + length] = block[j]
            done.update(group)
    for i in range(len(starts)):
        if i not in done:
            ids[starts[i]: starts[i] + lengths[i]] = source.next(rng, states[i], int(lengths[i]))
    return RoutingTrace(ids=ids, sequence_starts=starts, num_experts=routing.num_experts)
