"""``hwsim model list|show|import``: the model catalog and Hugging Face import."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import click

from hwsim.cli import HwsimGroup
from hwsim.cli.params import catalog_option
from hwsim.errors import SpecError
from hwsim.io import catalog
from hwsim.io.hf_import import import_hf_config, to_yaml
from hwsim.io.load import load_model
from hwsim.spec.dtypes import bytes_per_elem
from hwsim.spec.model import Model
from hwsim.units import Dim, format_quantity


def params_text(n: float) -> str:
    """``6.71e11`` -> ``'671.0B'``."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.4g}{suffix}" if n / scale < 10 else f"{n / scale:.1f}{suffix}"
    return f"{n:.0f}"


@click.group("model", cls=HwsimGroup)
def model() -> None:
    """Browse model architectures and import Hugging Face configs."""


@model.command("list")
@catalog_option
def list_(catalog_dirs: tuple[str, ...]) -> None:
    """List catalog models: parameters, layers, experts."""
    rows = catalog.entries("model", catalog_dirs)
    click.echo(f"{'name':<20} {'family':<14} {'total':>8} {'active':>8} {'layers':>6}  experts")
    for e in rows:
        m = load_model(e.file, catalog_dirs)
        conv = m.published.active_embeddings if m.published else "both"
        experts = "dense"
        if m.moe:
            experts = f"{m.moe.num_experts}/top-{m.moe.top_k}"
            if m.moe.num_shared_experts:
                experts += f" +{m.moe.num_shared_experts} shared"
            if m.moe.num_zero_experts:
                experts += f" +{m.moe.num_zero_experts} zero"
        click.echo(f"{m.name:<20} {m.family:<14} {params_text(m.total_params):>8} "
                   f"{params_text(m.active_params(conv)):>8} {m.num_layers:>6}  {experts}")


def _attention_lines(m: Model) -> list[str]:
    a = m.attention
    lines = [f"  attention     {a.kind}, {a.num_heads} heads"]
    if a.kind == "mla":
        lines.append(f"    q_lora_rank {a.q_lora_rank}, kv_lora_rank {a.kv_lora_rank}, "
                     f"qk_nope {a.qk_nope_head_dim}, qk_rope {a.qk_rope_head_dim}, v {a.v_head_dim}")
    else:
        lines.append(f"    kv heads {a.num_kv_heads}, head_dim {a.head_dim}")
    if a.window_tokens:
        pattern = "".join("W" if w else "F" for w in a.window_pattern)
        lines.append(f"    {a.window_kind} window {a.window_tokens} tokens, layer pattern {pattern} (W window, F full)")
    flags = [name for name, on in (("sinks", a.sinks), ("qk-norm", a.qk_norm)) if on]
    if flags:
        lines.append(f"    {', '.join(flags)}")
    return lines


def _moe_lines(m: Model) -> list[str]:
    e = m.moe
    if e is None:
        return ["  moe           none (dense)"]
    lines = [f"  moe           {e.num_experts} routed experts x {e.expert_ffn_dim}, top-{e.top_k}, {e.scoring} router"]
    if e.num_shared_experts:
        lines.append(f"    shared experts {e.num_shared_experts} x {e.shared_expert_ffn_dim or e.expert_ffn_dim}")
    if e.num_expert_groups > 1:
        rule = f"{e.k_per_group} per group (MoGE)" if e.moge else f"at most {e.topk_groups or e.num_expert_groups} groups per token"
        lines.append(f"    {e.num_expert_groups} groups of {e.experts_per_group}, {rule}")
    if e.num_zero_experts:
        lines.append(f"    zero-computation experts {e.num_zero_experts}; real experts per token {e.real_experts_per_token:g}")
    idx = m.moe_layer_indices
    lines.append(f"    MoE layers {len(idx)} of {m.num_layers} (first {idx[0]}, every {e.layer_interval})")
    return lines


