"""Shared click parameter types and options."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from hwsim.errors import UnitError
from hwsim.units import Dim, parse_quantity


class QuantityParam(click.ParamType):
    """A command-line quantity with a unit, e.g. ``--budget 40kW``."""

    def __init__(self, dim: Dim) -> None:
        self.dim = dim
        self.name = dim.value

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_quantity(str(value), self.dim)
        except UnitError as err:
            self.fail(str(err), param, ctx)


def catalog_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--catalog DIR`` (repeatable): extra folders searched before the built-in catalog."""
    return click.option(
        "--catalog", "catalog_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
        help="Extra catalog folder searched first (repeatable; also HWSIM_PATH).",
    )(fn)


def patch_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--patch FILE`` (repeatable): patch files (``kind: patch``, e.g. from ``hwsim plan``)
    applied in order to the cluster file before it is built."""
    return click.option(
        "--patch", "patch_files", multiple=True, type=click.Path(dir_okay=False),
        help="Apply this patch file (kind: patch, e.g. written by 'hwsim plan') to the cluster file first (repeatable).",
    )(fn)


class SloParam(click.ParamType):
    """``ttft=2s,tpot=50ms`` -> ``{"ttft": 2.0, "tpot": 0.05}`` (seconds)."""

    name = "slo"
    KEYS = ("ttft", "tpot")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dict[str, float]:
        if isinstance(value, dict):
            return value
        out: dict[str, float] = {}
        for part in str(value).split(","):
            key, sep, text = part.partition("=")
            key = key.strip().lower()
            if not sep or key not in self.KEYS:
                self.fail(f"expected ttft=<time>,tpot=<time> (e.g. 'ttft=2s,tpot=50ms'); found {part!r}", param, ctx)
            try:
                out[key] = parse_quantity(text.strip(), Dim.TIME)
            except UnitError as err:
                self.fail(f"{key}: {err}", param, ctx)
        return out
