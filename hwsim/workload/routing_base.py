"""What every routing model offers, the registry of models, and the checks of their parameters.

A routing model answers, for the MoE layers of one model:

* ``expert_counts(rng, tokens, layers)``: the ``(layers, E)`` token-expert assignments of
  ``tokens`` independent tokens (exact per-token sampling);
* ``step_counts(rng, tokens, layer)``: the ``(E,)`` assignments of one engine step, fast
  (what the simulator draws every step);
* ``expert_ids(rng, tokens, layer)``: the ``(tokens, top_k)`` experts of independent tokens;
* ``inclusion(layer)``: the chance that a token picks each expert;
* ``sequences(layers)``: a :class:`SequenceSource`, the per-sequence generator behind
  :class:`hwsim.workload.routing_stream.RoutingStream` (consecutive tokens of one sequence,
  with temporal locality and cross-layer co-activation where the model has them).

Layers are numbered among the MoE layers (0 is the first MoE layer). Expert id ``-1`` is a
zero-computation expert (LongCat-Flash).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from hwsim.errors import SpecError, join_path
from hwsim.registry import Registry, suggest
from hwsim.spec.moe import MoESpec

__all__ = [
    "RoutingModel",
    "RoutingBase",
    "SequenceSource",
    "SequenceState",
    "ROUTING_MODELS",
    "check_keys",
]


@runtime_checkable
class RoutingModel(Protocol):
    """Turns tokens into expert picks for each MoE layer (see the module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def num_experts(self) -> int: ...

    @property
    def top_k(self) -> int: ...

    def expert_counts(self, rng: np.random.Generator, tokens: int,
                      layers: int | Sequence[int] = 1) -> np.ndarray:
        """``(layers, num_experts)`` int64 counts (each row sums to about ``tokens * top_k``;
        exactly, without zero-computation experts)."""
        ...

    def step_counts(self, rng: np.random.Generator, tokens: int, layer: int = 0) -> np.ndarray:
        """``(num_experts,)`` int64 assignments of one engine step of ``tokens`` tokens."""
        ...

    def expert_ids(self, rng: np.random.Generator, tokens: int, layer: int = 0) -> np.ndarray:
        """``(tokens, top_k)`` int64 experts of independent tokens (``-1``: zero expert)."""
        ...

    def inclusion(self, layer: int = 0) -> np.ndarray:
        """``(num_experts,)`` chance that a token picks each expert in MoE layer ``layer``."""
        ...

    def sequences(self, layers: int) -> SequenceSource:
        """The per-sequence generator over MoE layers ``0..layers-1``."""
        ...


class SequenceState:
    """Where one sequence stands: its last token's experts ``(layers, k)`` in the source's id
    space (``None`` before its first token), its traffic domain (mixtures) and its position
    (trace replay). Owned by a :class:`~hwsim.workload.routing_stream.RoutingStream`."""

    __slots__ = ("last", "component", "position")

    def __init__(self, component: int = 0, position: int = 0) -> None:
        self.last: np.ndarray | None = None
        self.component = component
        self.position = position


class SequenceSource(Protocol):
    """Generates consecutive tokens of sequences; every draw comes from the generator passed."""

    layers: int

    def start(self, rng: np.random.Generator) -> SequenceState:
        """The state of a new sequence (may draw its domain or its place in a trace)."""
        ...

    def next(self, rng: np.random.Generator, state: SequenceState, tokens: int) -> np.ndarray:
        """``(tokens, layers, k)`` int64 expert ids (``-1``: zero expert) of the sequence's next
        ``tokens`` tokens; updates ``state``."""
        ...


class RoutingBase(ABC):
    """Shared building and per-step sampling of the routing models.

    Subclasses set :attr:`name` and :attr:`PARAMS`, parse their parameters in :meth:`_parse`
    and give per-layer inclusion probabilities; :meth:`step_counts` then draws one step's
    counts as a multinomial of ``round(tokens * real experts per token)`` picks over the
    layer's normalised inclusion (means exact; it ignores only that one token's picks are
    distinct, which matters little for loads: the exact sampler is :meth:`expert_counts`).
    """

    name: ClassVar[str]
    #: Parameter names accepted under ``experts.routing`` (besides ``model``).
    PARAMS: ClassVar[tuple[str, ...]] = ()

    moe: MoESpec
    num_experts: int
    top_k: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any], moe: MoESpec, *, path: str = "experts.routing") -> RoutingBase:
        """Build from the ``experts.routing`` mapping (without ``model``); errors name the path."""
        check_keys(params, cls.PARAMS, f"routing model '{cls.name}'", path)
        kwargs = cls._parse(params, moe, path)
        try:
            return cls(moe, **kwargs)  # type: ignore[call-arg]
        except ValueError as err:
            raise SpecError(str(err), path=path) from None

    @classmethod
    def _parse(cls, params: Mapping[str, Any], moe: MoESpec, path: str) -> dict[str, Any]:
        """Keyword arguments of the constructor from the checked parameters."""
        return {}

    @abstractmethod
    def inclusion(self, layer: int = 0) -> np.ndarray:
        """(E,) chance that a token picks each expert in MoE layer ``layer``."""

    @abstractmethod
    def expert_counts(self, rng: np.random.Generator, tokens: int,
                      layers: int | Sequence[int] = 1) -> np.ndarray:
        """``(len(layers), E)`` int64 token-expert assignments of ``tokens`` tokens."""

    @abstractmethod
    def expert_ids(self, rng: np.random.Generator, tokens: int, layer: int = 0) -> np.ndarray:
        """``(tokens, top_k)`` int64 experts of independent tokens (``-1``: zero expert)."""

    @abstractmethod
    def sequences(self, layers: int) -> SequenceSource:
        """The per-sequence generator over MoE layers ``0..layers-1``."""

    @property
    def real_experts_per_token(self) -> float:
        """Mean real (weight-carrying) experts a token picks."""
        return self.moe.real_experts_per_token

    def step_counts(self, rng: np.random.Generator, tokens: int, layer: int = 0) -> np.ndarray:
        """``(E,)`` int64: a multinomial of ``round(tokens * real experts per token)`` picks over
        the normalised :meth:`inclusion` of ``layer`` (see the class docstring)."""
        n = check_tokens(tokens)
        probs = self._step_probs(layer_ids([layer])[0])
        return rng.multinomial(round(n * self.real_experts_per_token), probs)

    def _step_probs(self, layer: int) -> np.ndarray:
        cache: dict[int, np.ndarray] = self.__dict__.setdefault("_step_prob_cache", {})
        if layer not in cache:
            p = np.clip(np.asarray(self.inclusion(layer), dtype=float), 0.0, None)
            cache[layer] = p / p.sum()
        return cache[layer]

    def expected_counts(self, tokens: float, layers: int | Sequence[int] = 1) -> np.ndarray:
        """``(len(layers), E)`` mean assignments of ``tokens`` tokens: ``tokens * inclusion``."""
        return np.stack([tokens * np.asarray(self.inclusion(layer)) for layer in layer_ids(layers)])


