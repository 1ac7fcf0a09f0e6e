"""``hwsim plan``: ILP recommendations (expert placement, memory tiering, parallelism, power).

The group and the solver options every planner shares are defined here; the commands live in
``plan_placement`` (placement, tiering), ``plan_parallelism`` and ``plan_power``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from hwsim.cli import HwsimGroup

__all__ = ["plan", "solver_options"]


@click.group(cls=HwsimGroup)
def plan() -> None:
    """ILP planners: expert placement, memory tiering, parallelism, power oversubscription.

    Every plan prints a summary, writes a frozen plan (JSON) and a YAML patch that
    ``hwsim simulate`` accepts, and reports the solver's time limit and proven gap.
    """


def solver_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--solver``, ``--time-limit``, ``--gap``, ``--write-lp``, shared by every planner."""
    f = click.option("--write-lp", type=click.Path(path_type=Path, dir_okay=False), default=None,
                     help="Also write the MILP as an LP file (the first one, for decomposed plans).")(f)
    f = click.option("--gap", type=click.FloatRange(0.0, 1.0), default=0.01, show_default=True,
                     help="Relative optimality gap at which the solver may stop.")(f)
    f = click.option("--time-limit", "time_limit_s", type=click.FloatRange(min=0.1), default=30.0,
                     show_default=True, help="Solver time limit in seconds (per solve).")(f)
    return click.option("--solver", type=click.Choice(["cbc", "highs", "auto"]), default="cbc", show_default=True,
                     help="MILP backend: CBC (bundled) or HiGHS (pip install highspy).")(f)


for _name in ("plan_placement", "plan_parallelism", "plan_power"):
    importlib.import_module(f"hwsim.cli.{_name}")
