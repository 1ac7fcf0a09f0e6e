"""Communication rows: NVLink / PCIe copies, NCCL all-reduce, DeepEP normal and low-latency.

Each row runs its scenario on a catalog cluster through :class:`hwsim.perf.collectives.Collectives`
(H100 on 4x-DGX-H100, H200 on 2x-HGX-H200, H800 on H800-32node-MPFT, B200 on 4x-DGX-B200; for
the NCCL case, measured on AWS P6-B200, the NICs are relabelled ``efa``: same 400 Gb/s, EFA's own
message latency). A row's prediction is a function of a :class:`Model` (one parameter set), so the
same rows serve the fit (``validation/calibrate_comm.py``) and the validation table
(:func:`comm_rows`, with :func:`catalog_values`: the committed device efficiencies and
:mod:`hwsim.perf.comm_params` defaults).

Cases: deepep-v1-normal-h800, deepep-v2-sm90-sm100, h200-nvlink-pcie-measured,
b200-nccl-allreduce-1vs4-nodes, h100-nvlink-p2p-nccl-issue, plus two supplementary sets read from
the cited sources: the H200 NCCL ring/NVLS all-reduce bus bandwidths (``hardware-specs.yaml``, id
nvidia_h200_sxm_141gb, ml-engineering) and the DeepEP V1 low-latency table (DeepEP
``docs/legacy.md``, the source of deepep-v1-normal-h800).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hwsim.io.load import load_cluster, load_device
from hwsim.perf import comm_params as cp
from hwsim.perf.collectives import Collectives
from hwsim.perf.comm_moe import RoutingCounts, routing_counts
from hwsim.perf.comm_paths import CommTopology
from hwsim.validate.rows import ValidationRow
from hwsim.validate.shared import SharedData

GB, US, MIB, GIB = 1e9, 1e-6, 2**20, 2**30
LL_SOURCE = "deepep-v1-low-latency (DeepEP docs/legacy.md)"
NVLS_SOURCE = "h200-nccl-ring-vs-nvls (hardware-specs.yaml nvidia_h200_sxm_141gb)"

# parameter: (initial, lower, upper)
PARAMS: dict[str, tuple[float, float, float]] = {
    "eff:H100-SXM:scale_up": (0.85, 0.3, 1.0),
    "eff:H100-SXM:scale_out": (0.9, 0.3, 1.0),
    "eff:H200:scale_up": (0.85, 0.3, 1.0),
    "eff:H200:host_link": (0.85, 0.3, 1.0),
    "eff:H800:scale_up": (0.7, 0.3, 1.0),
    "eff:H800:scale_out": (0.9, 0.3, 1.0),
    "eff:B200:scale_up": (0.75, 0.3, 1.0),
    "eff:B200:scale_out": (0.9, 0.3, 1.0),
    "nvls": (0.7, 0.3, 1.0),
    "lat:nvlink": (5e-6, 1e-7, 2e-4),
    "lat:infiniband": (2e-5, 1e-7, 2e-4),
    "lat:efa": (3e-5, 1e-7, 5e-4),
    "launch": (1e-5, 1e-7, 1e-4),
    "ep_launch": (2e-5, 1e-7, 1e-4),
}


class Model:
    """One parameter set; builds Collectives per scenario cluster, sharing path caches."""

    topologies: dict[str, CommTopology] = {}

    def __init__(self, values: dict[str, float]) -> None:
        self.values = values
        self._comm: dict[str, Collectives] = {}
        latency = cp.message_latency_table({k: values[f"lat:{k}"] for k in ("nvlink", "infiniband", "efa")})
        self.params = cp.CommParams(message_latency_s=latency, launch_s=values["launch"],
                                    ep_launch_s=values["ep_launch"], nvls_bandwidth_fraction=values["nvls"])
        self.efficiency = {(k.split(":")[1], k.split(":")[2]): v for k, v in values.items() if k.startswith("eff:")}

    def comm(self, scenario: str) -> Collectives:
        if scenario not in self._comm:
            topo = Model.topologies.get(scenario)
            if topo is None:
                topo = Model.topologies[scenario] = CommTopology(_scenario_cluster(scenario))
            self._comm[scenario] = Collectives(topo.cluster, params=self.params, efficiency=self.efficiency,
                                               topology=topo)
        return self._comm[scenario]


def _scenario_cluster(name: str):
    if name == "b200-efa":
        c = load_cluster("4x-DGX-B200")
        node = c.groups[0].node
        nics = dataclasses.replace(node.nics, link=dataclasses.replace(node.nics.link, kind="efa"))
        group = dataclasses.replace(c.groups[0], node=dataclasses.replace(node, nics=nics))
        return dataclasses.replace(c, name="4x-P6-B200 (EFA)", groups=(group,))
    return load_cluster(name)


@dataclass(frozen=True)
class Row:
    case: str
    label: str
    unit: str
    measured: float
    predict: Callable[[Model], float] = field(repr=False)
    params: tuple[str, ...]
    fit: bool = True
    note: str = ""


# -- routing as the DeepEP tests draw it -------------------------------------------------
def _topk(rng: np.random.Generator, tokens: int, experts: int, k: int, nodes: int = 1, groups: int = 0) -> np.ndarray:
    """top-k of |N(0,1)|+1 scores; with ``groups`` > 0 first keep the best ``groups`` nodes."""
    scores = np.abs(rng.standard_normal((tokens, experts))) + 1.0
    if groups and groups < nodes:
        best = scores.reshape(tokens, nodes, -1).max(axis=2)
        keep = np.argpartition(-best, groups - 1, axis=1)[:, :groups]
        mask = np.zeros((tokens, nodes), dtype=bool)
        np.put_along_axis(mask, keep, True, axis=1)
        scores = np.where(np.repeat(mask, experts // nodes, axis=1), scores, -1.0)
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]


def _counts(model: Model, scenario: str, ranks: int, tokens: int, experts: int, grouped: bool, seed: int) -> RoutingCounts:
    rng = np.random.default_rng(seed)
    nodes = max(1, ranks // 8)
    ids = np.concatenate([_topk(rng, tokens, experts, 8, nodes, min(nodes, 4) if grouped else 0)
                          for _ in range(ranks)])
    src = np.repeat(np.arange(ranks), tokens)
    e2r = np.arange(experts) // (experts // ranks)
    return routing_counts(ids, src, e2r, model.comm(scenario).rank_nodes(list(range(ranks))))


_COUNTS: dict[tuple, RoutingCounts] = {}


def _ep_row(case, label, measured, scenario, ranks, tokens, experts, token_bytes, *, grouped=False,
            combine=False, mode="normal", metric="bandwidth", eff=(), fit=True, note=""):
    key = (scenario, ranks, tokens, experts, grouped)

    def predict(model: Model) -> float:
        if key not in _COUNTS:
            _COUNTS[key] = _counts(model, scenario, ranks, tokens, experts, grouped, seed=ranks)
        c = _COUNTS[key]
        cost = model.comm(scenario).moe_from_counts(list(range(ranks)), c, token_bytes, mode,
                                                    combine=combine, detail=False)
        if metric == "latency":
            return cost.time_s / US
        logical = c.tokens_to_rank.sum(axis=0).mean() if ranks <= 8 else c.tokens_to_node.sum(axis=1).mean()
        return logical * token_bytes / cost.time_s / GB

    unit = "us" if metric == "latency" else "GB/s"
    lat = ("lat:nvlink", "ep_launch") + (("lat:infiniband",) if ranks > 8 else ())
    return Row(case, label, unit, measured, predict, tuple(eff) + lat, fit, note)


def rows(shared: SharedData | None = None) -> list[Row]:
    """Every communication row (the published cases plus the two supplementary tables)."""
    shared = shared if shared is not None else SharedData.locate()
    cases = shared.cases
    out: list[Row] = []
    out += _p2p_rows(cases, shared.hardware_specs)
    out += _deepep_v1_rows(cases)
    out += _deepep_ll_rows()
    out += _deepep_v2_rows(cases)
    out += _nccl_rows(cases)
    return out


def _p2p_rows(cases, specs) -> list[Row]:
    out = []
    h100 = {m["name"]: m["value"] for m in cases["h100-nvlink-p2p-nccl-issue"]["metrics"]}
    h200 = {m["name"]: m["value"] for m in cases["h200-nvlink-pcie-measured"]["metrics"]}
    size = 512 * MIB

    def flows(scenario, fl, total):
        # nvbandwidth / p2pBandwidthLatencyTest stream back-to-back copies: the launch and
        # message latency are hidden, so the bandwidth is size / (time - latency)
        def bw(m):
            cost = m.comm(scenario).transfer(fl, detail=False)
            return total / (cost.time_s - cost.latency_s) / GB
        return bw

    su100, su200, hl200 = ("eff:H100-SXM:scale_up",), ("eff:H200:scale_up",), ("eff:H200:host_link",)
    out.append(Row("h100-nvlink-p2p-nccl-issue", "p2p unidirectional", "GB/s", h100["p2p_unidirectional"],
                   flows("4x-DGX-H100", [(0, 1, size)], size), su100))
    out.append(Row("h100-nvlink-p2p-nccl-issue", "p2p bidirectional (sum)", "GB/s", h100["p2p_bidirectional"],
                   flows("4x-DGX-H100", [(0, 1, size), (1, 0, size)], 2 * size), su100))
    c = "h200-nvlink-pcie-measured"
    out.append(Row(c, "NVLink pair unidirectional", "GB/s", h200["nvlink_pair_unidirectional"],
                   flows("2x-HGX-H200", [(0, 1, size)], size), su200))
    out.append(Row(c, "NVLink pair bidirectional (sum)", "GB/s", h200["nvlink_pair_bidirectional_total"],
                   flows("2x-HGX-H200", [(0, 1, size), (1, 0, size)], 2 * size), su200))
    out.append(Row(c, "PCIe 5 host->device", "GB/s", h200["pcie5_host_to_device"],
                   flows("2x-HGX-H200", [("n0.host", 0, size)], size), hl200))
    out.append(Row(c, "PCIe 5 device->host", "GB/s", h200["pcie5_device_to_host"],
                   flows("2x-HGX-H200", [(0, "n0.host", size)], size), hl200))
    entries = specs if isinstance(specs, list) else specs.get("devices", specs.get("specs", []))
    h200spec = next(e for e in entries if isinstance(e, dict) and e.get("id") == "nvidia_h200_sxm_141gb")
    meas = h200spec["measured"]
    for alg, key in (("ring", "nccl_allreduce_busbw_GBps_ring_16GiB"), ("nvls", "nccl_allreduce_busbw_GBps_NVLS_16GiB")):
        def busbw(m, alg=alg):
            t = m.comm("2x-HGX-H200").all_reduce(range(8), 16 * GIB, algorithm=alg, detail=False).time_s
            return cp.bus_bandwidth_bytes_per_s("all_reduce", 16 * GIB, 8, t) / GB
        out.append(Row(NVLS_SOURCE, f"NCCL all-reduce 16 GiB busbw, {alg}", "GB/s", float(meas[key]), busbw,
                       su200 + (("nvls",) if alg == "nvls" else ())))
    return out


def _deepep_v1_rows(cases) -> list[Row]:
    case = "deepep-v1-normal-h800"
    eff = ("eff:H800:scale_up", "eff:H800:scale_out")
    out = []
    for m in cases[case]["metrics"]:
        ep = int(m["EP"])
        for combine, key, tb in ((False, "dispatch_GBps", 7168 * (1 + 4 / 128)), (True, "combine_GBps", 7168 * 2)):
            out.append(_ep_row(case, f"EP{ep} {'combine' if combine else 'dispatch'} ({m['link']})", float(m[key]),
                               "H800-32node-MPFT", ep, 4096, 256, tb, grouped=ep > 8, combine=combine, eff=eff))
    return out


LL_TABLE = {  # DeepEP docs/legacy.md, "Low-latency kernels with pure RDMA" (H800 + CX7, 128 tokens)
    8: (77, 114), 16: (118, 195), 32: (155, 273), 64: (173, 314), 128: (192, 369), 256: (194, 360)}


def _deepep_ll_rows() -> list[Row]:
    out = []
    eff = ("eff:H800:scale_up", "eff:H800:scale_out")
    for ep, (d_us, c_us) in LL_TABLE.items():
        experts = 288 if 288 % ep == 0 else 256
        for combine, measured, tb in ((False, d_us, 7168 + 7168 / 128 * 4 + 16), (True, c_us, 7168 * 2)):
            out.append(_ep_row(LL_SOURCE, f"EP{ep} LL {'combine' if combine else 'dispatch'} latency", float(measured),
                               "H800-32node-MPFT", ep, 128, experts, tb, combine=combine, mode="low-latency",
                               metric="latency", eff=eff))
    return out


def _deepep_v2_rows(cases) -> list[Row]:
    case = "deepep-v2-sm90-sm100"
    out = []
    for m in cases[case]["metrics"]:
        topo = str(m["topo"]).replace(" ", "")
        nodes = int(topo.split("x")[1]) if "x" in topo else 1
        ranks = 8 * nodes
        sm90 = m["arch"] == "SM90"
        # SM90 rows on an H100-class node (NVLink 4 at 450 GB/s, CX7): on H800's 200 GB/s NVLink
        # the EP 8x2 row would be NVLink-forwarding bound near DeepEP V1's 43 GB/s, not 90.
        scenario, dev = ("4x-DGX-H100", "H100-SXM") if sm90 else ("4x-DGX-B200", "B200")
        eff = (f"eff:{dev}:scale_up", f"eff:{dev}:scale_out")
        sms = str(m["SMs"])
        fit = "min" not in sms
        note = "" if fit else "SM-limited run (24 SMs); hwsim has no SM-count term, not fitted"
        for combine, key, tb in ((False, "dispatch_GBps", 7168 + 224 + 96), (True, "combine_GBps", 7168 * 2)):
            out.append(_ep_row(case, f"{m['arch']} {m['topo']} {'combine' if combine else 'dispatch'} "
                                     f"({m['link']}, {sms} SMs)", float(m[key]), scenario, ranks, 8192, 256, tb,
                               combine=combine, eff=eff, fit=fit, note=note))
    return out


def _nccl_rows(cases) -> list[Row]:
    case = "b200-nccl-allreduce-1vs4-nodes"
    out = []
    for m in cases[case]["metrics"]:
        text = str(m["payload"])
        size = float(text[:-3]) * (GIB if text.endswith("GiB") else MIB)
        for n, key in ((8, "one_node_GBps"), (32, "four_nodes_GBps")):
            def busbw(model, n=n, size=size):
                t = model.comm("b200-efa").all_reduce(range(n), size, algorithm="nccl", detail=False).time_s
                return cp.bus_bandwidth_bytes_per_s("all_reduce", size, n, t) / GB
            params = ("eff:B200:scale_up", "nvls", "lat:nvlink", "launch") + (
                ("eff:B200:scale_out", "lat:efa") if n > 8 else ())
            out.append(Row(case, f"{n // 8} node{'s' if n > 8 else ''}, {text} busbw", "GB/s", float(m[key]),
                           busbw, params))
    return out


TIER1 = frozenset({"deepep-v1-normal-h800", "h200-nvlink-pcie-measured", "b200-nccl-allreduce-1vs4-nodes"})


def catalog_values() -> dict[str, float]:
    """The committed parameter values: device efficiencies from the catalog files, latencies,
    launch and NVLS fraction from :mod:`hwsim.perf.comm_params`."""
    params = cp.CommParams()
    values: dict[str, float] = {}
    for name in PARAMS:
        if name.startswith("eff:"):
            _, dev, cls = name.split(":")
            values[name] = load_device(dev).efficiency_of(cls)
        elif name.startswith("lat:"):
            values[name] = params.message_latency_s[name.split(":")[1]]
    values["launch"] = params.launch_s
    values["ep_launch"] = params.ep_launch_s
    values["nvls"] = params.nvls_bandwidth_fraction
    return values


def comm_rows(shared: SharedData) -> list[ValidationRow]:
    """Validation rows predicted with the committed parameters."""
    model = Model(catalog_values())
    out = []
    for r in rows(shared):
        out.append(ValidationRow(kind="communication", case=r.case, label=r.label, unit=r.unit,
                                 measured=r.measured, predicted=r.predict(model),
                                 tier=1 if r.case in TIER1 else 2, modelled=r.fit, note=r.note))
    return out


__all__ = ["PARAMS", "Model", "Row", "catalog_values", "comm_rows", "rows"]
