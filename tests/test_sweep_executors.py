"""Sweep executors: a configuration that kills its worker process is recorded, the rest still run."""

from __future__ import annotations

import os

from hwsim.sweep.executors import LOST_MESSAGE, ProcessExecutor, SerialExecutor


def doubling_or_dying(job, batch):
    """A task: rows of ``job * 2`` per item, except that item 'boom' kills the worker process."""
    rows = []
    for item in batch:
        if item == "boom":
            os._exit(3)
        rows.append({"key": item, "value": job * 2})
    return rows


def lost(items, message):
    return [{"key": item, "value": None, "lost": message} for item in items]


BATCHES = [["a", "b"], ["c", "boom", "d"], ["e"], ["f", "g"], ["h", "i", "j"]]


def test_a_configuration_that_kills_its_worker_is_recorded_and_the_others_run():
    ex = ProcessExecutor(2)
    try:
        rows = [r for part in ex.run(doubling_or_dying, 21, BATCHES, lost) for r in part]
    finally:
        ex.close()
    by_key = {r["key"]: r for r in rows}
    assert sorted(r["key"] for r in rows) == sorted(k for b in BATCHES for k in b)  # each once
    assert by_key["boom"]["lost"] == LOST_MESSAGE
    assert all(by_key[k]["value"] == 42 for k in "abcdefghij")
    assert not os.path.exists(ex._notes)


def test_serial_executor_runs_batches_in_order():
    ok = [b for b in BATCHES if "boom" not in b]
    assert [r["key"] for part in SerialExecutor().run(doubling_or_dying, 1, ok, lost) for r in part] == \
        [k for b in ok for k in b]
