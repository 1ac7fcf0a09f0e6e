"""Stage 2 builders for device and node files: parse units, build specs, check sources."""

from __future__ import annotations

from typing import Any

from hwsim.errors import SpecError
from hwsim.io.fields import Fields, build, sources_of
from hwsim.io.load import Context, builder
from hwsim.io.source import Document
from hwsim.spec.hardware import Device, EfficiencyFactor, MemoryTier, PowerSpec, PriceSpec, Source
from hwsim.spec.topology import HostCpu, Link, Nics, Node, ScaleUp, Storage
from hwsim.units import Dim


def _cited(f: Fields, sources: dict[str, Source], section: str, path: str) -> Source:
    """The section's own ``source:`` or the file's ``sources.<section>``; one is required."""
    own = f.source()
    if own is not None:
        return own
    if section in sources:
        return sources[section]
    raise SpecError(f"every figure needs a source: add 'source:' here or 'sources.{section}'",
                    path=path, expected="a citation")


def compute_peaks(f: Fields) -> dict[str, float]:
    return {dtype: f.quantity(dtype, Dim.FLOP_RATE, positive=True) for dtype in f.data}


def memory_tier(f: Fields, sources: dict[str, Source], default_name: str) -> MemoryTier:
    return build(f.path, MemoryTier,
                 name=f.get("name", default_name), kind=f.get("kind", "dram"),
                 capacity_bytes=f.quantity("capacity", Dim.BYTES, positive=True),
                 bandwidth_bytes_per_s=f.quantity("bandwidth", Dim.BANDWIDTH, positive=True),
                 latency_s=f.quantity("latency", Dim.TIME, 0.0),
                 source=_cited(f, sources, "memory", f.path))


def link(f: Fields, sources: dict[str, Source], section: str) -> Link:
    return build(f.path, Link, kind=f.require("kind"),
                 bandwidth_bytes_per_s=f.quantity("bandwidth", Dim.BANDWIDTH, positive=True),
                 latency_s=f.quantity("latency", Dim.TIME, 0.0),
                 source=_cited(f, sources, section, f.path))


def price(f: Fields, sources: dict[str, Source]) -> PriceSpec | None:
    if not f.data:
        return None
    return build(f.path, PriceSpec,
                 usd_per_s=f.quantity("rental", Dim.MONEY_RATE, None),
                 capex_usd=f.quantity("capex", Dim.MONEY, None),
                 lifetime_s=f.quantity("lifetime", Dim.TIME, None),
                 source=_cited(f, sources, "price", f.path))


def _efficiency(f: Fields) -> tuple[EfficiencyFactor, ...]:
    out = []
    for name in f.data:
        e = f.sub(name)
        if not e.get("calibrated_on"):
            raise SpecError("an efficiency factor must say what it was calibrated on",
                            path=e.at("calibrated_on"), expected="a non-empty list of case ids")
        by = e.sub("by_dtype")
        by_dtype = {k: by.fraction(k) for k in by.data}
        out.append(build(e.path, EfficiencyFactor, name=name, value=e.fraction("value"), by_dtype=by_dtype,
                         calibrated_on=tuple(e.get("calibrated_on")), note=e.get("note", "")))
    return tuple(out)


def _power(f: Fields, sources: dict[str, Source]) -> PowerSpec | None:
    if not f.data:
        return None
    return build(f.path, PowerSpec,
                 idle_w=f.quantity("idle", Dim.POWER, None), tdp_w=f.quantity("tdp", Dim.POWER, positive=True),
                 compute_dynamic_w=f.quantity("compute_dynamic", Dim.POWER, None),
                 memory_dynamic_w=f.quantity("memory_dynamic", Dim.POWER, None),
                 cap_min_w=f.quantity("cap_min", Dim.POWER, None), cap_max_w=f.quantity("cap_max", Dim.POWER, None),
                 source=_cited(f, sources, "power", f.path))


