"""Device and server power driven by a step's measured activity, and what a power cap costs.

Device power (``validation/fit_power.py`` fits the coefficients; ``docs/calibration-power.md``
shows the fit)::

    P = idle + context + compute_dynamic x u_c + memory_dynamic x u_m,   clipped at min(TDP, cap)

``u_c`` is achieved FLOP/s over the dense peak of the step's dtype and ``u_m`` achieved
main-memory bytes/s over the peak bandwidth, both averaged over the whole step *including
idle gaps* (launch overhead, host stalls, waiting on communication): a decode step that
streams weights at 70% of peak bandwidth has ``u_m = 0.7`` whatever its phase label.
``context`` is the extra draw of a resident CUDA context (the SM clock jumps to max boost at
0% utilisation): :data:`CONTEXT_FRACTION_OF_TDP` of TDP, added whenever an engine runs.

A cap (or TDP) below the natural demand lowers the SM clock. Dynamic power goes as
``f x V^2`` and V rises with f near the top of the DVFS curve, so with ``s = f / f_max``::

    P(s) = P_static + (P_demand - P_static) x s^alpha,   P_static = idle + context

and the clock that meets a limit ``L`` is ``s(L) = ((L - P_static) / (P_demand - P_static))^(1/alpha)``.
Compute-bound time stretches by ``1 / s``; memory-bound time barely changes (the memory clock
is not capped). Catalog efficiencies were measured at the TDP-limited clock, so
:func:`cap_slowdown` is relative to running at TDP: ``s(TDP) / s(cap)``. ``alpha``
(:data:`CAP_EXPONENT`) is fitted on MLPerf v4.1 H200 MaxQ/MaxP throughput ratios.

Devices whose YAML gives no fitted coefficients fall back to :data:`IDLE_FRACTION_OF_TDP`,
:data:`MEMORY_DYNAMIC_FRACTION_OF_TDP` and the compute anchor
(:func:`anchored_compute_dynamic_w`); :func:`power_coefficients` says whether they did.

>>> from hwsim.spec.hardware import Device, MemoryTier, PowerSpec
>>> gpu = Device(name="toy", kind="gpu", compute_flop_per_s={"bf16": 1e15},
...              memory=(MemoryTier(name="hbm", kind="hbm", capacity_bytes=8e10,
...                                 bandwidth_bytes_per_s=3e12),),
...              power=PowerSpec(idle_w=70.0, tdp_w=700.0, compute_dynamic_w=600.0,
...                              memory_dynamic_w=300.0))
>>> device_power_w(gpu, compute_util=0.1, memory_util=0.5)   # 70 + 49 + 60 + 150
329.0
>>> device_power_w(gpu, compute_util=0.9, memory_util=0.3, cap_w=500.0)
500.0
>>> round(cap_slowdown(gpu, 500.0, compute_util=0.9, memory_util=0.3), 3)
1.236
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hwsim.errors import SpecError
from hwsim.spec.hardware import Device
from hwsim.spec.topology import Node

CONTEXT_FRACTION_OF_TDP = 0.07
"""Extra draw of an idle GPU holding a CUDA context, as a fraction of TDP: H100 +49.9 W (7.1%
of 700 W), A100 +26.3 W (6.6% of 400 W) (validation case gpu-idle-power-measured)."""

CAP_EXPONENT = 1.99
"""DVFS exponent ``alpha`` of dynamic power vs SM clock (P_dyn ~ f^alpha), least-squares fit
of the six MLPerf v4.1 H200 MaxQ/MaxP throughput ratios (cases mlperf41-h200-maxq-llama2-70b,
-mixtral-8x7b, -gptj) with ``P_static`` = idle + context = 121.5 W; see docs/calibration-power.md.
power-notes.md section 3 gives 1.6-2.1 (median 1.75 with P_static = 75 W, 1.9 with 120 W)."""

MIN_CLOCK_FRACTION = 0.17
"""Lowest SM clock as a fraction of max boost (H100: 345 MHz idle / 1980 MHz, case
gpu-idle-power-measured); bounds the slowdown of a cap at or below the static power."""

IDLE_FRACTION_OF_TDP = 0.10
"""Fallback deep-idle power for devices without a measured one: H100 SXM 72.5 W of 700 W,
L40S 35.6 W of 350 W (case gpu-idle-power-measured)."""

MEMORY_DYNAMIC_FRACTION_OF_TDP = 0.807
"""Fallback ``memory_dynamic`` as a fraction of TDP: the H100 fit (561 W of 700 W)."""

GEMM_MEMORY_UTIL = 0.10
"""Memory-bandwidth utilisation of a large dense GEMM, used by the compute anchor below."""


def anchored_compute_dynamic_w(device: Device, *, static_w: float, memory_dynamic_w: float) -> float:
    """``compute_dynamic`` such that a dense BF16 GEMM at the device's catalog ``gemm``
    efficiency (``u_c = eff``, ``u_m`` = :data:`GEMM_MEMORY_UTIL`) draws exactly TDP.

    Compute-bound work reaches TDP on every GPU measured (H100 HPL 696 W, SplitwiseSim prompt
    power = TDP, Splitwise A100 prefill peaks 1.0 TDP from ~2k batched tokens): this is the
    smallest coefficient consistent with that. Decode data alone cannot separate it from the
    unknown prompt share of a run (see docs/calibration-power.md).
    """
    if device.power is None:
        raise SpecError(f"device {device.name} has no power section (at least a TDP is needed)",
                        path="power", expected="power: {tdp: ...}")
    eff = device.efficiency_of("gemm", default=0.75, dtype="bf16")   # 0.75: no MAMF figure
    return max(0.0, (device.power.tdp_w - static_w - GEMM_MEMORY_UTIL * memory_dynamic_w) / eff)


@dataclass(frozen=True, slots=True, kw_only=True)
class PowerCoefficients:
    """The coefficients the power model uses for one device (W), and whether they were fitted."""

    idle_w: float
    context_w: float
    compute_dynamic_w: float
    memory_dynamic_w: float
    tdp_w: float
    cap_min_w: float | None
    cap_max_w: float | None
    fitted: bool

    @property
    def static_w(self) -> float:
        """Draw of a running engine with nothing to do: idle + context."""
        return self.idle_w + self.context_w


def power_coefficients(device: Device) -> PowerCoefficients:
    """The device's power coefficients, with the documented fallbacks for missing ones."""
    spec = device.power
    if spec is None:
        raise SpecError(f"device {device.name} has no power section (at least a TDP is needed)",
                        path="power", expected="power: {tdp: ...}")
    tdp = spec.tdp_w
    idle = spec.idle_w if spec.idle_w is not None else IDLE_FRACTION_OF_TDP * tdp
    context = CONTEXT_FRACTION_OF_TDP * tdp
    memory = spec.memory_dynamic_w if spec.memory_dynamic_w is not None else MEMORY_DYNAMIC_FRACTION_OF_TDP * tdp
    compute = spec.compute_dynamic_w
    if compute is None:
        compute = anchored_compute_dynamic_w(device, static_w=idle + context, memory_dynamic_w=memory)
    return PowerCoefficients(
        idle_w=idle, context_w=context, compute_dynamic_w=compute, memory_dynamic_w=memory, tdp_w=tdp,
        cap_min_w=spec.cap_min_w, cap_max_w=spec.cap_max_w,
        fitted=spec.compute_dynamic_w is not None and spec.memory_dynamic_w is not None)


