"""Replay the TensorRT-LLM perf-overview rows as offline runs in the serving simulator.

    python validation/offline_runs.py                 # every perf-overview row of validation/cases.yaml
    python validation/offline_runs.py --match qwen3   # the rows whose case id contains 'qwen3'

`hwsim validate` replays these rows in the serving simulator, as trtllm-bench runs them: a
finite dataset (the page's request count, fixed ISL/OSL) queued at once, with trtllm-bench's
heuristic batch and token limits and KV reserved to completion; the metric is its output tokens
over the whole run. This script sets the closed-form steady state (`hwsim estimate` at the same
limits) beside that replay, so the two hwsim answers can be compared with the measurement: where
they agree, the gap is in the cost of a step; where they differ, in the run's shape (waves,
the first wave's admission). It takes a few seconds per row and is not part of the test run.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from hwsim.io.scenario import load_scenario
from hwsim.perf.estimate import estimate
from hwsim.validate.endtoend import read_index, replay, served_metrics
from hwsim.validate.shared import SharedData, published_entry
from hwsim.validate.trtllm_bench import with_bench_limits


def offline_output_tokens_per_s(scenario: Any, input_tokens: int, output_tokens: int, requests: int,
                                seed: int = 0) -> float:
    """Output tokens per second of ``requests`` equal requests queued at time 0, to the last token
    (the validation's offline replay)."""
    q, window = replay(scenario, {"input_tokens": input_tokens, "output_tokens": output_tokens,
                                  "requests": requests, "seed": seed})
    done = q["status"] == 0
    if not done.all():
        raise RuntimeError(f"{int((~done).sum())} of {requests} requests did not finish")
    return served_metrics(q, window_s=window)["output_tokens_per_s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--match", default="", help="only case ids containing this text")
    args = parser.parse_args(argv)
    folder, entries = read_index()
    shared = SharedData.locate()
    sys.stdout.write(f"{'case':42s} {'row':24s} {'measured':>9s} {'steady':>8s} {'offline':>8s}  seconds\n")
    for e in entries:
        cid = str(e["id"])
        if not cid.startswith("trtllm-perf-overview") or "missing" in e or args.match not in cid:
            continue
        w = e["workload"]
        inp, out, n = int(w["input_tokens"]), int(w["output_tokens"]), int(w["requests"])
        s = with_bench_limits(load_scenario(folder / str(e["scenario"])), input_tokens=inp, output_tokens=out)
        steady = estimate(s.cluster, s.model, s.deployment, input_tokens=inp, output_tokens=out,
                          batch=n).output_tokens_per_s
        t0 = time.perf_counter()
        offline = offline_output_tokens_per_s(s, inp, out, n)
        for m in e.get("metrics") or ():
            measured = float(published_entry(shared.case(cid), str(m["published"]))["value"])
            sys.stdout.write(f"{cid:42s} {m['published']:24s} {measured:9.0f} {steady / measured - 1:+8.1%} "
                             f"{offline / measured - 1:+8.1%}  {time.perf_counter() - t0:5.1f}\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
