"""Power rows: decode power vs batch (H100, ML.ENERGY), MaxQ/MaxP throughput under caps and
server wall power (MLPerf v4.1 H200), predicted with :mod:`hwsim.perf.power` and the catalog.

The activity ``(u_c, u_m)`` of a published decode point is *estimated* from its measured
throughput with hwsim's own model arithmetic (:func:`decode_activity`); the assumptions are in
:data:`ASSUMPTIONS`. The prompt length of the ML.ENERGY runs is not published: the power fit
(``validation/fit_power.py``) treats it as a nuisance parameter bounded by
:data:`MAX_PROMPT_TOKENS`, and :data:`PROMPT_TOKENS` is its fitted value (the script checks it).
Sources: ML.ENERGY leaderboard v3 (case ``mlenergy-h100-llama31-power-vs-batch``); MLPerf
Inference v4.1 H200 MaxQ/MaxP (``mlperf41-h200-maxq-*``); cases in
``../shared/validation/cases-power.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.io.load import load_device, load_model, load_node
from hwsim.perf import power
from hwsim.perf.memory import footprint, kv_bytes_per_token_per_device
from hwsim.spec.attention import AttentionSpec
from hwsim.spec.deployment import Deployment, Dtypes, Parallelism, Pool, SchedulerLimits
from hwsim.spec.hardware import Device
from hwsim.spec.model import Model
from hwsim.spec.sharding import weight_share
from hwsim.validate.rows import ValidationRow

MAX_PROMPT_TOKENS = 1000
"""Upper bound of the fitted prompt length (the ML.ENERGY Llama runs' prompt length is not
published; chat prompts beyond 1k tokens would put the 70B run above 60% of BF16 peak)."""

ASSUMPTIONS = {
    "output_tokens": 717,    # ML.ENERGY v3 blog: Text Conversation mean output 717 tokens
    "memory_reserve": 0.10,  # vLLM gpu_memory_utilization 0.9
    "max_batched_tokens": 8192,
}

LLAMA_8B = Model(name="llama-3.1-8b", family="llama", num_layers=32, hidden_size=4096, vocab_size=128256,
                 attention=AttentionSpec(kind="gqa", num_heads=32, num_kv_heads=8, head_dim=128),
                 ffn_dim=14336, max_context_tokens=131072)      # meta-llama/Llama-3.1-8B config.json
LLAMA_405B = Model(name="llama-3.1-405b", family="llama", num_layers=126, hidden_size=16384, vocab_size=128256,
                   attention=AttentionSpec(kind="gqa", num_heads=128, num_kv_heads=8, head_dim=128),
                   ffn_dim=53248, max_context_tokens=131072)    # meta-llama/Llama-3.1-405B config.json


@dataclass(frozen=True)
class DecodePoint:
    case: str
    config: str
    batch: int
    tok_s: float
    power_w: float        # measured, per GPU
    u_c: float
    u_m: float
    running: float        # sequences actually running (KV capacity bound)


def _metric(case: dict, name: str, model: str | None = None) -> dict:
    for m in case["metrics"]:
        if m["name"] == name and (model is None or m.get("model") == model):
            return m["value"]
    raise KeyError(f"{case['id']}: no metric {name} ({model})")


def decode_activity(device: Device, model: Model, par: Parallelism, dtypes: Dtypes, batch: int,
                    tok_s: float, input_tokens: float) -> tuple[float, float, float]:
    """(u_c, u_m, running) of one GPU in a steady decode run producing ``tok_s`` output tokens/s.

    Running sequences: min(batch, KV capacity at the mean context) from hwsim.perf.memory.
    Step time = running / tok_s. FLOP/s: output tokens at the mean context plus the prompt
    tokens (input/output of them per output token) at half the prompt. Bytes per step: weights
    on the device (MoE: the experts touched by the step's tokens under uniform routing), KV of
    the running sequences, and the TP all-reduce traffic through HBM (two all-reduces per layer,
    ring, ~3 HBM accesses per byte on the wire).
    """
    i, o = input_tokens, ASSUMPTIONS["output_tokens"]
    ctx = i + o / 2
    pool = Pool(name="fit", parallelism=par,
                scheduler=SchedulerLimits(max_seqs=batch, max_batched_tokens=ASSUMPTIONS["max_batched_tokens"]))
    dep = Deployment(model_name=model.name, dtypes=dtypes, pools=(pool,),
                     memory_reserve_fraction=ASSUMPTIONS["memory_reserve"])
    fp = footprint(model, dep, pool, device)
    running = min(float(batch), fp.max_kv_tokens * fp.sequence_groups / ctx)
    step_s = running / tok_s
    n = par.devices
    flop_s = tok_s * (model.flops_per_token(ctx) + i / o * model.flops_per_token(i / 2)) / n
    tokens = running * (1 + i / o)
    share = weight_share(model, par, dtypes)
    weights = share.total_bytes
    if model.moe is not None:
        touched = 1 - (1 - model.moe.top_k / model.moe.num_experts) ** tokens
        weights -= share.experts_bytes * (1 - touched)
    kv = running * ctx * kv_bytes_per_token_per_device(model, par, dtypes.kv)
    allreduce = 0.0
    if par.tp > 1:
        message = tokens * model.hidden_size * 2.0
        allreduce = 2 * model.num_layers * message * 2 * (par.tp - 1) / par.tp * 3
    u_c = flop_s / device.peak_flop_per_s(dtypes.weights)
    u_m = (weights + kv + allreduce) / step_s / device.hbm_bytes_per_s
    return min(u_c, 1.0), min(u_m, 1.0), running


def h100_points(cases: dict, input_tokens: float) -> list[DecodePoint]:
    case = cases["mlenergy-h100-llama31-power-vs-batch"]
    h100 = load_device("H100-SXM")
    configs = [
        ("8B", LLAMA_8B, 1, Dtypes(), "avg_gpu_power_by_batch"),
        ("70B", load_model("llama-3.1-70b"), 4, Dtypes(), "avg_power_all_4_gpus_by_batch"),
        ("405B-FP8", LLAMA_405B, 8, Dtypes(weights="fp8"), "avg_power_all_8_gpus_by_batch"),
    ]
    points = []
    for name, model, tp, dtypes, pmetric in configs:
        watts = _metric(case, pmetric, name)
        tput = _metric(case, "output_tok_s_by_batch", name)
        for b, w in watts.items():
            u_c, u_m, running = decode_activity(h100, model, Parallelism(tp=tp), dtypes, int(b), tput[b], input_tokens)
            points.append(DecodePoint(case["id"], name, int(b), tput[b], w / tp, u_c, u_m, running))
    return points


PROMPT_TOKENS = 1000.0
"""The fitted prompt length of the ML.ENERGY runs (docs/calibration-power.md)."""

MAXQ_CASES = (("mlperf41-h200-maxq-llama2-70b", 500.0), ("mlperf41-h200-maxq-mixtral-8x7b", 500.0),
              ("mlperf41-h200-maxq-gptj", 350.0))
WALL_CHECKS = (("mlperf41-h200-maxq-llama2-70b", 500.0, 6153.0, "Offline"),
               ("mlperf41-h200-maxq-mixtral-8x7b", 500.0, 6154.8, "Offline"),
               ("mlperf41-h200-maxq-gptj", 350.0, 4775.3, "Offline"),
               ("mlperf41-h200-maxq-gptj", 350.0, 4722.6, "Server"))


def cap_ratio_points(cases: dict) -> list[tuple[str, str, float, float]]:
    """(case, scenario, cap W, MaxQ/MaxP throughput ratio) from the MLPerf v4.1 H200 cases."""
    out = []
    for cid, cap in MAXQ_CASES:
        case = cases[cid]
        for scen in ("Offline", "Server"):
            q = next(m["value"] for m in case["metrics"] if m.get("scenario") == scen and m["name"] == "throughput_maxq")
            p = next(m["value"] for m in case["metrics"]
                     if m.get("scenario") == scen and m["name"].startswith("throughput_maxp"))
            out.append((cid, scen, cap, q / p))
    return out


def power_rows(cases: dict) -> list[ValidationRow]:
    """Decode power per GPU (28 points), MaxQ/MaxP ratios (6) and MaxQ wall power (4)."""
    h100, h200 = load_device("H100-SXM"), load_device("H200")
    out = []
    for p in h100_points(cases, PROMPT_TOKENS):
        pred = power.device_power_w(h100, compute_util=p.u_c, memory_util=p.u_m)
        out.append(ValidationRow(kind="power", case=p.case, label=f"{p.config} batch {p.batch} W/GPU", unit="W",
                                 measured=p.power_w, predicted=pred, tier=2,
                                 note=f"activity estimated: u_c {p.u_c:.3f}, u_m {p.u_m:.3f}"))
    static = power.power_coefficients(h200).static_w
    for cid, scen, cap, ratio in cap_ratio_points(cases):
        pred = ((cap - static) / (h200.power.tdp_w - static)) ** (1.0 / power.CAP_EXPONENT)
        out.append(ValidationRow(kind="power", case=cid, label=f"{scen} MaxQ/MaxP throughput at {cap:.0f} W",
                                 unit="ratio", measured=ratio, predicted=pred, tier=2,
                                 note="MaxP assumed TDP-limited; fitted (alpha)"))
    node = load_node("HGX-H200")
    for cid, cap, meas, scen in WALL_CHECKS:
        gpu = power.device_power_w(h200, compute_util=0.6, memory_util=0.3, cap_w=cap)
        out.append(ValidationRow(kind="power", case=cid, label=f"{scen} wall power at {cap:.0f} W caps", unit="W",
                                 measured=meas, predicted=power.wall_power_w(node, gpu), tier=2,
                                 note="GPUs assumed at the cap (u_c 0.6)"))
    return out


__all__ = ["ASSUMPTIONS", "MAX_PROMPT_TOKENS", "PROMPT_TOKENS", "DecodePoint", "cap_ratio_points",
           "decode_activity", "h100_points", "power_rows"]
