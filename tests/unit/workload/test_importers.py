"""Importers of public traces: hand-checked first rows, detection, failures, invalid rows."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pytest

from hwsim.errors import SpecError
from hwsim.workload.formats import azure_timestamp_ns
from hwsim.workload.importers import (
    FORMAT_CHOICES,
    IMPORTERS,
    ImportReport,
    detect_format,
    import_requests,
)
from hwsim.workload.trace import Request, write_requests


def _first(path: Path, n: int = 2, **kwargs: object) -> list[Request]:
    return list(import_requests(path, **kwargs))[:n]


def test_registry_lists_every_format() -> None:
    assert IMPORTERS.names() == ["azure", "burstgpt", "hwsim", "mooncake", "vidur"]
    assert FORMAT_CHOICES[0] == "auto"


# ---------------------------------------------------------------- each format


def test_azure_sample(traces_dir: Path) -> None:
    requests = list(import_requests(traces_dir / "azure_conv_sample.csv", "azure"))
    assert len(requests) == 30
    # 2023-11-16 18:15:46.6805900,374,44 then 18:15:50.9951690,396,109 (4.3145790 s later)
    assert requests[0] == Request(request_id=0, arrival_s=0.0, input_tokens=374, output_tokens=44)
    assert requests[1] == Request(
        request_id=1, arrival_s=4.314579, input_tokens=396, output_tokens=109
    )
    # last row 18:16:06.5945170,91,16
    assert requests[-1] == Request(
        request_id=29, arrival_s=19.913927, input_tokens=91, output_tokens=16
    )


def test_azure_timestamps_are_exact() -> None:
    base = azure_timestamp_ns("2023-11-16 18:15:46.6805900")
    expected = (
        int(dt.datetime(2023, 11, 16, 18, 15, 46, tzinfo=dt.UTC).timestamp()) * 10**9 + 680_590_000
    )
    assert base == expected
    assert azure_timestamp_ns("2023-11-16 18:15:46.6805901") - base == 100
    assert azure_timestamp_ns("2023-11-16T19:15:46.68059+01:00") == base
    assert azure_timestamp_ns("2023-11-16 18:15:46") == expected - 680_590_000
    for bad in ("2023-11-16", "16/11/2023 18:15:46", "2023-02-30 00:00:00", "2023-11-16 25:00:00"):
        with pytest.raises(ValueError, match="not a timestamp"):
            azure_timestamp_ns(bad)


def test_mooncake_sample(traces_dir: Path) -> None:
    requests = list(import_requests(traces_dir / "mooncake_sample.jsonl", "mooncake"))
    assert len(requests) == 40
    first = requests[0]
    assert (first.arrival_s, first.input_tokens, first.output_tokens) == (0.0, 6758, 500)
    assert first.prefix_blocks == tuple(range(14))
    assert first.block_tokens == 512
    # the last line: {"timestamp": 12000, "input_length": 2038, "output_length": 524, "hash_ids": [0, 972, 973, 974]}
    assert requests[-1] == Request(
        request_id=39,
        arrival_s=12.0,
        input_tokens=2038,
        output_tokens=524,
        prefix_blocks=(0, 972, 973, 974),
    )


def test_burstgpt_sample_skips_and_counts_failures(traces_dir: Path) -> None:
    report = ImportReport()
    requests = list(import_requests(traces_dir / "burstgpt_sample.csv", "burstgpt", report=report))
    assert (report.rows, report.skipped_failures, report.imported, len(requests)) == (24, 4, 20, 20)
    assert requests[0] == Request(
        request_id=0,
        arrival_s=0.0,
        input_tokens=472,
        output_tokens=18,
        tenant="ChatGPT/Conversation log",
    )
    # row 1 (45 s) failed; row 2 arrives at 118 s, 113 s after the first row
    assert requests[1] == Request(
        request_id=2,
        arrival_s=113.0,
        input_tokens=417,
        output_tokens=276,
        tenant="GPT-4/Conversation log",
    )


def test_vidur_sample_ignores_extra_columns(traces_dir: Path) -> None:
    requests = list(import_requests(traces_dir / "vidur_sample.csv", "vidur"))
    assert len(requests) == 20
    assert requests[1] == Request(
        request_id=1, arrival_s=4.314579, input_tokens=396, output_tokens=109
    )
    assert requests[-1] == Request(
        request_id=19, arrival_s=18.0, input_tokens=420, output_tokens=42
    )


def test_hwsim_format_passes_through(tmp_path: Path, traces_dir: Path) -> None:
    original = list(import_requests(traces_dir / "mooncake_sample.jsonl"))
    write_requests(tmp_path / "t.json", original)
    assert list(import_requests(tmp_path / "t.json")) == original


def test_gzip_sources(tmp_path: Path, traces_dir: Path) -> None:
    packed = tmp_path / "azure.csv.gz"
    packed.write_bytes(gzip.compress((traces_dir / "azure_conv_sample.csv").read_bytes()))
    assert list(import_requests(packed)) == list(
        import_requests(traces_dir / "azure_conv_sample.csv")
    )


# ---------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("azure_conv_sample.csv", "azure"),
        ("mooncake_sample.jsonl", "mooncake"),
        ("burstgpt_sample.csv", "burstgpt"),
        ("vidur_sample.csv", "vidur"),
        ("bad_zero_tokens.jsonl", "hwsim"),
    ],
)
def test_detect_format(traces_dir: Path, name: str, fmt: str) -> None:
    assert detect_format(traces_dir / name) == fmt


def test_detect_format_of_json_traces(tmp_path: Path) -> None:
    write_requests(tmp_path / "t.json", [])
    (tmp_path / "pretty.txt").write_text('[\n {"arrival_s": 0}\n]')
    assert detect_format(tmp_path / "t.json") == "hwsim"
    assert detect_format(tmp_path / "pretty.txt") == "hwsim"


def test_undetectable_format_lists_the_choices(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("when,prompt,answer\n1,2,3\n")
    with pytest.raises(SpecError, match="cannot detect") as err:
        list(import_requests(path))
    assert "azure, burstgpt, hwsim, mooncake, vidur" in str(err.value)
    assert err.value.found == "when,prompt,answer"


def test_unknown_format_name_suggests(traces_dir: Path) -> None:
    with pytest.raises(SpecError, match="did you mean 'azure'"):
        import_requests(traces_dir / "azure_conv_sample.csv", "azur")


# ---------------------------------------------------------------- bad rows


def _csv(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


AZURE_HEAD = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
ZERO_ROWS = AZURE_HEAD + (
    "2023-11-16 18:15:46.0,374,44\n2023-11-16 18:15:47.0,0,9\n2023-11-16 18:15:48.0,8,0\n2023-11-16 18:15:49.0,5,5\n"
)


def test_zero_token_rows_are_an_error_naming_the_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="--drop-invalid") as err:
        list(import_requests(_csv(tmp_path, ZERO_ROWS)))
    assert err.value.line == 3


def test_drop_invalid_skips_and_counts(tmp_path: Path) -> None:
    report = ImportReport()
    requests = list(import_requests(_csv(tmp_path, ZERO_ROWS), drop_invalid=True, report=report))
    assert [r.request_id for r in requests] == [0, 3]
    assert requests[1].arrival_s == 3.0
    assert (report.dropped_invalid, report.first_dropped_line) == (2, 3)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            AZURE_HEAD + "2023-11-16 18:15:46.0,374,44\n2023-11-16 18:15:45.0,3,4\n",
            3,
            "times decrease",
        ),
        (AZURE_HEAD + "yesterday,374,44\n", 2, "bad timestamp"),
        (AZURE_HEAD + "2023-11-16 18:15:46.0,3.5,44\n", 2, "bad token count"),
        (AZURE_HEAD + "2023-11-16 18:15:46.0,-3,44\n", 2, "bad token count"),
        (AZURE_HEAD + "2023-11-16 18:15:46.0,3\n", 2, "short row"),
        ("TIMESTAMP,Context Tokens,GeneratedTokens\n", 1, "did you mean 'Context Tokens'"),
    ],
)
def test_bad_azure_rows(tmp_path: Path, text: str, line: int, message: str) -> None:
    with pytest.raises(SpecError, match=message) as err:
        list(import_requests(_csv(tmp_path, text), "azure"))
    assert err.value.line == line


def test_integral_float_token_counts_are_accepted(tmp_path: Path) -> None:
    path = _csv(tmp_path, "arrived_at,num_prefill_tokens,num_decode_tokens\n0.5,12.0,3\n")
    assert list(import_requests(path)) == [
        Request(request_id=0, arrival_s=0.0, input_tokens=12, output_tokens=3)
    ]


@pytest.mark.parametrize(
    ("line_text", "message"),
    [
        ('{"timestamp": 0, "input_length": 10}', "missing field 'output_length'"),
        ('{"timestamp": -5, "input_length": 10, "output_length": 1}', "bad timestamp"),
        (
            '{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": ["a"]}',
            "bad hash_ids",
        ),
        (
            '{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [1, 2]}',
            "prefix blocks",
        ),
        ('{"timestamp": 0, "input_length": 10, "output_length": 1', "malformed JSON"),
    ],
)
def test_bad_mooncake_rows(tmp_path: Path, line_text: str, message: str) -> None:
    good = '{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [7]}\n'
    path = _csv(tmp_path, good + line_text + "\n", "t.jsonl")
    with pytest.raises(SpecError, match=message) as err:
        list(import_requests(path, "mooncake"))
    assert err.value.line == 2


# ---------------------------------------------------------------- window and limit


def test_window_and_limit(traces_dir: Path) -> None:
    path = traces_dir / "azure_conv_sample.csv"
    everything = list(import_requests(path))
    inside = list(import_requests(path, start_s=5.0, duration_s=5.0))
    expected = [r for r in everything if 5.0 <= r.arrival_s < 10.0]
    assert [r.request_id for r in inside] == [r.request_id for r in expected]
    assert [r.arrival_s for r in inside] == pytest.approx([r.arrival_s - 5.0 for r in expected])
    report = ImportReport()
    assert len(list(import_requests(path, limit=3, report=report))) == 3
    assert report.imported == 3
    assert report.rows <= 4


# ---------------------------------------------------------------- full shared traces


@pytest.mark.parametrize(
    ("name", "count", "span_s"),
    [
        ("AzureLLMInferenceTrace_conv.csv", 19_366, 3501.721937),
        ("AzureLLMInferenceTrace_code.csv", 8_819, None),
    ],
)
def test_full_azure_traces(shared_data: Path, name: str, count: int, span_s: float | None) -> None:
    path = shared_data / "azure-llm-2023" / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    report = ImportReport()
    last = None
    for last in import_requests(path, report=report):  # noqa: B007 - we want the last one
        pass
    assert report.imported == count
    assert report.dropped_invalid == 0
    assert last is not None
    assert last.request_id == count - 1
    if span_s is not None:
        assert last.arrival_s == pytest.approx(span_s)


@pytest.mark.parametrize("name", ["t.jsonl", "t.json"])
def test_native_traces_under_any_name(tmp_path: Path, traces_dir: Path, name: str) -> None:
    original = list(import_requests(traces_dir / "vidur_sample.csv"))
    write_requests(tmp_path / name, original)
    renamed = (tmp_path / name).rename(tmp_path / "trace.txt")
    assert detect_format(renamed) == "hwsim"
    assert list(import_requests(renamed)) == original