ROUTING_MODELS: Registry[type[RoutingBase]] = Registry("routing model")


# ---------------------------------------------------------------------- argument checks


def check_keys(params: Mapping[str, Any], known: Sequence[str], what: str, path: str) -> None:
    """Every key of ``params`` is in ``known``, else a SpecError naming it (with a suggestion)."""
    if not isinstance(params, Mapping):
        raise SpecError(f"{what} takes a mapping of parameters", path=path, expected="a mapping", found=params)
    for key in params:
        if key not in known:
            raise SpecError(f"unknown parameter '{key}' for {what}; known: "
                            f"{', '.join(known) or 'none'}{suggest(str(key), tuple(known))}",
                            path=join_path(path, str(key)))


def integer_param(params: Mapping[str, Any], key: str, path: str, *, default: int | None,
                  minimum: int | None, nullable: bool, maximum: int | None = None) -> int | None:
    """An integer parameter (or ``default`` when absent); errors name ``path.key``."""
    if key not in params:
        return default
    value = params[key]
    if value is None and nullable:
        return None
    bad = (isinstance(value, bool) or not isinstance(value, int)
           or (minimum is not None and value < minimum) or (maximum is not None and value > maximum))
    if bad:
        what = "an integer"
        if minimum is not None and maximum is not None:
            what += f" in {minimum}..{maximum}"
        elif minimum is not None:
            what += f" >= {minimum}"
        what += " or null" if nullable else ""
        raise SpecError(f"{key} must be {what}", path=join_path(path, key), expected=what, found=value)
    return value


def number_param(params: Mapping[str, Any], key: str, path: str, *, default: float | None,
                 low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False,
                 example: str = "") -> float:
    """A finite number in ``[low, high]`` (ends open when asked); errors name ``path.key``."""
    if key not in params:
        if default is None:
            raise SpecError(f"{key} is required", path=join_path(path, key),
                            expected=f"a number{example and ', e.g. ' + example}")
        return default
    value = params[key]
    lo = "(" if low_open else "["
    hi = ")" if high_open or math.isinf(high) else "]"
    what = f"a finite number in {lo}{low:g}, {high:g}{hi}"
    ok = (not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
          and (value > low if low_open else value >= low) and (value < high if high_open else value <= high))
    if not ok:
        raise SpecError(f"{key} must be {what}", path=join_path(path, key), expected=what, found=value)
    return float(value)


def layer_ids(layers: int | Sequence[int]) -> list[int]:
    """A layer count (``0..n-1``) or a sequence of MoE-layer indices, as a list."""
    if isinstance(layers, bool):
        raise ValueError("layers must be a count or a sequence of MoE-layer indices")
    if isinstance(layers, int | np.integer):
        if layers < 0:
            raise ValueError(f"layers must be >= 0, got {layers}")
        return list(range(int(layers)))
    ids = [int(x) for x in layers]
    if any(x < 0 for x in ids):
        raise ValueError(f"MoE-layer indices must be >= 0, got {ids}")
    return ids


def check_tokens(tokens: int) -> int:
    """``tokens`` as an int >= 0 (ValueError otherwise)."""
    if isinstance(tokens, bool) or not isinstance(tokens, int | np.integer) or tokens < 0:
        raise ValueError(f"tokens must be an integer >= 0, got {tokens!r}")
    return int(tokens)
