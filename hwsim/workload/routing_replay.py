"""Trace-driven routing: ``model: trace`` replays recorded routing.

::

    routing: {model: trace, file: routing.npz, mode: ids}
    routing: {model: trace, file: expert_counts.csv, mode: histogram,
              select: {model: olmoe, domain: arxiv, selection: topk}}

``mode: ids`` (the default for ``.parquet`` and for ``.npz`` holding ``ids``) replays the
experts each recorded token picked (:class:`~hwsim.workload.routing_trace.RoutingTrace`):

* ``step_counts(rng, tokens, layer)`` takes the next ``tokens`` tokens of the trace in that
  layer, cycling at its end (one replay position per layer, kept by the model: the only
  state a routing model holds), so one pass over the trace reproduces its counts exactly;
* a :class:`~hwsim.workload.routing_stream.RoutingStream` gives the n-th new sequence the
  n-th recorded sequence (cycling) and continues it token by token (with a single recorded
  sequence, a new sequence starts at a random token); recorded temporal locality and
  co-activation come with it;
* ``expert_counts`` and ``expert_ids`` take a window of consecutive tokens at a random place.

``mode: histogram`` (the default for CSV and for ``.npz`` holding ``counts``) uses per-layer
expert counts (:class:`~hwsim.workload.routing_trace.RoutingHistogram`) as the layer's
popularity: ``inclusion`` is the normalised histogram (scaled to the real experts per token)
and ``step_counts`` draws from it exactly as the other popularity models do, stepping through
the windows of a ``(W, L, E)`` histogram every ``window_tokens`` tokens (default: the tokens a
window recorded, ``sum / top_k``). Per-token sampling (``expert_counts``, streams) uses the
Plackett-Luce weights whose inclusion probabilities match the histogram summed over windows
(found by a fixed-point iteration, ``w <- w * target / inclusion(w)``, to 1e-6), so it also
honours node limits, locality and co-activation. Zero-computation experts are not supported
in histogram mode.

Layers: recorded layer ``j`` serves the model's MoE layers ``l`` with ``l mod L_trace == j``
(a trace of fewer layers than the model repeats; the OLMoE counts record layers 0, 7 and 15,
which serve MoE layers 0, 3, 6, ... / 1, 4, 7, ... / 2, 5, 8, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hwsim.errors import SpecError, join_path
from hwsim.spec.moe import MoESpec
from hwsim.workload.routing_base import (
    ROUTING_MODELS,
    RoutingBase,
    SequenceState,
    check_keys,
    check_tokens,
    integer_param,
    layer_ids,
)
from hwsim.workload.routing_inclusion import inclusion_probabilities
from hwsim.workload.routing_popularity import PopularityRouting
from hwsim.workload.routing_trace import (
    RoutingHistogram,
    RoutingTrace,
    parse_select,
    read_routing_histogram,
    read_routing_trace,
)

__all__ = ["TraceRouting", "HistogramRouting", "weights_for_inclusion", "MODES"]

MODES = ("ids", "histogram")
FIT_TOLERANCE = 1e-6
FIT_ITERATIONS = 200


def weights_for_inclusion(target: np.ndarray, k: int) -> np.ndarray:
    """Plackett-Luce weights whose top-``k`` inclusion probabilities are ``target`` (sums to
    ``k``, each below 1; experts with target 0 get weight 0), by the fixed-point iteration
    ``w <- w * target / inclusion(w)`` (inclusion grows with an expert's own weight).

    >>> w = weights_for_inclusion(np.array([0.9, 0.6, 0.3, 0.2]), 2)
    >>> np.round(inclusion_probabilities(w, 2), 4).tolist()
    [0.9, 0.6, 0.3, 0.2]
    """
    t = np.asarray(target, dtype=float)
    live = t > 0
    if int(live.sum()) <= k:
        return live.astype(float)
    w = np.where(live, t, 0.0)
    for _ in range(FIT_ITERATIONS):
        pi = inclusion_probabilities(w, k)
        if np.abs(pi - t).max() < FIT_TOLERANCE:
            break
        w = np.where(live, w * t / np.where(live, np.maximum(pi, 1e-300), 1.0), 0.0)
        w /= w.sum()
    return w


class _Loader:
    """Reads the file a ``trace`` model names, with errors naming the parameter's path."""

    @staticmethod
    def params(params: Mapping[str, Any], path: str) -> tuple[Path, str, dict[str, str]]:
        if "file" not in params or not isinstance(params["file"], str | Path) or not str(params["file"]):
            raise SpecError("the trace routing model needs a file", path=join_path(path, "file"),
                            expected="file: routing.npz (ids or counts), .parquet (ids) or .csv (counts)",
                            found=params.get("file"))
        file = Path(params["file"])
        name = file.name.lower()
        default = "histogram" if name.endswith((".csv", ".csv.gz")) else "ids"
        if name.endswith(".npz") and "mode" not in params and file.is_file():
            try:
                with np.load(file, allow_pickle=False) as data:
                    default = "histogram" if "counts" in data and "ids" not in data else "ids"
            except (OSError, ValueError):
                pass  # the reader reports it
        mode = params.get("mode", default)
        if mode not in MODES:
            raise SpecError("unknown trace mode", path=join_path(path, "mode"), expected=" or ".join(MODES), found=mode)
        select = params.get("select")
        if select is None:
            chosen: dict[str, str] = {}
        elif isinstance(select, str):
            chosen = parse_select(select)
        elif isinstance(select, Mapping):
            chosen = {str(k): str(v) for k, v in select.items()}
        else:
            raise SpecError("select is a mapping of column values", path=join_path(path, "select"),
                            expected="{model: olmoe, domain: arxiv, selection: topk}", found=select)
        if chosen and mode != "histogram":
            raise SpecError("select filters CSV counts (mode: histogram)", path=join_path(path, "select"))
        return file, mode, chosen


@ROUTING_MODELS.register("trace")
class TraceRouting(RoutingBase):
    """Replays recorded per-token expert ids (``mode: ids``; see the module docstring).

    ``from_params`` with ``mode: histogram`` builds a :class:`HistogramRouting` instead.
    """

    name = "trace"
    PARAMS: ClassVar[tuple[str, ...]] = ("file", "mode", "select", "window_tokens", "exact_max_tokens",
                                         "max_nodes", "nodes", "experts_per_node")
    IDS_PARAMS: ClassVar[tuple[str, ...]] = ("file", "mode")

    def __init__(self, moe: MoESpec, *, trace: RoutingTrace, file: str = "") -> None:
        self.moe = moe
        self.num_experts = moe.num_experts
        self.top_k = moe.top_k
        self.file = file
        if trace.tokens == 0:
            raise ValueError("the trace holds no tokens")
        if trace.top_k != moe.top_k:
            raise ValueError(f"the trace has {trace.top_k} experts per token, the model top_k={moe.top_k}")
        if trace.experts > moe.num_experts or (trace.num_experts not in (None, moe.num_experts)):
            raise ValueError(f"the trace has {trace.experts} experts, the model {moe.num_experts}")
        if moe.num_zero_experts == 0 and trace.ids.min() < 0:
            raise ValueError("the trace has zero-computation picks (-1), the model no zero experts")
        self.trace = trace
        self._cursor: dict[int, int] = {}
        # per recorded layer, built on first use (the simulator samples a few layers of a
        # possibly large trace): its (T, k) ids contiguous, and its per-expert picks
        self._layer_ids: dict[int, np.ndarray] = {}
        self._layer_counts: dict[int, np.ndarray] = {}

    @classmethod
    def from_params(cls, params: Mapping[str, Any], moe: MoESpec, *, path: str = "experts.routing") -> RoutingBase:
        check_keys(params, cls.PARAMS, "routing model 'trace'", path)
        file, mode, select = _Loader.params(params, path)
        if mode == "histogram":
            rest = {k: v for k, v in params.items() if k not in ("file", "mode", "select")}
            return HistogramRouting.from_file(file, moe, select=select, params=rest, path=path)
        check_keys(params, cls.IDS_PARAMS, "routing model 'trace' (mode: ids)", path)
        trace = _with_file_path(read_routing_trace, file, path)
        try:
            return cls(moe, trace=trace, file=str(file))
        except ValueError as err:
            raise SpecError(str(err), file=str(file), path=join_path(path, "file")) from None

    def trace_layer(self, layer: int) -> int:
        """The recorded layer serving MoE layer ``layer`` (``layer mod L_trace``)."""
        return layer % self.trace.num_layers

    def inclusion(self, layer: int = 0) -> np.ndarray:
        """(E,) share of the recorded tokens that picked each expert in the layer's recording."""
        return self._counts(self.trace_layer(layer_ids([layer])[0])) / self.trace.tokens

    def _ids(self, trace_layer: int) -> np.ndarray:
        """(T, k) recorded ids of one recorded layer, contiguous."""
        if trace_layer not in self._layer_ids:
            self._layer_ids[trace_layer] = np.ascontiguousarray(self.trace.ids[:, trace_layer, :])
        return self._layer_ids[trace_layer]

    def _counts(self, trace_layer: int) -> np.ndarray:
        """(E,) int64 picks of each expert in one recorded layer."""
        if trace_layer not in self._layer_counts:
            ids = self._layer_ids.get(trace_layer, self.trace.ids[:, trace_layer, :])
            flat = ids.reshape(-1)  # a temporary copy when strided; not kept
            self._layer_counts[trace_layer] = np.bincount(flat[flat >= 0], minlength=self.num_experts)
        return self._layer_counts[trace_layer]

    def step_counts(self, rng: np.random.Generator, tokens: int, layer: int = 0) -> np.ndarray:
        """(E,) picks of the next ``tokens`` recorded tokens in ``layer`` (cycling)."""
        n = check_tokens(tokens)
        index = layer_ids([layer])[0]
        start = self._cursor.get(index, 0)
        self._cursor[index] = (start + n) % self.trace.tokens
        return self._window_counts(start, n, self.trace_layer(index))

    def _window_counts(self, start: int, n: int, trace_layer: int) -> np.ndarray:
        t = self.trace.tokens
        ids = self._ids(trace_layer)
        laps, rest = divmod(n, t)
        out = self._counts(trace_layer) * laps
        end = start + rest
        picks = ids[start:end] if end <= t else np.concatenate([ids[start:], ids[: end - t]])
        flat = picks.reshape(-1)
        return out + np.bincount(flat[flat >= 0], minlength=self.num_experts)

    def expert_counts(self, rng: np.random.Generator, tokens: int,
                      layers: int | Sequence[int] = 1) -> np.ndarray:
        """(len(layers), E): the picks of ``tokens`` consecutive recorded tokens from a random
        start (the same tokens in every layer)."""
        n = check_tokens(tokens)
        start = int(rng.integers(self.trace.tokens))
        return np.stack([self._window_counts(start, n, self.trace_layer(layer)) for layer in layer_ids(layers)])

    def expert_ids(self, rng: np.random.Generator, tokens: int, layer: int = 0) -> np.ndarray:
        """(tokens, k) experts of ``tokens`` consecutive recorded tokens from a random start."""
        n = check_tokens(tokens)
        rows = (int(rng.integers(self.trace.tokens)) + np.arange(n)) % self.trace.tokens
        return self.trace.ids[rows, self.trace_layer(layer_ids([layer])[0])].astype(np.int64)

    def sequences(self, layers: int) -> TraceSource:
        return TraceSource(self, layers)


class TraceSource:
    """Replays recorded sequences one after the other (see the module docstring)."""

    def __init__(self, model: TraceRouting, layers: int) -> None:
        self.model = model
        self.layers = int(layers)
        self._columns = np.arange(self.layers) % model.trace.num_layers
        self._started = 0

    def start(self, rng: np.random.Generator) -> SequenceState:
        trace = self.model.trace
        starts = trace.sequence_starts
        if len(starts) > 1:
            position = int(starts[self._started % len(starts)])
        else:
            position = int(rng.integers(trace.tokens))
        self._started += 1
        return SequenceState(position=position)

    def next(self, rng: np.random.Generator, state: SequenceState, tokens: int) -> np.ndarray:
        return self.next_many(rng, [state], tokens)[0]

    def next_many(self, rng: np.random.Generator, states: Sequence[SequenceState], tokens: int) -> np.ndarray:
        """``(len(states), tokens, L, k)``: each sequence's next recorded tokens."""
        t = self.model.trace.tokens
        at = np.array([st.position for st in states], dtype=np.int64)
        rows = (at[:, None] + np.arange(tokens)[None, :]) % t                 # (S, tokens)
        for st, position in zip(states, at.tolist(), strict=True):
            st.position = int((position + tokens) % t)
        return self.model.trace.ids[rows[:, :, None], self._columns[None, None, :]].astype(np.int64)


class HistogramRouting(PopularityRouting):
    """Per-layer popularity from recorded expert counts (``mode: histogram``)."""

    name = "trace"
    PARAMS = ("window_tokens", *PopularityRouting.PARAMS)

    def __init__(self, moe: MoESpec, *, histogram: RoutingHistogram, window_tokens: int | None = None,
                 file: str = "", **kwargs: Any) -> None:
        if moe.num_zero_experts:
            raise ValueError("histogram routing does not support zero-computation experts")
        if histogram.num_experts > moe.num_experts:
            raise ValueError(f"the counts cover {histogram.num_experts} experts, the model {moe.num_experts}")
        counts = np.zeros((histogram.windows, histogram.num_layers, moe.num_experts))
        counts[:, :, : histogram.num_experts] = histogram.counts
        if np.any(np.count_nonzero(counts.sum(axis=0), axis=1) < moe.top_k):
            raise ValueError(f"every recorded layer needs at least top_k={moe.top_k} experts with counts")
        self.histogram = histogram
        self.file = file
        self._window_probs = counts / counts.sum(axis=2, keepdims=True)            # (W, L, E)
        total = counts.sum(axis=0)
        self._target = total / total.sum(axis=1, keepdims=True) * moe.top_k       # (L, E) inclusion
        if np.any(self._target > 1):
            raise ValueError("an expert holds more than 1/top_k of a layer's picks: the counts cannot come "
                             f"from top-{moe.top_k} routing (is top_k right?)")
        default_window = int(round(counts[0].sum(axis=1).mean() / moe.top_k))
        self.window_tokens = window_tokens if window_tokens is not None else max(1, default_window)
        self._fitted: dict[int, np.ndarray] = {}
        self._step_cursor: dict[int, int] = {}
        super().__init__(moe, **kwargs)

    @classmethod
    def from_file(cls, file: Path, moe: MoESpec, *, select: Mapping[str, str], params: Mapping[str, Any],
                  path: str) -> HistogramRouting:
        check_keys(params, cls.PARAMS, "routing model 'trace' (mode: histogram)", path)
        histogram = _with_file_path(lambda f: read_routing_histogram(f, select), file, path)
        kwargs = cls._parse(params, moe, path)
        kwargs["window_tokens"] = integer_param(params, "window_tokens", path, default=None, minimum=1,
                                                nullable=True)
        try:
            return cls(moe, histogram=histogram, file=str(file), **kwargs)
        except ValueError as err:
            raise SpecError(str(err), file=str(file), path=path) from None

    def trace_layer(self, layer: int) -> int:
        return layer % self.histogram.num_layers

    def _fit(self, trace_layer: int) -> np.ndarray:
        """(E,) normalised weights whose inclusion matches the layer's histogram."""
        if trace_layer not in self._fitted:
            w = weights_for_inclusion(self._target[trace_layer], self.top_k)
            w = np.maximum(w / w.sum(), 1e-12)  # group-limited sampling needs every weight > 0
            self._fitted[trace_layer] = w / w.sum()
        return self._fitted[trace_layer]

    def _weights_by_rank(self) -> np.ndarray:
        return np.sort(self._fit(0))[::-1]

    def _layer_weights(self, layer: int) -> np.ndarray:
        return np.sort(self._fit(self.trace_layer(layer)))[::-1]

    def _rank_to_expert(self, layer: int) -> np.ndarray:
        return np.argsort(-self._fit(self.trace_layer(layer)), kind="stable")

    def inclusion(self, layer: int = 0) -> np.ndarray:
        """(E,) the recorded share of tokens picking each expert (summed over windows)."""
        return self._target[self.trace_layer(layer_ids([layer])[0])]

    def step_counts(self, rng: np.random.Generator, tokens: int, layer: int = 0) -> np.ndarray:
        """(E,) a multinomial of ``tokens * top_k`` picks over the current window's histogram
        of ``layer``; windows advance every ``window_tokens`` tokens (cycling)."""
        n = check_tokens(tokens)
        index = layer_ids([layer])[0]
        seen = self._step_cursor.get(index, 0)
        self._step_cursor[index] = seen + n
        window = (seen // self.window_tokens) % self.histogram.windows
        return rng.multinomial(n * self.top_k, self._window_probs[window, self.trace_layer(index)])


def _with_file_path(read: Any, file: Path, path: str) -> Any:
    """Call ``read(file)``; a SpecError without a field path gets the parameter's path."""
    try:
        return read(file)
    except SpecError as err:
        if err.path:
            raise
        raise err.with_context(file=str(file), prefix=join_path(path, "file")) from None
