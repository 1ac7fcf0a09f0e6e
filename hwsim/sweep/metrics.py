"""The metric columns a sweep keeps, in estimate and simulate mode.

The standard names mean the same in both modes, so that one report reads either:

=================================  ==========================================  =====================================
name                               estimate mode (:mod:`hwsim.perf.estimate`)  simulate mode (``summary.json`` field)
=================================  ==========================================  =====================================
``requests_per_s``                 steady-state requests/s                     ``throughput.requests_per_s``
``output_tokens_per_s``            output tokens/s of the deployment           ``throughput.output_tokens_per_s``
``input_tokens_per_s``             prompt tokens/s                             ``throughput.input_tokens_per_s``
``output_tokens_per_s_per_device`` the above / devices                         ``throughput.output_tokens_per_s_per_device``
``tokens_per_s_per_user``          1 / TPOT                                    1 / ``latency.tpot_s.p50``
``ttft_s``                         unloaded TTFT at the steady batch           ``latency.ttft_s.p90``
``tpot_s``                         TPOT of the steady step                     ``latency.tpot_s.p90``
``power_w``                        device power of all pools                   ``power.mean_power_w``
``joules_per_output_token``        power / output tokens/s                     ``power.joules_per_output_token``
``usd_per_million_output_tokens``  price / output tokens/s x 10^6              ``cost.usd_per_million_output_tokens``
``devices``                        devices of the deployment                   ``throughput.devices``
=================================  ==========================================  =====================================

Estimate mode also has ``batch_per_replica`` and ``kv_limited_batch`` (sequences per replica of
the first pool that decodes) and ``weights_bytes_per_device`` (the busiest pool's). Simulate mode
also has ``goodput_requests_per_s`` and ``slo_attainment`` (with the sweep's ``slo``) and any
numeric field of ``summary.json`` by its dotted path (``latency.ttft_s.p99``,
``memory.kv_use_peak``, ...). A metric that does not exist for a configuration (an unpriced
device's cost, a latency with no finished request) is empty.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from hwsim.errors import SpecError
from hwsim.perf.estimate import Estimate, PoolEstimate
from hwsim.registry import suggest

__all__ = ["STANDARD", "ESTIMATE_METRICS", "SIMULATE_ALIASES", "default_metrics", "check_metrics",
           "estimate_metrics", "simulate_metrics", "flatten"]

STANDARD = ("output_tokens_per_s_per_device", "tokens_per_s_per_user", "ttft_s", "tpot_s",
            "usd_per_million_output_tokens", "output_tokens_per_s", "requests_per_s", "power_w",
            "joules_per_output_token", "devices")


def _decoding(e: Estimate) -> PoolEstimate:
    return next((p for p in e.pools if p.role != "prefill"), e.pools[0])


ESTIMATE_METRICS: dict[str, Callable[[Estimate], float | None]] = {
    "requests_per_s": lambda e: e.requests_per_s,
    "output_tokens_per_s": lambda e: e.output_tokens_per_s,
    "input_tokens_per_s": lambda e: e.input_tokens_per_s,
    "output_tokens_per_s_per_device": lambda e: e.output_tokens_per_s_per_device,
    "tokens_per_s_per_user": lambda e: e.tokens_per_s_per_user,
    "ttft_s": lambda e: e.ttft_s,
    "tpot_s": lambda e: e.tpot_s,
    "power_w": lambda e: e.power_w,
    "joules_per_output_token": lambda e: e.joules_per_output_token,
    "usd_per_million_output_tokens": lambda e: e.usd_per_million_output_tokens,
    "devices": lambda e: float(e.devices),
    "batch_per_replica": lambda e: float(_decoding(e).batch),
    "kv_limited_batch": lambda e: float(_decoding(e).kv_limited_batch),
    "weights_bytes_per_device": lambda e: max(p.footprint.weights_bytes for p in e.pools),
}

SIMULATE_ALIASES: dict[str, str] = {
    "requests_per_s": "throughput.requests_per_s",
    "output_tokens_per_s": "throughput.output_tokens_per_s",
    "input_tokens_per_s": "throughput.input_tokens_per_s",
    "output_tokens_per_s_per_device": "throughput.output_tokens_per_s_per_device",
    "ttft_s": "latency.ttft_s.p90",
    "tpot_s": "latency.tpot_s.p90",
    "power_w": "power.mean_power_w",
    "joules_per_output_token": "power.joules_per_output_token",
    "usd_per_million_output_tokens": "cost.usd_per_million_output_tokens",
    "devices": "throughput.devices",
    "goodput_requests_per_s": "goodput.requests_per_s",
    "slo_attainment": "goodput.attainment",
}
_SPEED = "tokens_per_s_per_user"
_MEDIAN_TPOT = "latency.tpot_s.p50"


def default_metrics(mode: str, slo: bool) -> tuple[str, ...]:
    """The standard set, plus goodput and SLO attainment in simulate mode with an SLO."""
    extra = ("goodput_requests_per_s", "slo_attainment") if mode == "simulate" and slo else ()
    return (*STANDARD, *extra)


def check_metrics(names: tuple[str, ...], mode: str, summary_fields: tuple[str, ...] = (),
                  *, file: str | None = None) -> None:
    """Raise a SpecError (at ``metrics[i]``) for a name that ``mode`` does not produce.

    ``summary_fields`` are the numeric dotted paths of ``summary.json`` (simulate mode).
    """
    known = set(ESTIMATE_METRICS) if mode == "estimate" else {*SIMULATE_ALIASES, _SPEED, *summary_fields}
    for i, name in enumerate(names):
        if name not in known:
            listed = ", ".join(sorted(ESTIMATE_METRICS) if mode == "estimate" else sorted({*SIMULATE_ALIASES, _SPEED}))
            more = "" if mode == "estimate" else " or a numeric summary.json field such as latency.ttft_s.p99"
            raise SpecError(f"unknown {mode} metric '{name}'{suggest(name, sorted(known))}", file=file,
                            path=f"metrics[{i}]", expected=f"one of {listed}{more}", found=name)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def estimate_metrics(est: Estimate, names: tuple[str, ...]) -> dict[str, float | None]:
    """The named metrics of an estimate (non-finite values become ``None``)."""
    return {n: _number(ESTIMATE_METRICS[n](est)) for n in names}


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted paths to the leaves of nested mappings (lists are left out).

    >>> flatten({"latency": {"ttft_s": {"p50": 1.0}}, "pools": [1]})
    {'latency.ttft_s.p50': 1.0}
    """
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, path))
        elif not isinstance(value, list | tuple):
            out[path] = value
    return out


def simulate_metrics(summary: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, float | None]:
    """The named metrics of a simulation summary (``summary.json``'s dict)."""
    flat = flatten(summary)
    out: dict[str, float | None] = {}
    for n in names:
        if n == _SPEED:
            tpot = _number(flat.get(_MEDIAN_TPOT))
            out[n] = 1.0 / tpot if tpot else None
        else:
            out[n] = _number(flat.get(SIMULATE_ALIASES.get(n, n)))
    return out