def _check_util(compute_util: float, memory_util: float) -> None:
    for name, u in (("compute_util", compute_util), ("memory_util", memory_util)):
        if not 0.0 <= u <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {u:g}")


def power_limit_w(device: Device, cap_w: float | None = None) -> float:
    """The binding power limit: TDP, or a cap within the device's settable range."""
    c = power_coefficients(device)
    if cap_w is None:
        return c.tdp_w
    lo = c.cap_min_w if c.cap_min_w is not None else 0.0
    hi = c.cap_max_w if c.cap_max_w is not None else c.tdp_w
    if cap_w <= 0 or not lo <= cap_w <= hi:
        raise SpecError(f"power cap {cap_w:g} W is outside the settable range of {device.name} "
                        f"({lo:g} W .. {hi:g} W)", path="power_cap",
                        expected=f"a cap in {lo:g}..{hi:g} W", found=cap_w)
    return min(cap_w, c.tdp_w)


def natural_power_w(device: Device, *, compute_util: float, memory_util: float) -> float:
    """Unclipped demand of a running engine: idle + context + dynamic terms."""
    _check_util(compute_util, memory_util)
    c = power_coefficients(device)
    return c.static_w + c.compute_dynamic_w * compute_util + c.memory_dynamic_w * memory_util


def device_power_w(device: Device, *, compute_util: float, memory_util: float, cap_w: float | None = None) -> float:
    """Average power of a device over a step with the given utilisations, clipped at TDP or a cap."""
    return min(power_limit_w(device, cap_w), natural_power_w(device, compute_util=compute_util,
                                                              memory_util=memory_util))


