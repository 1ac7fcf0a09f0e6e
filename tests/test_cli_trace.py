"""``hwsim trace import | generate | stats`` through click's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hwsim.cli.trace import trace
from hwsim.workload.importers import import_requests
from hwsim.workload.trace import read_requests

TRACES = Path(__file__).resolve().parent / "data" / "traces"


def _run(*args: object) -> Result:
    return CliRunner().invoke(trace, [str(a) for a in args])


def _assert_user_error(result: Result, *fragments: str) -> None:
    """Exit code 2, an ``error:`` message, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ")
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    for fragment in fragments:
        assert fragment in result.output


# ---------------------------------------------------------------- import


def test_import_azure(tmp_path: Path) -> None:
    out = tmp_path / "azure.jsonl"
    result = _run("import", TRACES / "azure_conv_sample.csv", "-o", out)
    assert result.exit_code == 0, result.output
    assert "imported 30 requests" in result.output
    assert "(azure)" in result.output
    assert read_requests(out) == list(import_requests(TRACES / "azure_conv_sample.csv"))


def test_import_window_and_limit(tmp_path: Path) -> None:
    out = tmp_path / "w.json"
    assert (
        _run(
            "import",
            TRACES / "azure_conv_sample.csv",
            "-o",
            out,
            "--start-s",
            "5",
            "--duration-s",
            "5s",
        ).exit_code
        == 0
    )
    assert all(0 <= r.arrival_s < 5 for r in read_requests(out))
    assert _run("import", TRACES / "vidur_sample.csv", "-o", out, "--limit", 3).exit_code == 0
    assert len(read_requests(out)) == 3


def test_import_burstgpt_reports_failures(tmp_path: Path) -> None:
    result = _run(
        "import", TRACES / "burstgpt_sample.csv", "-o", tmp_path / "b.jsonl", "--format", "burstgpt"
    )
    assert result.exit_code == 0, result.output
    assert "imported 20 requests" in result.output
    assert "skipped 4 failed requests" in result.output


def test_import_zero_tokens_needs_drop_invalid(tmp_path: Path) -> None:
    src = tmp_path / "z.csv"
    src.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n0,5,5\n1,0,5\n2,6,6\n")
    out = tmp_path / "z.jsonl"
    _assert_user_error(_run("import", src, "-o", out), f"{src}:3", "--drop-invalid")
    assert not out.exists()
    result = _run("import", src, "-o", out, "--drop-invalid")
    assert result.exit_code == 0, result.output
    assert "dropped 1 rows with 0 tokens (the first on line 3)" in result.output
    assert [r.request_id for r in read_requests(out)] == [0, 2]


def test_import_errors_are_one_message(tmp_path: Path) -> None:
    _assert_user_error(
        _run("import", tmp_path / "missing.csv", "-o", tmp_path / "o.jsonl"), "file not found"
    )
    _assert_user_error(
        _run("import", TRACES / "azure_conv_sample.csv", "-o", tmp_path / "o.txt"),
        "cannot tell the trace format",
    )
    _assert_user_error(
        _run("import", TRACES / "bad_unknown_key.jsonl", "-o", tmp_path / "o.jsonl"),
        "bad_unknown_key.jsonl:3: ouptut_tokens",
        "did you mean 'output_tokens'",
    )
    _assert_user_error(
        _run(
            "import",
            TRACES / "azure_conv_sample.csv",
            "-o",
            tmp_path / "o.jsonl",
            "--duration-s",
            "ten",
        ),
        "--duration-s",
    )
    assert list(tmp_path.iterdir()) == []  # nothing half-written


# ---------------------------------------------------------------- generate


def test_generate_is_byte_identical_for_a_seed(tmp_path: Path) -> None:
    args = (
        "generate",
        "--arrival",
        "gamma",
        "--rate",
        "300/min",
        "--cv",
        "2",
        "--duration",
        "2min",
        "--seed",
        "4",
    )
    first, _second = (
        _run(*args, "-o", tmp_path / "a.jsonl"),
        _run(*args, "-o", tmp_path / "b.jsonl"),
    )
    assert first.exit_code == 0, first.output
    assert "generated" in first.output
    assert "gamma arrivals, seed 4" in first.output
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    requests = read_requests(tmp_path / "a.jsonl")
    assert requests
    assert requests[-1].arrival_s < 120.0


