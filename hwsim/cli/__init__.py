"""The ``hwsim`` command line: a thin click layer over the library.

Every user error (:class:`hwsim.errors.HwsimError`) is printed as one message, without a
traceback, and exits with the error's code (2 for bad input).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from hwsim import __version__
from hwsim.errors import HwsimError


class HwsimGroup(click.Group):
    """A click group that turns :class:`HwsimError` into a message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HwsimError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:  # pragma: no cover - interactive only
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=HwsimGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="hwsim")
def main() -> None:
    """Hardware simulator and cost model for serving Mixture-of-Experts LLMs."""


def _register() -> None:
    # Imported here so that each group's module stays small and imports nothing heavy at
    # module level; ``hwsim --help`` stays fast.
    from hwsim.cli import (
        check,
        estimate,
        experts,
        hardware,
        model,
        plan,
        schema,
        simulate,
        sweep,
        trace,
    )

    for group in (check.check, estimate.estimate, experts.experts, hardware.hardware, model.model,
                  plan.plan, schema.schema, simulate.simulate, sweep.sweep, trace.trace):
        main.add_command(group)
    from hwsim.cli.validate import validate
    main.add_command(validate)


_register()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
