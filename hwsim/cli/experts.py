"""``hwsim experts``: routing traces and models, expert placements, expert-cache curves.

The group is defined here; its commands live in ``experts_routing`` (sample, fit, stats of
routing), ``experts_placement`` (placements and per-device loads) and ``experts_cache``
(cache-curve), each imported once below so that every module stays small.
"""

from __future__ import annotations

import importlib

import click

from hwsim.cli import HwsimGroup

__all__ = ["experts"]


@click.group(cls=HwsimGroup)
def experts() -> None:
    """Routing models and traces, expert placement, expert caches across memory tiers."""


for _name in ("experts_routing", "experts_placement", "experts_cache"):
    importlib.import_module(f"hwsim.cli.{_name}")
