"""``hwsim schema KIND``: print a shipped JSON Schema (for editor autocomplete)."""

from __future__ import annotations

import json

import click

from hwsim.io.validate import SCHEMA_KINDS
from hwsim.io.validate import schema as load_schema


@click.command("schema")
@click.argument("kind", type=click.Choice(SCHEMA_KINDS))
def schema(kind: str) -> None:
    """Print the JSON Schema of a file KIND (device, node, cluster, model, deployment, trace)."""
    click.echo(json.dumps(load_schema(kind), indent=2))