def idle_power_w(device: Device, *, context_resident: bool = False) -> float:
    """Idle draw: deep idle (no process), or with a resident CUDA context (an engine waiting)."""
    c = power_coefficients(device)
    return c.static_w if context_resident else c.idle_w


def _clock_fraction(limit_w: float, demand_w: float, static_w: float, alpha: float) -> float:
    if demand_w <= limit_w:
        return 1.0
    if limit_w <= static_w:
        return MIN_CLOCK_FRACTION
    fraction: float = ((limit_w - static_w) / (demand_w - static_w)) ** (1.0 / alpha)
    return max(MIN_CLOCK_FRACTION, fraction)


def cap_slowdown(device: Device, cap_w: float | None, *, compute_util: float, memory_util: float,
                 alpha: float = CAP_EXPONENT) -> float:
    """Factor (>= 1) by which a cap stretches the *compute-bound* time of a step.

    1 when the cap is at or above the natural demand. Relative to running at TDP, since
    catalog efficiencies were measured there. Memory-bound time is not stretched.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha:g}")
    c = power_coefficients(device)
    demand = natural_power_w(device, compute_util=compute_util, memory_util=memory_util)
    at_tdp = _clock_fraction(c.tdp_w, demand, c.static_w, alpha)
    capped = _clock_fraction(power_limit_w(device, cap_w), demand, c.static_w, alpha)
    return at_tdp / capped


def utilisation(device: Device, *, time_s: float, flop: float, bytes_moved: float, dtype: str) -> tuple[float, float]:
    """``(u_c, u_m)`` of a step: achieved over peak FLOP/s (of ``dtype``) and bytes/s, over ``time_s``.

    Values above 1 (a step timed faster than the roofline) are clipped to 1.
    """
    if time_s <= 0:
        raise ValueError(f"time_s must be > 0, got {time_s:g}")
    if flop < 0 or bytes_moved < 0:
        raise ValueError("flop and bytes_moved must be >= 0")
    u_c = flop / (time_s * device.peak_flop_per_s(dtype))
    u_m = bytes_moved / (time_s * device.hbm_bytes_per_s)
    return min(1.0, u_c), min(1.0, u_m)


def step_energy_j(device: Device, *, time_s: float, flop: float, bytes_moved: float, dtype: str,
                  cap_w: float | None = None) -> float:
    """Energy of one device over one step: power at the step's utilisation x ``time_s``.

    ``time_s`` is the step's wall time including idle gaps (and any cap slowdown).
    """
    u_c, u_m = utilisation(device, time_s=time_s, flop=flop, bytes_moved=bytes_moved, dtype=dtype)
    return device_power_w(device, compute_util=u_c, memory_util=u_m, cap_w=cap_w) * time_s


def wall_power_w(node: Node, device_powers_w: float | Sequence[float]) -> float:
    """Server wall power: ``fixed + (1 + fraction) x sum(device power)`` (see :class:`Node`).

    A single float means every device of the node draws that much.
    """
    if isinstance(device_powers_w, int | float):
        total = float(device_powers_w) * node.device_count
    else:
        if len(device_powers_w) != node.device_count:
            raise ValueError(f"{node.name} has {node.device_count} devices; got {len(device_powers_w)} powers")
        total = float(sum(device_powers_w))
    if total < 0:
        raise ValueError("device power must be >= 0")
    return node.power_overhead_w + (1.0 + node.power_overhead_fraction) * total


def node_idle_power_w(node: Node, *, context_resident: bool = False) -> float:
    """Wall power of a node whose devices all idle (with or without resident contexts)."""
    return wall_power_w(node, idle_power_w(node.device, context_resident=context_resident))
