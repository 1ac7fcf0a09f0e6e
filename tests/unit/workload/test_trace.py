"""The hwsim trace format: Request, record checks, streaming readers, atomic writer."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.errors import SpecError
from hwsim.workload import jsonstream
from hwsim.workload.trace import (
    Request,
    iter_requests,
    read_requests,
    request_to_record,
    trace_format,
    window,
    write_requests,
)

SCHEMA = Path(__file__).resolve().parents[3] / "hwsim" / "io" / "schemas" / "v1" / "trace.json"


def _requests() -> list[Request]:
    return [
        Request(
            request_id=0, arrival_s=0.0, input_tokens=1024, output_tokens=211, prefix_blocks=(0, 17)
        ),
        Request(
            request_id=7,
            arrival_s=0.183,
            input_tokens=3071,
            output_tokens=96,
            tenant="chat",
            priority=2,
        ),
        Request(
            request_id=8,
            arrival_s=0.183,
            input_tokens=100,
            output_tokens=1,
            prefix_blocks=(5,),
            block_tokens=64,
        ),
        Request(request_id=9, arrival_s=12.5, input_tokens=1, output_tokens=4096, priority=-1),
    ]


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- Request


def test_request_coerces_and_derives() -> None:
    r = Request(
        request_id=3, arrival_s=2, input_tokens=1025, output_tokens=5, prefix_blocks=[1, 2, 3]
    )
    assert r.arrival_s == 2.0
    assert isinstance(r.arrival_s, float)
    assert r.prefix_blocks == (1, 2, 3)
    assert r.num_prompt_blocks == 3
    assert r.total_tokens == 1030


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"arrival_s": -0.1}, "arrival_s"),
        ({"arrival_s": float("nan")}, "arrival_s"),
        ({"input_tokens": 0}, "input_tokens"),
        ({"output_tokens": 0}, "output_tokens"),
        ({"request_id": -1}, "request_id"),
        ({"input_tokens": True}, "integer"),
        ({"output_tokens": 2.5}, "integer"),
        ({"prefix_blocks": (1, 2, 3)}, "prefix blocks"),
        ({"tenant": ""}, "tenant"),
    ],
)
def test_request_rejects_bad_fields(changes: dict, message: str) -> None:
    fields = {"request_id": 0, "arrival_s": 0.0, "input_tokens": 1000, "output_tokens": 1} | changes
    with pytest.raises(ValueError, match=message):
        Request(**fields)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", ["t.jsonl", "t.json", "t.jsonl.gz", "t.json.gz", "t.ndjson"])
def test_write_then_read_gives_identical_requests(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    assert write_requests(path, iter(_requests())) == 4
    assert read_requests(path) == _requests()


def test_writing_is_deterministic_byte_for_byte(tmp_path: Path) -> None:
    for name in ("a.jsonl.gz", "b.jsonl.gz"):
        write_requests(tmp_path / name, _requests())
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()


def test_empty_trace_round_trips(tmp_path: Path) -> None:
    for name in ("e.jsonl", "e.json"):
        assert write_requests(tmp_path / name, []) == 0
        assert read_requests(tmp_path / name) == []


def test_jsonl_record_shape(tmp_path: Path) -> None:
    write_requests(tmp_path / "t.jsonl", _requests()[:1])
    line = (tmp_path / "t.jsonl").read_text().splitlines()[0]
    assert json.loads(line) == {
        "id": 0,
        "arrival_s": 0.0,
        "input_tokens": 1024,
        "output_tokens": 211,
        "prefix_blocks": [0, 17],
    }


def test_written_records_match_the_json_schema(tmp_path: Path) -> None:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    write_requests(tmp_path / "t.jsonl", _requests())
    for line in (tmp_path / "t.jsonl").read_text().splitlines():
        validator.validate(json.loads(line))
    bad = {"arrival_s": 0.0, "input_tokens": 0, "output_tokens": 1, "ouptut_tokens": 3}
    assert len(list(validator.iter_errors(bad))) == 2


def test_ids_default_to_the_record_index(tmp_path: Path) -> None:
    path = _write_text(
        tmp_path / "t.jsonl",
        '{"arrival_s": 0, "input_tokens": 1, "output_tokens": 1}\n\n'
        '{"arrival_s": 1, "input_tokens": 2, "output_tokens": 3}\n',
    )
    assert [r.request_id for r in iter_requests(path)] == [0, 1]


def test_json_forms_and_file_level_block_size(tmp_path: Path) -> None:
    array = _write_text(
        tmp_path / "a.json", '[{"arrival_s": 0, "input_tokens": 100, "output_tokens": 1}]'
    )
    assert read_requests(array)[0].block_tokens == 512
    obj = _write_text(
        tmp_path / "o.json",
        '{"version": 1, "block_tokens": 16, "requests": [\n'
        '{"arrival_s": 0, "input_tokens": 40, "output_tokens": 1, "prefix_blocks": [1, 2, 3]},\n'
        '{"arrival_s": 1, "input_tokens": 40, "output_tokens": 1, "block_tokens": 64}]}',
    )
    assert [r.block_tokens for r in read_requests(obj)] == [16, 64]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=1e6, allow_nan=False),
            st.integers(1, 200_000),
            st.integers(1, 50_000),
            st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4),
            st.sampled_from([None, "a", "tenant-β"]),
            st.integers(-5, 5),
        ),
        max_size=20,
    ),
    st.sampled_from(["t.jsonl", "t.json"]),
)
def test_round_trip_property(
    tmp_path_factory: pytest.TempPathFactory, rows: list, name: str
) -> None:
    rows = sorted(rows, key=lambda row: row[0])
    requests = [
        Request(
            request_id=i,
            arrival_s=t,
            input_tokens=max(n_in, 512 * len(blocks)),
            output_tokens=n_out,
            prefix_blocks=tuple(blocks),
            tenant=tenant,
            priority=prio,
        )
        for i, (t, n_in, n_out, blocks, tenant, prio) in enumerate(rows)
    ]
    path = tmp_path_factory.mktemp("rt") / name
    write_requests(path, requests)
    assert read_requests(path) == requests


# ---------------------------------------------------------------- streaming


def test_json_reader_streams_across_tiny_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.json"
    write_requests(path, _requests())
    monkeypatch.setattr(jsonstream, "_CHUNK_CHARS", 3)
    assert read_requests(path) == _requests()


@pytest.mark.parametrize("chunk", [2, 65536])
def test_readers_are_lazy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(jsonstream, "_CHUNK_CHARS", chunk)
    good = '{"arrival_s": 0, "input_tokens": 1, "output_tokens": 1}'
    path = _write_text(tmp_path / "t.json", "[" + good + ",\n" + good + ",\n{oops")
    stream = iter_requests(path)
    assert next(stream).request_id == 0  # the broken tail has not been read yet
    assert next(stream).request_id == 1
    with pytest.raises(SpecError) as err:
        next(stream)
    assert err.value.line == 3


def test_gzip_input(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"arrival_s": 1.5, "input_tokens": 2, "output_tokens": 3}\n'))
    assert read_requests(path)[0].arrival_s == 1.5


# ---------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    ("name", "line", "path", "message"),
    [
        ("bad_decreasing.jsonl", 4, "arrival_s", "must not decrease"),
        ("bad_zero_tokens.jsonl", 2, "output_tokens", "bad output tokens"),
        ("bad_unknown_key.jsonl", 3, "ouptut_tokens", "did you mean 'output_tokens'"),
        ("bad_malformed.jsonl", 2, "", "malformed JSON"),
    ],
)
def test_bad_fixtures_name_the_line_and_field(
    traces_dir: Path, name: str, line: int, path: str, message: str
) -> None:
    with pytest.raises(SpecError) as err:
        list(iter_requests(traces_dir / name))
    assert err.value.line == line
    assert err.value.path == path
    assert err.value.file == str(traces_dir / name)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("record", "path", "found"),
    [
        ('{"input_tokens": 1, "output_tokens": 1}', "arrival_s", None),
        ('{"arrival_s": -1, "input_tokens": 1, "output_tokens": 1}', "arrival_s", -1),
        ('{"arrival_s": NaN, "input_tokens": 1, "output_tokens": 1}', "arrival_s", None),
        ('{"arrival_s": "1 s", "input_tokens": 1, "output_tokens": 1}', "arrival_s", "1 s"),
        ('{"arrival_s": 0, "input_tokens": 1.5, "output_tokens": 1}', "input_tokens", 1.5),
        ('{"arrival_s": 0, "input_tokens": "12", "output_tokens": 1}', "input_tokens", "12"),
        ('{"arrival_s": 0, "input_tokens": true, "output_tokens": 1}', "input_tokens", True),
        ('{"arrival_s": 0, "input_tokens": 1, "output_tokens": -3}', "output_tokens", -3),
        ('{"arrival_s": 0, "input_tokens": 1, "output_tokens": 1, "id": -2}', "id", -2),
        (
            '{"arrival_s": 0, "input_tokens": 1, "output_tokens": 1, "prefix_blocks": [1, "x"]}',
            "prefix_blocks[1]",
            "x",
        ),
        (
            '{"arrival_s": 0, "input_tokens": 513, "output_tokens": 1, "prefix_blocks": [1, 2, 3]}',
            "prefix_blocks",
            None,
        ),
        (
            '{"arrival_s": 0, "input_tokens": 1, "output_tokens": 1, "block_tokens": 0}',
            "block_tokens",
            0,
        ),
        ('{"arrival_s": 0, "input_tokens": 1, "output_tokens": 1, "tenant": 5}', "tenant", 5),
        (
            '{"arrival_s": 0, "input_tokens": 1, "output_tokens": 1, "priority": 0.5}',
            "priority",
            0.5,
        ),
        ("[1, 2]", "", [1, 2]),
    ],
)
def test_bad_records_in_a_json_trace(tmp_path: Path, record: str, path: str, found: object) -> None:
    good = '{"arrival_s": 0, "input_tokens": 1, "output_tokens": 1}'
    trace = _write_text(
        tmp_path / "t.json", '{"version": 1,\n "requests": [\n' + good + ",\n" + record + "]}"
    )
    with pytest.raises(SpecError) as err:
        list(iter_requests(trace))
    assert err.value.path == ("requests[1]." + path if path else "requests[1]")
    assert err.value.line == 4
    if found is not None:
        assert err.value.found == found


@pytest.mark.parametrize(
    ("text", "message", "path"),
    [
        ('{"version": 2, "requests": []}', "unsupported trace version", "version"),
        ('{"requests": []}', "missing required field 'version'", "version"),
        ('{"version": 1}', "missing required field 'requests'", "requests"),
        ('{"version": 1, "request": []}', "did you mean 'requests'", "request"),
        (
            '{"version": 1, "requests": [], "block_tokens": 16}',
            "must come before 'requests'",
            "block_tokens",
        ),
        ('{"version": 1, "block_tokens": 0, "requests": []}', "bad block size", "block_tokens"),
        ('{"version": 1, "requests": [], "requests": []}', "duplicate field", ""),
        ('[{"arrival_s": 0, "input_tokens": 1, "output_tokens": 1},]', "malformed JSON", ""),
        (
            '[{"arrival_s": 0, "input_tokens": 1, "output_tokens": 1} {}]',
            r"malformed JSON after \[0\]",
            "",
        ),
        ("[]\n[]", "extra data", ""),
        ("", "not a JSON trace", ""),
        ('"hello"', "not a JSON trace", ""),
        ('[{"arrival_s": 0, "input_tokens": 1', "malformed JSON", ""),
    ],
)
def test_bad_json_containers(tmp_path: Path, text: str, message: str, path: str) -> None:
    with pytest.raises(SpecError, match=message) as err:
        list(iter_requests(_write_text(tmp_path / "t.json", text)))
    assert err.value.path == path


def test_array_form_paths_and_lines(tmp_path: Path) -> None:
    text = '[\n  {"arrival_s": 0, "input_tokens": 1, "output_tokens": 1},\n  {"arrival_s": 0, "input_tokens": 0,\n "output_tokens": 1}\n]'
    with pytest.raises(SpecError) as err:
        list(iter_requests(_write_text(tmp_path / "t.json", text)))
    assert (err.value.path, err.value.line) == ("[1].input_tokens", 3)


def test_decreasing_arrivals_in_json(tmp_path: Path) -> None:
    text = '[{"arrival_s": 2, "input_tokens": 1, "output_tokens": 1},\n{"arrival_s": 1, "input_tokens": 1, "output_tokens": 1}]'
    with pytest.raises(SpecError, match="must not decrease") as err:
        list(iter_requests(_write_text(tmp_path / "t.json", text)))
    assert (err.value.path, err.value.line, err.value.found) == ("[1].arrival_s", 2, 1.0)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("t.csv", b"", "cannot tell the trace format"),
        ("missing.jsonl", None, "file not found"),
        ("t.jsonl", b"\xff\xfe{}", "not UTF-8"),
        ("t.jsonl.gz", b"not gzip", "gzip"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: bytes | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SpecError, match=message):
        list(iter_requests(path))


def test_trace_format_by_suffix() -> None:
    assert trace_format("a/b.JSONL") == "jsonl"
    assert trace_format("b.json.gz") == "json"
    with pytest.raises(SpecError, match="cannot tell"):
        trace_format("b.yaml")


# ---------------------------------------------------------------- writing


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = _write_text(tmp_path / "t.jsonl", "old\n")
    backwards = [_requests()[3], _requests()[0]]
    with pytest.raises(SpecError, match="decrease") as err:
        write_requests(path, backwards)
    assert err.value.path == "[1].arrival_s"
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.jsonl"]


def test_failed_json_write_names_the_request_path(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        write_requests(tmp_path / "t.json", [_requests()[3], _requests()[0]])
    assert err.value.path == "requests[1].arrival_s"
    assert list(tmp_path.iterdir()) == []


def test_writer_creates_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "t.jsonl"
    write_requests(path, _requests())
    assert read_requests(path) == _requests()


def test_record_leaves_out_defaults() -> None:
    assert request_to_record(_requests()[3]) == {
        "id": 9,
        "arrival_s": 12.5,
        "input_tokens": 1,
        "output_tokens": 4096,
        "priority": -1,
    }
    assert request_to_record(_requests()[2])["block_tokens"] == 64


# ---------------------------------------------------------------- window


def test_window_shifts_and_stops() -> None:
    requests = _requests()
    kept = list(window(requests, start_s=0.1, duration_s=1.0))
    assert [r.request_id for r in kept] == [7, 8]
    assert kept[0].arrival_s == pytest.approx(0.083)
    assert [r.request_id for r in window(requests, limit=2)] == [0, 7]
    assert list(window(requests, limit=0)) == []


def test_window_rejects_negative_bounds() -> None:
    with pytest.raises(SpecError, match="bad window"):
        window(_requests(), start_s=-1)
