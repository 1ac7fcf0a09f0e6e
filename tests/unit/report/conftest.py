"""A hand-built SimResult with numbers small enough to check by hand (see each test)."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.sim.metrics import REQUEST_COLUMNS, STEP_COLUMNS, PoolInfo, Rejection, SimResult

NAN = float("nan")

# request_id, replica, arrival, first_scheduled, first_token, finish, input, output, generated,
# cached, preemptions, status
REQUESTS = [
    (0, 0, 0.0, 0.1, 0.5, 2.5, 100, 5, 5, 0, 0, 0),     # TTFT 0.5, TPOT 2.0/4 = 0.5, E2E 2.5
    (1, 1, 1.0, 1.0, 1.2, 1.2, 200, 1, 1, 0, 0, 0),     # TTFT 0.2, no TPOT (one token)
    (2, 0, 2.0, 2.5, 3.0, 4.0, 50, 3, 3, 0, 1, 0),      # TTFT 1.0, TPOT 1.0/2 = 0.5, preempted once
    (3, -1, 3.0, 3.5, 4.5, NAN, 10, 10, 4, 0, 0, 1),    # unfinished, 4 tokens so far
    (4, -1, 3.5, NAN, NAN, NAN, 9999, 10, 0, 0, 0, 2),  # rejected
]
# replica, pool, start, duration, prefill_tokens, decode_seqs, running, waiting, kv_blocks, imbalance, power
STEPS = [
    (0, 0, 0.1, 0.4, 100, 0, 1, 0, 7, 1.5, 500.0),
    (0, 0, 0.5, 1.0, 0, 1, 1, 0, 7, 1.2, 400.0),
    (1, 0, 1.0, 0.2, 200, 0, 0, 0, 0, 2.0, 600.0),
    (0, 0, 2.5, 0.5, 50, 2, 2, 1, 50, 1.0, 450.0),
    (0, 0, 3.5, 1.0, 10, 3, 2, 0, 20, 1.1, 300.0),
]
POOL = PoolInfo(
    name="main", role="unified", replicas=2, devices_per_replica=4, device="H100-SXM",
    kv_blocks_per_replica=100, kv_block_tokens=16, hbm_bytes_per_device=80e9,
    weights_bytes_per_device=40e9, usd_per_s=0.01, idle_power_w=100.0,
)


def columns(rows: list[tuple], schema: dict[str, str]) -> dict[str, np.ndarray]:
    return {k: np.array([r[i] for r in rows], dtype=t).reshape(-1) for i, (k, t) in enumerate(schema.items())}


def make_result(requests=REQUESTS, steps=STEPS, pools=(POOL,), **kw) -> SimResult:
    args = dict(
        requests=columns(list(requests), REQUEST_COLUMNS), steps=columns(list(steps), STEP_COLUMNS),
        pools=tuple(pools), sim_time_s=5.0, wall_time_s=0.5, events=100, seed=7,
        rejections=(Rejection(request_id=4, reason="needs 10009 tokens; the context window is 4096"),),
        expert_load=np.array([[1, 1, 1, 1], [4, 0, 0, 0]], dtype=np.int64),
        link_bytes={("gpu0", "gpu1"): 2e9, ("gpu1", "gpu0"): 5e8, ("nic0", "sw0"): 1e9},
        comm_fraction=0.25,
    )
    args.update(kw)
    return SimResult(**args)


@pytest.fixture
def result() -> SimResult:
    return make_result()
