"""Closed-loop clients: at most N requests in the system, each finish releases the next, and
throughput agrees with Little's law."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.io.scenario import load_scenario
from hwsim.report.summary import summarize
from hwsim.report.write import summary_text
from hwsim.sim.run import simulate
from hwsim.workload.request import Request

CLUSTER = """\
version: 1
kind: cluster
name: closed-loop-test
nodes: {system: DGX-H100, count: 1}
deployment:
  model: qwen3-30b-a3b
  pools:
    - name: main
      parallelism: {tp: 1}
      scheduler: {max_seqs: 64, max_batched_tokens: 4096, chunked_prefill: 1024}
"""


def requests(n, inp=512, out=64, *, late=False):
    # timestamps far in the future: a closed loop ignores them
    return [Request(request_id=i, arrival_s=1e6 + i if late else 0.0, input_tokens=inp, output_tokens=out)
            for i in range(n)]


@pytest.fixture(scope="module")
def sc(tmp_path_factory):
    path = tmp_path_factory.mktemp("closed") / "cluster.yaml"
    path.write_text(CLUSTER)
    return load_scenario(path)


def in_system(r, t):
    return int(np.sum((r["arrival_s"] <= t) & (r["finish_s"] > t)))


def test_at_most_n_in_the_system_and_finishes_release_the_next(sc):
    res = simulate(sc, requests(120, late=True), seed=0, concurrency=8)
    r = res.requests
    assert (r["status"] == 0).all() and len(r["status"]) == 120
    order = np.argsort(r["request_id"])
    arrivals, finishes = r["arrival_s"][order], r["finish_s"][order]
    assert np.all(arrivals[:8] == 0.0)            # N start at once, timestamps ignored
    assert arrivals.max() < 1e5
    # every later arrival coincides with a finish (no think time)
    assert all(np.isclose(finishes, a).any() for a in arrivals[8:])
    for t in np.linspace(0.0, float(finishes.max()), 50)[1:-1]:
        assert in_system(r, t) <= 8
    assert res.metadata == {"concurrency": 8}


def test_littles_law_and_more_clients_more_throughput(sc):
    runs = {}
    for n in (1, 4, 16):
        res = simulate(sc, requests(96), seed=0, concurrency=n)
        r = res.requests
        window = float(r["finish_s"].max())
        x = len(r["status"]) / window
        latency = float(np.mean(r["finish_s"] - r["arrival_s"]))
        assert x * latency == pytest.approx(n, rel=0.1)   # L = lambda W (edge effects: first and last wave)
        runs[n] = x
    assert runs[1] < runs[4] < runs[16]


def test_rejected_requests_are_replaced_and_max_requests_holds(sc):
    reqs = requests(10) + [Request(request_id=99, arrival_s=0.0, input_tokens=10_000_000, output_tokens=8)] \
        + requests(10)
    res = simulate(sc, reqs, seed=0, concurrency=4, max_requests=15)
    r = res.requests
    assert len(r["status"]) == 15
    assert int((r["status"] == 2).sum()) == 1 and int((r["status"] == 0).sum()) == 14


def test_summary_names_the_clients(sc):
    res = simulate(sc, requests(20), seed=0, concurrency=4)
    s = summarize(res, inputs={}, version="test")
    assert s["run"]["closed_loop_clients"] == 4
    assert "4 closed-loop clients" in summary_text(s)
    with pytest.raises(ValueError, match="concurrency"):
        simulate(sc, requests(2), concurrency=0)
