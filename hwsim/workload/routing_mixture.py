"""Mixtures of traffic domains: ``model: mixture``.

::

    routing:
      model: mixture
      components:
        - {weight: 0.7, model: zipf, skew: 1.2}
        - {weight: 0.3, model: uniform}

Each token belongs to one component (domain), drawn with probability proportional to its
``weight``; its experts follow that component's law. Real serving traffic mixes domains, and
expert popularity differs by domain (the OLMoE paper, Muennighoff et al. 2024, "OLMoE: Open
Mixture-of-Experts Language Models", section on domain specialisation: arXiv and GitHub text
route to different experts than C4), so the load seen by the experts is the weighted mix and
its effective skew moves with the mix: ``docs/routing.md`` shows it on the OLMoE counts.

Exact: a token's inclusion probabilities are the weighted mix of the components'
(:meth:`MixtureRouting.inclusion`); ``expert_counts`` splits the tokens over the components
with a multinomial and draws each part exactly. In a :class:`~hwsim.workload.routing_stream.
RoutingStream` all tokens of one sequence share one domain (drawn when the sequence starts),
so the per-token marginal is still the mix. Components are popularity models (``uniform``,
``zipf``, ``trace`` in histogram mode) with their own parameters (node limits included);
``locality`` and ``coactivation`` go on the mixture itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hwsim.errors import SpecError, join_path
from hwsim.spec.moe import MoESpec
from hwsim.workload.routing_base import (
    ROUTING_MODELS,
    RoutingBase,
    SequenceState,
    check_tokens,
    layer_ids,
    number_param,
)
from hwsim.workload.routing_popularity import PopularityRouting

__all__ = ["MixtureRouting", "WRAPPER_KEYS"]

#: Parameters that apply to a whole routing model, never to one mixture component.
WRAPPER_KEYS = ("locality", "coactivation")


@ROUTING_MODELS.register("mixture")
class MixtureRouting(RoutingBase):
    """Tokens drawn from one of several popularity models by weight (see the module doc)."""

    name = "mixture"
    PARAMS = ("components",)

    def __init__(self, moe: MoESpec, *, components: Sequence[tuple[float, PopularityRouting]]) -> None:
        if not components:
            raise ValueError("a mixture needs at least one component")
        weights = np.array([w for w, _ in components], dtype=float)
        if not np.all(np.isfinite(weights)) or np.any(weights <= 0):
            raise ValueError("component weights must be finite numbers > 0")
        self.moe = moe
        self.num_experts = moe.num_experts
        self.top_k = moe.top_k
        self.weights = weights / weights.sum()
        self.components: tuple[PopularityRouting, ...] = tuple(m for _, m in components)
        self._inclusion: dict[int, np.ndarray] = {}

    @classmethod
    def _parse(cls, params: Mapping[str, Any], moe: MoESpec, path: str) -> dict[str, Any]:
        where = join_path(path, "components")
        items = params.get("components")
        if not isinstance(items, list) or not items:
            raise SpecError("a mixture needs a list of components", path=where,
                            expected="a list like [{weight: 0.7, model: zipf, skew: 1.2}, {weight: 0.3, "
                            "model: uniform}]", found=items)
        out = []
        for i, item in enumerate(items):
            here = f"{where}[{i}]"
            if not isinstance(item, Mapping):
                raise SpecError("a component is a mapping with weight and model", path=here,
                                expected="{weight: 0.5, model: zipf, skew: 1.1}", found=item)
            for key in WRAPPER_KEYS:
                if key in item:
                    raise SpecError(f"{key} applies to the whole mixture, not to one component",
                                    path=join_path(here, key), expected=f"{key} next to components")
            weight = number_param(item, "weight", here, default=None, low=0.0, low_open=True, example="0.5")
            if "model" not in item:
                raise SpecError("a component needs a model", path=join_path(here, "model"),
                                expected="uniform, zipf or trace")
            model = ROUTING_MODELS.get(str(item["model"]), path=join_path(here, "model"))
            if issubclass(model, MixtureRouting):
                raise SpecError("a component must be a popularity model, not a mixture (list all the "
                                "components in one mixture)", path=join_path(here, "model"),
                                expected="uniform, zipf or trace (mode: histogram)", found=item["model"])
            rest = {k: v for k, v in item.items() if k not in ("weight", "model")}
            built = model.from_params(rest, moe, path=here)
            if not isinstance(built, PopularityRouting):
                raise SpecError(f"a component must be a popularity model, not '{item['model']}'"
                                + (" in mode ids" if item["model"] == "trace" else ""),
                                path=join_path(here, "model"),
                                expected="uniform, zipf or trace (mode: histogram)", found=item["model"])
            out.append((weight, built))
        return {"components": out}

    # ------------------------------------------------------------------ laws

    def inclusion(self, layer: int = 0) -> np.ndarray:
        """(E,) the weighted mix of the components' inclusion probabilities."""
        index = layer_ids([layer])[0]
        if index not in self._inclusion:
            mix = sum(w * np.asarray(c.inclusion(index)) for w, c in zip(self.weights, self.components, strict=True))
            out = np.asarray(mix, dtype=float)
            out.setflags(write=False)
            self._inclusion[index] = out
        return self._inclusion[index]

    def popularity(self, layer: int = 0) -> np.ndarray:
        """(E,) the weighted mix of the components' popularities (sums to 1)."""
        return np.asarray(sum(w * c.popularity(layer) for w, c in zip(self.weights, self.components, strict=True)))

    # ------------------------------------------------------------------ sampling

    def _split(self, rng: np.random.Generator, tokens: int) -> np.ndarray:
        return rng.multinomial(tokens, self.weights)

    def expert_counts(self, rng: np.random.Generator, tokens: int,
                      layers: int | Sequence[int] = 1) -> np.ndarray:
        """``(len(layers), E)``: tokens split over the domains (multinomial), each part exact."""
        ids = layer_ids(layers)
        out = np.zeros((len(ids), self.num_experts), dtype=np.int64)
        for n, comp in zip(self._split(rng, check_tokens(tokens)), self.components, strict=True):
            if n:
                out += comp.expert_counts(rng, int(n), ids)
        return out

    def layer_ids(self, rng: np.random.Generator, tokens: int, layers: int | Sequence[int],
                  *, zero_ids: bool = False) -> np.ndarray:
        """``(tokens, len(layers), top_k)``: each token's domain drawn by weight, its experts
        from that domain in every layer."""
        ids = layer_ids(layers)
        n = check_tokens(tokens)
        domain = rng.choice(len(self.components), size=n, p=self.weights)
        out = np.empty((n, len(ids), self.top_k), dtype=np.int64)
        for c, comp in enumerate(self.components):
            rows = np.flatnonzero(domain == c)
            if len(rows):
                out[rows] = comp.layer_ids(rng, len(rows), ids, zero_ids=zero_ids)
        return out

    def expert_ids(self, rng: np.random.Generator, tokens: int, layer: int = 0) -> np.ndarray:
        """``(tokens, top_k)`` experts of independent tokens, each from its own domain."""
        return self.layer_ids(rng, tokens, [layer])[:, 0, :]

    def sequences(self, layers: int) -> MixtureSource:
        """Sequences with one domain each, tokens independent within it."""
        return MixtureSource(self, layers)


class MixtureSource:
    """A sequence draws its domain when it starts; its tokens follow that domain."""

    def __init__(self, model: MixtureRouting, layers: int) -> None:
        self.model = model
        self.layers = int(layers)
        self._ids = list(range(self.layers))

    def start(self, rng: np.random.Generator) -> SequenceState:
        return SequenceState(component=int(rng.choice(len(self.model.components), p=self.model.weights)))

    def next(self, rng: np.random.Generator, state: SequenceState, tokens: int) -> np.ndarray:
        return self.model.components[state.component].layer_ids(rng, tokens, self._ids)

    def next_many(self, rng: np.random.Generator, states: Sequence[SequenceState], tokens: int) -> np.ndarray:
        """``(len(states), tokens, L, k)``: the sequences of each domain drawn together."""
        out = np.empty((len(states), tokens, self.layers, self.model.top_k), dtype=np.int64)
        domain = np.array([st.component for st in states], dtype=np.int64)
        for c in np.unique(domain):
            rows = np.flatnonzero(domain == c)
            ids = self.model.components[int(c)].layer_ids(rng, len(rows) * tokens, self._ids)
            out[rows] = ids.reshape(len(rows), tokens, self.layers, -1)
        return out