def describe_model(m: Model, context_tokens: int) -> list[str]:
    """Lines of ``hwsim model show``."""
    c = m.param_counts()
    d = m.dtypes
    lines = [f"{m.name}  ({m.family})",
             f"  layers        {m.num_layers} x {m.attention_per_layer} attention block(s), hidden {m.hidden_size}, "
             f"vocab {m.vocab_size}, context {m.max_context_tokens} tokens",
             f"  dense ffn     {m.ffn_dim or '-'} ({'gated, 3 matrices' if m.gated_ffn else '2 matrices'}), "
             f"tied embeddings: {m.tie_word_embeddings}, MTP modules {m.mtp_layers}"]
    lines += _attention_lines(m) + _moe_lines(m)
    lines.append(f"  dtypes        weights {d.weights}, experts {d.experts or d.weights}, "
                 f"activations {d.activations}, kv {d.kv}")
    lines.append("  parameters    " + ", ".join(f"{k} {params_text(getattr(c, k))}" for k in (
        "embedding", "lm_head", "attention", "dense_ffn", "router", "shared_experts", "routed_experts", "norms")))
    lines.append(f"    total {params_text(c.total)} (+{params_text(c.mtp)} MTP), one expert {params_text(c.routed_expert_one)}")
    lines.append("    active per token: " + ", ".join(
        f"{conv} {params_text(m.active_params(conv))}" for conv in ("both", "output", "none")))
    if m.published:
        p = m.published
        pub = [f"total {params_text(p.total)}" if p.total else "", f"active {params_text(p.active)} ({p.active_embeddings})" if p.active else ""]
        lines.append(f"    published {', '.join(x for x in pub if x)}  [{p.source or 'no source'}]")
    kv_b = bytes_per_elem(d.kv)
    lines.append(f"  weights       {format_quantity(m.weight_bytes(), Dim.BYTES)} at the default dtypes")
    lines.append(f"  KV cache      {format_quantity(m.kv_bytes_per_token(), Dim.BYTES)}/token ({d.kv}, {kv_b:g} B/elem); "
                 f"{format_quantity(m.kv_bytes_per_token(context_tokens=context_tokens), Dim.BYTES)}/token "
                 f"averaged over {context_tokens} tokens")
    lines.append(f"  FLOPs/token   {format_quantity(m.flops_per_token(1), Dim.FLOP)} at 1 token of context, "
                 f"{format_quantity(m.flops_per_token(context_tokens), Dim.FLOP)} at {context_tokens}")
    for key, src in m.sources.items():
        lines.append(f"  source {key}: {src}")
    if m.notes:
        lines.append("  notes: " + " ".join(m.notes.split()))
    return lines


@model.command("show")
@click.argument("name")
@click.option("--context", "context_tokens", type=click.IntRange(min=1), default=8192, show_default=True,
              help="Context length (tokens) for the KV average and the FLOPs figure.")
@catalog_option
def show(name: str, context_tokens: int, catalog_dirs: tuple[str, ...]) -> None:
    """Show a model (catalog NAME or a file): fields, parameters, KV bytes, FLOPs."""
    click.echo("\n".join(describe_model(load_model(name, catalog_dirs), context_tokens)))


def _default_name(config: dict[str, Any], path: Path) -> str:
    origin = str(config.get("_name_or_path") or "").rstrip("/")
    if origin:
        return origin.split("/")[-1].lower()
    return (path.parent.name if path.stem == "config" else path.stem).lower() or "imported-model"


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@model.command("import")
@click.argument("config_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the YAML here.")
@click.option("--name", help="Catalog name of the model (default: from the config or the file name).")
def import_(config_file: Path, output: Path | None, name: str | None) -> None:
    """Convert a Hugging Face CONFIG_FILE (config.json) into a model YAML."""
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError("file not found", file=str(config_file)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SpecError(f"cannot read a JSON config: {err}", file=str(config_file)) from None
    if not isinstance(config, dict):
        raise SpecError("a config.json must hold a JSON object", file=str(config_file))
    data = import_hf_config(config, name=name or _default_name(config, config_file), source=str(config_file))
    text = to_yaml(data)
    if output is None:
        click.echo(text, nl=False)
    else:
        write_atomically(output, text)
        click.echo(f"wrote {output}", err=True)
