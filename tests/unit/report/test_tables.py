"""Request tables (CSV and Parquet round trips), the time series, and atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from hwsim.errors import SpecError
from hwsim.report.tables import atomic_path, requests_table, timeseries, write_csv, write_requests

from .conftest import make_result


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=0, atol=0, equal_nan=True)
    else:
        assert a.tolist() == b.tolist()


def test_requests_table_derived_columns(result):
    t = requests_table(result)
    assert t["ttft_s"][:3].tolist() == pytest.approx([0.5, 0.2, 1.0])
    assert np.isnan(t["tpot_s"][1]) and t["tpot_s"][0] == pytest.approx(0.5)
    assert np.isnan(t["e2e_s"][3])  # unfinished
    assert t["status_name"].tolist() == ["finished"] * 3 + ["unfinished", "rejected"]
    assert t["rejection_reason"].tolist()[:4] == [""] * 4 and t["rejection_reason"][4].startswith("needs")


@pytest.mark.parametrize("name", ["requests.csv", "requests.csv.gz"])
def test_csv_round_trip(result, tmp_path, name):
    path = write_requests(result, tmp_path / name)
    back = pacsv.read_csv(path).to_pydict()
    for k, v in requests_table(result).items():
        if v.dtype == object:
            assert [x or "" for x in back[k]] == v.tolist()
        else:
            _same([np.nan if x is None else x for x in back[k]], v)


def test_parquet_round_trip(result, tmp_path):
    path = write_requests(result, tmp_path / "requests.parquet")
    back = pq.read_table(path)
    table = requests_table(result)
    assert back.column_names == list(table)
    assert back.schema.field("request_id").type == "int64"
    assert back.schema.field("status").type == "int8"
    for k, v in table.items():
        got = back.column(k).to_pylist()
        if k == "rejection_reason":
            assert [x or "" for x in got] == v.tolist() and got[0] is None
        elif v.dtype == object:
            assert got == v.tolist()
        else:
            _same(got, v)


def test_unknown_suffix_is_an_input_error(result, tmp_path):
    with pytest.raises(SpecError, match="unknown requests table format"):
        write_requests(result, tmp_path / "requests.xlsx")


def test_timeseries_hand_computed(result):
    ts = timeseries(result, 1.0)
    assert ts["time_s"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    # first tokens at 0.5, 1.2, 3.0, 4.5; the rest spread up to finish (or the end, 5 s)
    assert ts["output_tokens_per_s"] == pytest.approx([2, 3, 1, 3, 4])
    assert ts["input_tokens_per_s"] == pytest.approx([100, 200, 50, 5, 5])
    assert ts["running_seqs"].tolist() == [1, 1, 1, 2, 2]   # replica 0 carried through bucket 2
    assert ts["waiting_seqs"].tolist() == [0, 0, 0, 1, 0]
    assert ts["kv_use_fraction"] == pytest.approx(np.array([7, 7, 7, 50, 20]) / 200)
    power = ts["power_w_per_device"]
    assert power[[0, 1, 3, 4]] == pytest.approx([500, (400 + 600 * 0.2) / 1.2, 450, 300])
    assert np.isnan(power[2])


@pytest.mark.parametrize("interval_s", [0.05, 0.3, 1.0, 7.0])
def test_timeseries_conserves_tokens(interval_s):
    rng = np.random.default_rng(1)
    n = 200
    arrival = np.sort(rng.random(n) * 20)
    first = arrival + rng.random(n)
    finish = first + rng.random(n) * 5 * (rng.random(n) < 0.9)
    gen = rng.integers(1, 50, n)
    status = np.where(rng.random(n) < 0.8, 0, 1)
    finish = np.where(status == 0, finish, np.nan)
    reqs = [(i, 0, arrival[i], arrival[i], first[i], finish[i], 10, gen[i], gen[i], 0, 0, status[i]) for i in range(n)]
    start = np.sort(rng.random(300) * 25)
    steps = [(0, 0, start[i], 0.01 + rng.random() * 0.1, rng.integers(0, 500), 3, 1, 0, 5, 1.0, 300.0)
             for i in range(300)]
    res = make_result(requests=reqs, steps=steps, rejections=(), sim_time_s=26.0)
    ts = timeseries(res, interval_s)
    assert (ts["output_tokens_per_s"] * interval_s).sum() == pytest.approx(gen.sum())
    assert (ts["input_tokens_per_s"] * interval_s).sum() == pytest.approx(sum(s[4] for s in steps))
    assert (ts["output_tokens_per_s"] >= -1e-9).all()


def test_timeseries_rejects_bad_interval(result):
    with pytest.raises(SpecError):
        timeseries(result, 0.0)


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch, result):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def half_write():
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        half_write()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]

    import pyarrow.parquet

    def boom(table, where, **kw):
        Path(where).write_bytes(b"PAR1 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pyarrow.parquet, "write_table", boom)
    with pytest.raises(SpecError, match="No space left"):
        write_requests(result, tmp_path / "requests.parquet")
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_failed_csv_write_leaves_no_file(tmp_path):
    with pytest.raises(ValueError):  # ragged columns fail while writing rows
        write_csv({"a": np.arange(3), "b": np.arange(2)}, tmp_path / "t.csv")
    assert list(tmp_path.iterdir()) == []
