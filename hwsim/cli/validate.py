"""``hwsim validate [CASES.yaml]``: hwsim's predictions beside published measurements."""

from __future__ import annotations

from pathlib import Path

import click

from hwsim.errors import SpecError


@click.command("validate")
@click.argument("cases_file", metavar="[CASES.yaml]", required=False, type=click.Path(dir_okay=False))
@click.option("--kind", "kinds", default=None, metavar="KINDS",
              help="Comma-separated kinds: operator, communication, end-to-end, offload, power, memory  "
                   "[default: all]")
@click.option("--shared-dir", type=click.Path(file_okay=False), default=None,
              help="Folder of the published cases  [default: ../shared/validation next to the repository]")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write validation.md, the parity plot (parity.png) and rows.csv here.")
@click.option("--write-docs", is_flag=True, help="Regenerate docs/validation.md (all kinds).")
@click.option("--check", is_flag=True, help="Exit 1 when docs/validation.md is not current.")
def validate(cases_file: str | None, kinds: str | None, shared_dir: str | None, out_dir: str | None,
             write_docs: bool, check: bool) -> None:
    """Predict published measurements and print predicted vs measured with the signed % error.

    Operator, communication, power and the offload/placement rows come from the published cases;
    memory and end-to-end rows from the runnable index CASES.yaml (default:
    validation/cases.yaml), which maps each case to a scenario file and lists, with what hwsim
    lacks, every case it cannot express yet. Prints a table per kind and the median |error| per
    kind.
    """
    from hwsim.report import validation as report
    from hwsim.validate import run_validation
    from hwsim.validate.doc import DOC, INTRO, NOTES, footer

    if (write_docs or check) and kinds:
        raise SpecError("--write-docs and --check cover every kind", path="--kind",
                        expected="no --kind with --write-docs/--check", found=kinds)
    v = run_validation(kinds=kinds, shared_dir=shared_dir, index=cases_file)
    if v.index is None:
        click.echo("note: no runnable index (validation/cases.yaml) found: memory and end-to-end rows "
                   "need CASES.yaml", err=True)
    click.echo(report.text_table(v.rows), nl=False)
    text = report.markdown(v.rows, intro=INTRO, notes=NOTES, footer=footer(v))
    if out_dir is not None:
        out = Path(out_dir)
        report.write_markdown(text, out / "validation.md")
        report.write_csv(v.rows, out / "rows.csv")
        plot = report.plot_parity(v.rows, out / "parity.png")
        click.echo(f"wrote {out / 'validation.md'}, {out / 'rows.csv'}" + (f", {plot}" if plot else ""))
    if write_docs:
        report.write_markdown(text, DOC)
        click.echo(f"wrote {DOC}")
    if check:
        current = DOC.read_text(encoding="utf-8") if DOC.is_file() else ""
        if current != text:
            click.echo(f"{DOC} is not current: run 'hwsim validate --write-docs'", err=True)
            raise click.exceptions.Exit(1)
        click.echo(f"{DOC} is current")
