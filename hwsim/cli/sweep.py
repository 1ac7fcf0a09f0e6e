"""``hwsim sweep``: run a sweep file on a process pool or Dask, and report its results.

``hwsim sweep run SPEC.yaml`` (or just ``hwsim sweep SPEC.yaml``) and
``hwsim sweep report RESULTS``.
"""

from __future__ import annotations

from pathlib import Path

import click

from hwsim.cli import HwsimGroup
from hwsim.cli.params import SloParam, catalog_option

__all__ = ["sweep"]


class SweepGroup(HwsimGroup):
    """A group where ``hwsim sweep SPEC.yaml ...`` means ``hwsim sweep run SPEC.yaml ...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=SweepGroup, context_settings={"help_option_names": ["-h", "--help"]})
def sweep() -> None:
    """Sweep deployments and hardware: `hwsim sweep [run] SPEC.yaml`, `hwsim sweep report RESULTS`."""


@sweep.command("run")
@click.argument("spec_file", metavar="SPEC.yaml", type=click.Path(dir_okay=False))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Output folder  [default: out/<sweep name>]")
@click.option("-w", "--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes  [default: all cores; 1 runs in this process]")
@click.option("--backend", type=click.Choice(["process", "dask"]), default="process", show_default=True,
              help="A local process pool, or Dask distributed (pip install 'hwsim[dask]').")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="Dask scheduler address (tcp://host:8786)  [default: a LocalCluster of --workers processes]")
@click.option("--resume", is_flag=True, help="Keep the rows already in --out and run only the other configurations.")
@click.option("--retry-errors", is_flag=True, help="With --resume, run failed configurations again.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True,
              help="Format of the consolidated results file.")
@click.option("--chunk", type=click.IntRange(min=1), default=None,
              help="Configurations per task  [default: 1 in simulate mode; up to 32 estimates]")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@catalog_option
def run(spec_file: str, out_dir: str | None, workers: int | None, backend: str, scheduler: str | None,
        resume: bool, retry_errors: bool, fmt: str, chunk: int | None, quiet: bool,
        catalog_dirs: tuple[str, ...]) -> None:
    """Run every configuration of SPEC.yaml; write one row per configuration to --out.

    Every axis path and value is checked before anything runs. A failing configuration is
    recorded with its error; a killed sweep continues with --resume.
    """
    from hwsim.report.summary import summarize
    from hwsim.sweep.executors import make_executor
    from hwsim.sweep.run import plan_sweep, run_sweep

    plan = plan_sweep(spec_file, catalog_dirs=catalog_dirs, summarize=summarize)
    out = Path(out_dir) if out_dir is not None else Path("out") / plan.spec.name
    executor = make_executor(backend, workers, scheduler)
    bar = _Bar(len(plan.configs), quiet)
    try:
        outcome = run_sweep(plan, out, executor=executor, resume=resume, retry_errors=retry_errors, fmt=fmt,
                            chunk=chunk, progress=bar)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        click.echo(f"\nstopped; the rows written so far are kept in {out}/parts: rerun with --resume", err=True)
        raise
    finally:
        bar.close()
        executor.close()
    reused = f", {outcome.reused} reused from an earlier run" if outcome.reused else ""
    click.echo(f"{outcome.configurations} configurations ({plan.spec.mode}): {outcome.ok} ok, {outcome.errors} failed"
               f"{reused}; {outcome.wall_s:.1f} s on {outcome.executor}")
    if outcome.errors:
        _echo_errors(outcome.results)
    click.echo(f"wrote {outcome.results}")


def _echo_errors(results: Path, top: int = 3) -> None:
    from hwsim.report.sweep import error_groups, read_results

    groups = error_groups(read_results(results).rows)
    for n, message in groups[:top]:
        click.echo(f"  {n} x {message}")
    if len(groups) > top:
        click.echo(f"  ... and {len(groups) - top} other kinds of error (see the error column)")


class _Bar:
    """A tqdm bar with ETA over configurations, on stderr (off when quiet or not a terminal)."""

    def __init__(self, total: int, quiet: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="cfg", desc="sweep", disable=True if quiet else None, mininterval=0.5,
                        dynamic_ncols=True)

    def __call__(self, done: int, total: int) -> None:
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


@sweep.command("report")
@click.argument("results", metavar="RESULTS", type=click.Path(exists=True))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for report.md and the PNGs  [default: report/ next to RESULTS]")
@click.option("--slo", "slos", type=SloParam(), multiple=True,
              help="An SLO to pick the best configuration for, e.g. 'ttft=2s,tpot=100ms' (repeatable).")
@click.option("--color-by", default=None, help="Input column that colours the plots  [default: the first with few values]")
def report(results: str, out_dir: str | None, slos: tuple[dict[str, float], ...], color_by: str | None) -> None:
    """Pareto fronts, trade-off plots and the best configuration per SLO of a sweep's RESULTS.

    RESULTS is results.parquet / results.csv or the sweep's output folder.
    """
    from hwsim.report.sweep import best_lines, read_results, write_sweep_report

    path = Path(results)
    out = Path(out_dir) if out_dir is not None else (path if path.is_dir() else path.parent) / "report"
    written = write_sweep_report(path, out, list(slos), color_by)
    for line in best_lines(read_results(path), [{}, *slos]):
        click.echo(line)
    click.echo(f"wrote {len(written)} files to {out}/")