@builder("device")
def build_device(f: Fields, ctx: Context, doc: Document) -> Device:
    sources = sources_of(f)
    if "compute" not in sources:
        raise SpecError("the compute peaks need a source", path=f.at("sources.compute"), expected="a citation")
    tiers = tuple(memory_tier(Fields(t, p), sources, f"mem{i}") for i, t, p in f.items("memory"))
    freq = f.quantity("frequency", Dim.FREQUENCY, None)
    launch = f.sub("launch_overhead")
    if launch.data:
        _cited(launch, sources, "launch_overhead", launch.path)
    return build(f.path, Device,
                 name=f.require("name"), kind=f.require("category"), vendor=f.get("vendor", ""),
                 compute_flop_per_s=compute_peaks(f.sub("compute")), memory=tiers,
                 efficiency=_efficiency(f.sub("efficiency")), power=_power(f.sub("power"), sources),
                 price=price(f.sub("price"), sources), sm_count=f.get("sm_count"), frequency_hz=freq,
                 launch_eager_s=launch.quantity("eager", Dim.TIME, None),
                 launch_graph_s=launch.quantity("graph", Dim.TIME, None),
                 sources=sources, notes=f.get("notes", ""))


def _cpu(f: Fields, sources: dict[str, Source]) -> HostCpu | None:
    if not f.data:
        return None
    src = _cited(f, sources, "cpu", f.path)
    mem = None
    if f.has("memory"):
        m = f.sub("memory")
        mem_sources = {"memory": src, **sources}
        kind = m.get("kind", "dram")
        mem = memory_tier(Fields({"name": kind, "kind": kind, **m.data}, m.path), mem_sources, kind)
    return build(f.path, HostCpu, name=f.require("name"), sockets=f.require("sockets"),
                 cores_per_socket=f.require("cores_per_socket"), compute_flop_per_s=compute_peaks(f.sub("compute")),
                 memory=mem, source=src)


def _storage(f: Fields, sources: dict[str, Source]) -> Storage:
    table = []
    for _, row, path in f.items("read_by_block"):
        r = Fields(row, path)
        table.append((r.quantity("block", Dim.BYTES), r.quantity("bandwidth", Dim.BANDWIDTH)))
    return build(f.path, Storage, name=f.require("name"), count=f.require("count"),
                 capacity_bytes=f.quantity("capacity", Dim.BYTES, positive=True),
                 seq_read_bytes_per_s=f.quantity("seq_read", Dim.BANDWIDTH, positive=True),
                 read_bandwidth_by_block=tuple(table), read_iops=f.quantity("read_iops", Dim.IO_RATE, None),
                 write_bytes_per_s=f.quantity("write", Dim.BANDWIDTH, None),
                 latency_s=f.quantity("latency", Dim.TIME, 0.0), source=_cited(f, sources, "storage", f.path))


def _scale_up(f: Fields, sources: dict[str, Source]) -> ScaleUp:
    lk = None
    if f.has("link"):
        inherited = dict(sources)
        own = f.source()
        if own is not None:
            inherited["scale_up"] = own
        lk = link(f.sub("link"), inherited, "scale_up")
    return build(f.path, ScaleUp, topology=f.require("topology"), link=lk,
                 in_network_reduction=bool(f.get("in_network_reduction", False)))


def _nics(f: Fields, sources: dict[str, Source]) -> Nics | None:
    if not f.data:
        return None
    inherited = dict(sources)
    own = f.source()
    if own is not None:
        inherited["nics"] = own
    return build(f.path, Nics, name=f.require("name"), count=f.require("count"),
                 link=link(f.sub("link"), inherited, "nics"))


def _overhead(f: Fields, sources: dict[str, Source]) -> tuple[float, float]:
    if not f.data:
        return 0.0, 0.0
    _cited(f, sources, "power_overhead", f.path)
    return f.quantity("fixed", Dim.POWER, 0.0), f.fraction("fraction", 0.0)


@builder("node")
def build_node(f: Fields, ctx: Context, doc: Document) -> Node:
    sources = sources_of(f)
    device = ctx.reference("device", f.require("device"), doc=doc, path=f.at("device"))
    fixed, fraction = _overhead(f.sub("power_overhead"), sources)
    host = link(f.sub("host_link"), sources, "host_link") if f.has("host_link") else None
    storage = tuple(_storage(Fields(s, p), sources) for _, s, p in f.items("storage"))
    kwargs: dict[str, Any] = dict(
        name=f.require("name"), device=device, device_count=f.require("devices"),
        scale_up=_scale_up(f.sub("scale_up"), sources), host_link=host,
        devices_per_host_link=f.get("devices_per_host_link", 1), cpu=_cpu(f.sub("cpu"), sources),
        storage=storage, nics=_nics(f.sub("nics"), sources), power_overhead_w=fixed,
        power_overhead_fraction=fraction, price=price(f.sub("price"), sources), sources=sources,
        notes=f.get("notes", ""))
    return build(f.path, Node, **kwargs)
