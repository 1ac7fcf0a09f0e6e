"""``hwsim hardware list|show|validate``: the hardware catalog."""

from __future__ import annotations

from pathlib import Path

import click

from hwsim.cli.params import catalog_option
from hwsim.errors import HwsimError, SpecError
from hwsim.io import catalog
from hwsim.io.load import load
from hwsim.io.source import read_document
from hwsim.report.describe import describe_cluster, describe_device, describe_node

KINDS = ("device", "node", "cluster")


@click.group("hardware")
def hardware() -> None:
    """Browse and check hardware descriptions (devices, nodes, clusters)."""


@hardware.command("list")
@click.option("--kind", type=click.Choice(KINDS), help="Only this kind.")
@catalog_option
def list_(kind: str | None, catalog_dirs: tuple[str, ...]) -> None:
    """List catalog hardware."""
    for k in [kind] if kind else KINDS:
        rows = catalog.entries(k, catalog_dirs)
        click.echo(f"{k}s ({len(rows)}):")
        for e in rows:
            click.echo(f"  {e.name:<24} {e.title}")


@hardware.command("show")
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), help="Kind to look up when a name is ambiguous.")
@catalog_option
def show(name: str, kind: str | None, catalog_dirs: tuple[str, ...]) -> None:
    """Show a device, node or cluster (catalog NAME or a file)."""
    spec, k = _resolve(name, kind, catalog_dirs)
    describe = {"device": describe_device, "node": describe_node, "cluster": describe_cluster}[k]
    click.echo("\n".join(describe(spec)))


def _resolve(name: str, kind: str | None, dirs: tuple[str, ...]) -> tuple[object, str]:
    if Path(name).is_file():
        k = kind or str(read_document(name).data.get("kind", ""))
        if k not in KINDS:
            raise SpecError(f"expected kind: device, node or cluster; found {k!r}", file=name, path="kind")
        return load(k, name, dirs), k
    first_error: SpecError | None = None
    for k in [kind] if kind else KINDS:
        try:
            return load(k, name, dirs), k
        except SpecError as err:
            if "unknown" not in err.message:
                raise
            first_error = first_error or err
    assert first_error is not None
    names = sorted(e.name for k in KINDS for e in catalog.entries(k, dirs))
    from hwsim.registry import unknown_name_error
    raise unknown_name_error("hardware", name, names)


@hardware.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@catalog_option
def validate(files: tuple[str, ...], catalog_dirs: tuple[str, ...]) -> None:
    """Check hardware FILES (schema, units, sources, topology); exit 2 if any is bad."""
    bad = 0
    for f in files:
        try:
            data = read_document(f).data
            k = data.get("kind") if isinstance(data, dict) else None
            if k not in KINDS:
                raise SpecError("expected kind: device, node or cluster", file=f, path="kind", found=k)
            spec = load(k, f, catalog_dirs)
            click.echo(f"ok: {f} ({k} {getattr(spec, 'name', '')})")
        except HwsimError as err:
            bad += 1
            click.echo(f"error: {err}", err=True)
    if bad:
        raise click.exceptions.Exit(2)