def test_generate_diurnal_with_count_and_tenant(tmp_path: Path) -> None:
    out = tmp_path / "d.json"
    result = _run(
        "generate",
        "-o",
        out,
        "--arrival",
        "diurnal",
        "--rate",
        "2",
        "--period",
        "1h",
        "--peak-to-trough",
        "4",
        "--count",
        50,
        "--tenant",
        "web",
    )
    assert result.exit_code == 0, result.output
    requests = read_requests(out)
    assert len(requests) == 50
    assert {r.tenant for r in requests} == {"web"}


def test_generate_offline_queues_every_request_at_time_zero(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    result = _run("generate", "-o", out, "--arrival", "offline", "--count", 300, "--input-median", 1000,
                  "--input-sigma", 0, "--output-median", 200, "--output-sigma", 0)
    assert result.exit_code == 0, result.output
    assert "offline arrivals" in result.output
    requests = read_requests(out)
    assert len(requests) == 300
    assert {r.arrival_s for r in requests} == {0.0}
    assert {(r.input_tokens, r.output_tokens) for r in requests} == {(1000, 200)}
    assert [r.request_id for r in requests] == list(range(300))


def test_generate_with_an_empirical_lengths_file(tmp_path: Path) -> None:
    out = tmp_path / "e.jsonl"
    assert (
        _run(
            "generate", "-o", out, "--lengths", TRACES / "vidur_sample.csv", "--count", 200
        ).exit_code
        == 0
    )
    allowed = {
        (r.input_tokens, r.output_tokens) for r in import_requests(TRACES / "vidur_sample.csv")
    }
    assert {(r.input_tokens, r.output_tokens) for r in read_requests(out)} <= allowed


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--rate", "fast", "--count", "5"], "--rate: bad rate"),
        (["--rate", "0/s", "--count", "5"], "a rate > 0"),
        (["--duration", "600"], "--duration: expected a time with a unit"),
        ([], "--duration (e.g. '10min') or --count"),
        (["--cv", "3", "--count", "5"], "--cv: only used with --arrival gamma"),
        (
            ["--lengths", str(TRACES / "vidur_sample.csv"), "--input-median", "5", "--count", "5"],
            "--input-median: only used with --lengths lognormal",
        ),
        (["--arrival", "gamma", "--cv", "0", "--count", "5"], "cv must be"),
        (["--input-sigma", "-1", "--count", "5"], "input_sigma must be"),
        (["--lengths", "nope.csv", "--count", "5"], "nope.csv: file not found"),
        (["--tenant", "", "--count", "5"], "--tenant: empty tenant name"),
        (["--arrival", "offline"], "--count: offline arrivals all come at time 0"),
        (["--arrival", "offline", "--count", "5", "--duration", "1min"], "--duration: offline arrivals"),
        (["--arrival", "offline", "--count", "5", "--rate", "5/s"], "--rate: only used with --arrival poisson"),
    ],
)
def test_generate_user_errors(tmp_path: Path, args: list[str], fragment: str) -> None:
    _assert_user_error(_run("generate", "-o", tmp_path / "g.jsonl", *args), fragment)
    assert not (tmp_path / "g.jsonl").exists()


# ---------------------------------------------------------------- stats


def test_stats_table_and_json() -> None:
    table = _run("stats", TRACES / "mooncake_sample.jsonl")
    assert table.exit_code == 0, table.output
    assert "requests           40" in table.output
    assert "input tokens" in table.output
    assert "% reused" in table.output
    data = json.loads(_run("stats", TRACES / "azure_conv_sample.csv", "--json").output)
    assert data["count"] == 30
    assert data["format"] == "azure"
    assert data["span_s"] == pytest.approx(19.913927)
    assert data["input_tokens"]["max"] == max(
        r.input_tokens for r in import_requests(TRACES / "azure_conv_sample.csv")
    )


def test_stats_of_a_bad_trace() -> None:
    _assert_user_error(
        _run("stats", TRACES / "bad_decreasing.jsonl"), "bad_decreasing.jsonl:4: arrival_s"
    )


def test_help_shows_defaults() -> None:
    for command, default in (
        ("import", "[default: auto]"),
        ("generate", "[default: poisson]"),
        ("stats", "[default: auto]"),
    ):
        result = _run(command, "--help")
        assert result.exit_code == 0
        assert default in " ".join(result.output.split())
