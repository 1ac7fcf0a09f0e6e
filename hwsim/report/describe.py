"""Human-readable descriptions of hardware specs (``hwsim hardware show``)."""

from __future__ import annotations

from hwsim.spec.cluster import Cluster
from hwsim.spec.deployment import Deployment
from hwsim.spec.hardware import Device, MemoryTier
from hwsim.spec.sharding import WeightShare
from hwsim.spec.topology import Link, Node
from hwsim.units import Dim, format_quantity
from hwsim.units import format_quantity as fq


def _tier(t: MemoryTier) -> str:
    lat = f", latency {fq(t.latency_s, Dim.TIME)}" if t.latency_s else ""
    return f"{t.name} ({t.kind}): {fq(t.capacity_bytes, Dim.BYTES)} at {fq(t.bandwidth_bytes_per_s, Dim.BANDWIDTH)}{lat}"


def _link(link: Link) -> str:
    lat = f", {fq(link.latency_s, Dim.TIME)}" if link.latency_s else ""
    return f"{link.kind} {fq(link.bandwidth_bytes_per_s, Dim.BANDWIDTH)} per direction{lat}"


def describe_device(d: Device) -> list[str]:
    lines = [f"device {d.name}" + (f" ({d.vendor}, {d.kind})" if d.vendor else f" ({d.kind})")]
    lines.append("  compute (dense): " + ", ".join(
        f"{k} {fq(v, Dim.FLOP_RATE)}" for k, v in d.compute_flop_per_s.items()))
    lines += ["  memory: " + _tier(t) for t in d.memory]
    for e in d.efficiency:
        lines.append(f"  efficiency {e.name}: {e.value:.3g} (calibrated on {', '.join(e.calibrated_on)})")
    if d.power is not None:
        p = d.power
        parts = [f"TDP {fq(p.tdp_w, Dim.POWER)}"]
        if p.idle_w is not None:
            parts.append(f"idle {fq(p.idle_w, Dim.POWER)}")
        if p.cap_min_w is not None:
            parts.append(f"cap {fq(p.cap_min_w, Dim.POWER)}..{fq(p.cap_max_w or p.tdp_w, Dim.POWER)}")
        lines.append("  power: " + ", ".join(parts))
    if d.price is not None:
        lines.append(f"  price: {d.price.usd_per_hour:.3g} USD/h")
    lines += [f"  source [{k}]: {s}" for k, s in d.sources.items()]
    return lines


def describe_node(n: Node) -> list[str]:
    lines = [f"node {n.name}: {n.device_count}x {n.device.name}"]
    if n.scale_up.link is not None:
        nvls = " with in-network reduction" if n.scale_up.in_network_reduction else ""
        lines.append(f"  scale-up: {n.scale_up.topology}, {_link(n.scale_up.link)}{nvls}")
    else:
        lines.append("  scale-up: none (peers talk through the host)")
    if n.host_link is not None:
        lines.append(f"  host link: {_link(n.host_link)} per {n.devices_per_host_link} device(s)")
    if n.cpu is not None:
        lines.append(f"  cpu: {n.cpu.sockets}x {n.cpu.name} ({n.cpu.cores} cores)")
        if n.cpu.memory is not None:
            lines.append(f"  host memory: {_tier(n.cpu.memory)}")
    for s in n.storage:
        lines.append(f"  storage: {s.count}x {s.name}, {fq(s.capacity_bytes, Dim.BYTES)}, "
                     f"seq read {fq(s.seq_read_bytes_per_s, Dim.BANDWIDTH)}")
    if n.nics is not None:
        lines.append(f"  nics: {n.nics.count}x {n.nics.name}, {_link(n.nics.link)}")
    lines += ["  " + x for x in describe_device(n.device)]
    return lines


def describe_cluster(c: Cluster) -> list[str]:
    f = c.fabric
    lines = [f"cluster {c.name}: {c.num_nodes} nodes, {c.num_devices} devices"]
    lines.append(f"  fabric: {f.topology}, {f.planes} plane(s), {f.nodes_per_leaf} nodes per leaf, "
                 f"oversubscription {f.oversubscription:g}:1")
    if f.scale_up_domain_nodes > 1:
        lines.append(f"  scale-up domains of {f.scale_up_domain_nodes} nodes")
    for d in c.power_domains:
        lines.append(f"  power domain {d.name}: {fq(d.budget_w, Dim.POWER)} over {len(d.nodes)} nodes")
    g = c.graph()
    lines.append(f"  graph: {g.number_of_nodes()} vertices, {g.number_of_edges() // 2} links")
    described: list[Node] = []
    for grp in c.groups:  # each distinct node once
        if grp.node not in described:
            described.append(grp.node)
            lines += ["  " + x for x in describe_node(grp.node)]
    return lines


def describe_deployment(cluster: Cluster, deployment: Deployment, shares: list[WeightShare]) -> list[str]:
    """Pools, parallelism and the weight bytes per device of a checked deployment."""
    dev = deployment
    lines = [f"deployment of {dev.model_name} on {cluster.name}: {dev.devices} of {cluster.num_devices} devices, "
             f"weights {dev.dtypes.weights}, activations {dev.dtypes.activations}, KV {dev.dtypes.kv}, "
             f"overlap {dev.overlap}"]
    devices = cluster.device_names
    for pool, share in zip(dev.pools, shares, strict=True):
        p = pool.parallelism
        device = devices[pool.first_device]
        lines.append(f"  pool {pool.name} ({pool.role}): {pool.replicas} replica(s) x {p.devices} {device} "
                     f"[tp={p.tp} attention_dp={p.attention_dp} ep={p.ep} moe_tp={p.expert_tp} pp={p.pp}]")
        s = pool.scheduler
        chunk = f", chunked prefill {s.chunked_prefill_tokens}" if s.chunked_prefill_tokens else ""
        lines.append(f"    scheduler: {s.policy}, max {s.max_seqs} seqs, {s.max_batched_tokens} tokens/step{chunk}")
        lines.append(f"    weights per device: {format_quantity(share.total_bytes, Dim.BYTES)} "
                     f"(dense {format_quantity(share.dense_bytes, Dim.BYTES)}, "
                     f"experts {format_quantity(share.experts_bytes, Dim.BYTES)} = {share.experts_per_device} "
                     f"per MoE layer, embeddings {format_quantity(share.embedding_bytes, Dim.BYTES)})")
    e = dev.experts
    params = ", ".join(f"{k}={v}" for k, v in e.routing.params.items())
    lines.append(f"  experts: placement {e.placement}, {e.redundant} redundant, routing {e.routing.model}"
                 + (f" ({params})" if params else ""))
    return lines
