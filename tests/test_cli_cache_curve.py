"""``hwsim experts cache-curve``: table, csv and png from a trace file or a routing model; exit 2
with one clear line on bad input."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from click.testing import CliRunner

from hwsim.cli import main
from hwsim.cli.experts_cache import parse_sizes
from hwsim.errors import SpecError
from hwsim.perf.expert_cache import replay_trace
from hwsim.workload.routing_trace import RoutingTrace, write_routing_trace


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def trace_file(tmp_path):
    rng = np.random.default_rng(5)
    ids = np.argsort(rng.random((400, 3, 16)) ** np.linspace(3, 0.5, 16), axis=2)[:, :, :2]
    path = tmp_path / "routing.npz"
    write_routing_trace(path, RoutingTrace(ids=ids, sequence_starts=np.array([0, 200]), num_experts=16))
    return path, ids


def test_cache_curve_writes_csv_and_png(trace_file, tmp_path):
    path, ids = trace_file
    out = tmp_path / "out"
    res = run("experts", "cache-curve", str(path), "--sizes", "1k,2k,8", "--policies", "lru,belady,segment",
              "-o", str(out), "--plot")
    assert res.exit_code == 0, res.output
    assert "Belady" in res.output and "2k" in res.output
    rows = list(csv.DictReader((out / "cache_curve.csv").open()))
    assert [(r["cache_experts"], r["policy"]) for r in rows][:3] == [("2", "lru"), ("2", "belady"), ("2", "segment")]
    assert len(rows) == 3 * 3                       # sizes 2, 4, 8 (1k, 2k with top-2; 8)
    lru4 = next(r for r in rows if r["cache_experts"] == "4" and r["policy"] == "lru")
    want = replay_trace(ids, 16, 4, "lru")
    assert int(lru4["hits"]) == want.hits.sum() and float(lru4["hit_rate"]) == pytest.approx(want.hit_rate)
    assert (out / "cache_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp"))              # written atomically, nothing left behind


def test_cache_curve_from_a_routing_model(tmp_path):
    res = run("experts", "cache-curve", "--model", "mixtral-8x7b", "--routing", "zipf,skew=1.0,locality.reuse=0.5",
              "--tokens", "300", "--layers", "2", "--sizes", "1k,2k,4k", "--policies", "lru,static",
              "--scope", "device", "-o", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert "locality.reuse=0.5" in res.output and "300 tokens x 2 MoE layers x top-2 of 8" in res.output
    rows = list(csv.DictReader((tmp_path / "cache_curve.csv").open()))
    assert {r["scope"] for r in rows} == {"device"} and len(rows) == 6
    rates = [float(r["hit_rate"]) for r in rows if r["policy"] == "lru"]
    # 2 experts for two layers of top-2: each layer evicts the other's; 8 hold every expert
    assert rates[0] == 0.0 < rates[1] < rates[2] <= 1.0


@pytest.mark.parametrize(("args", "message"), [
    (["--sizes", "8"], "routing trace file"),
    (["--sizes", "two"], "cache size"),
    (["--sizes", "0.7k"], "whole number"),
    (["--sizes", "8", "--policies", "lru,mru"], "unknown cache policy"),
    (["--sizes", "8", "--plot"], "-o"),
    (["--sizes", "8", "--warmup-tokens", "400"], "warm-up"),
    (["--sizes", "8", "--layers", "9"], "MoE layers"),
])
def test_cache_curve_bad_options_exit_2(trace_file, args, message):
    path, _ = trace_file
    argv = ["experts", "cache-curve", *([] if args[1] == "8" and message == "routing trace file" else [str(path)]), *args]
    res = run(*argv)
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output


def test_cache_curve_bad_file_exits_2(tmp_path):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"not a zip archive")
    res = run("experts", "cache-curve", str(bad), "--sizes", "8")
    assert res.exit_code == 2 and "broken.npz" in res.output
    wrong = tmp_path / "counts.npz"
    np.savez(wrong, counts=np.ones((2, 4)))
    res = run("experts", "cache-curve", str(wrong), "--sizes", "8")
    assert res.exit_code == 2 and "ids" in res.output
    res = run("experts", "cache-curve", str(tmp_path / "missing.npz"), "--sizes", "8")
    assert res.exit_code == 2 and "not found" in res.output


def test_parse_sizes():
    assert parse_sizes("2k,8, 1k ,64", 8) == (8, 16, 64)
    assert parse_sizes("1.5k", 4) == (6,)
    with pytest.raises(SpecError):
        parse_sizes("-1", 8)
