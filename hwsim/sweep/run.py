"""Plan and run a sweep: check everything first, then run configurations in batches.

:func:`plan_sweep` reads the sweep file, checks every axis path and value against the base
cluster file, expands the configurations and checks the metric names, all before anything
runs, so a typo fails at once (a :class:`~hwsim.errors.SpecError` naming the path).
:func:`run_sweep` then runs the configurations not already done on an executor, writes a part
as each batch finishes and, at the end, the consolidated results in configuration order.

Every configuration of a simulate-mode sweep uses the sweep's seed (common random numbers:
differences between configurations are not sampling noise).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwsim import __version__
from hwsim.errors import SpecError
from hwsim.io.scenario import file_sha256
from hwsim.io.source import read_document
from hwsim.io.sweep_spec import SweepSpec, check_axes, load_sweep_spec
from hwsim.sweep.executors import Executor, SerialExecutor
from hwsim.sweep.grid import Configuration, configurations, input_columns
from hwsim.sweep.metrics import check_metrics, default_metrics, flatten
from hwsim.sweep.store import Layout, ResultStore
from hwsim.sweep.worker import STATUS_OK, Job, Summarizer, lost_rows, run_batch

__all__ = ["SweepPlan", "SweepOutcome", "plan_sweep", "run_sweep", "default_chunk", "Progress"]

Progress = Callable[[int, int], None]
"""``progress(done, total)`` in configurations; called at the start and after every batch."""

DEFAULT_INPUT_TOKENS = 1024
DEFAULT_OUTPUT_TOKENS = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepPlan:
    """A checked sweep: its configurations, the job workers run, and the result columns."""

    spec: SweepSpec
    configs: tuple[Configuration, ...]
    job: Job
    layout: Layout


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepOutcome:
    """What :func:`run_sweep` did."""

    results: Path
    configurations: int
    ran: int
    reused: int
    ok: int
    errors: int
    wall_s: float
    executor: str


def plan_sweep(spec: SweepSpec | str | Path, *, catalog_dirs: Sequence[str] = (),
               summarize: Summarizer | None = None) -> SweepPlan:
    """Check a sweep completely and expand it (nothing runs).

    ``summarize`` turns a simulation into the summary dict (pass
    :func:`hwsim.report.summary.summarize`); simulate mode needs it.
    """
    if not isinstance(spec, SweepSpec):
        spec = load_sweep_spec(spec)
    check_axes(spec)
    cluster_bytes = spec.cluster_file.read_bytes()  # read once: the hash is that of the text workers get
    hashes = {"cluster": hashlib.sha256(cluster_bytes).hexdigest()}
    if spec.trace_file is not None:
        hashes["trace"] = file_sha256(spec.trace_file)
    configs = configurations(spec, hashes)
    slo = spec.slo_ttft_s is not None or spec.slo_tpot_s is not None
    metrics = spec.metrics or default_metrics(spec.mode, slo)
    if spec.mode == "simulate" and summarize is None:
        raise ValueError("simulate mode needs summarize= (hwsim.report.summary.summarize)")
    try:
        check_metrics(metrics, spec.mode, _summary_fields(summarize) if spec.mode == "simulate" else ())
    except SpecError as err:
        raise read_document(spec.file).error(err) from None
    inp, out = _request_shape(spec)
    job = Job(spec=spec, base_hashes=hashes, metrics=metrics, input_tokens=inp, output_tokens=out,
              catalog_dirs=tuple(str(d) for d in catalog_dirs), summarize=summarize,
              cluster_text=cluster_bytes.decode("utf-8"))
    meta = {"name": spec.name, "spec": spec.file, "mode": spec.mode, "combine": spec.combine, "seed": spec.seed,
            "hwsim_version": __version__, "bases": _files(spec, hashes), "input_tokens": inp, "output_tokens": out,
            "axes": [{"paths": list(a.paths), "name": a.name} for a in spec.axes]}
    layout = Layout.infer(input_columns(spec), (dict(c.inputs) for c in configs), metrics, meta)
    return SweepPlan(spec=spec, configs=tuple(configs), job=job, layout=layout)


def _files(spec: SweepSpec, hashes: dict[str, str]) -> dict[str, dict[str, str]]:
    paths = {"cluster": spec.cluster_file, "trace": spec.trace_file}
    return {role: {"file": os.path.normpath(str(paths[role])), "sha256": sha} for role, sha in hashes.items()}


def _summary_fields(summarize: Summarizer | None) -> tuple[str, ...]:
    """Numeric fields of the summary dict, found by summarising an empty simulation."""
    import numpy as np

    from hwsim.sim.metrics import REQUEST_COLUMNS, STEP_COLUMNS, SimResult

    if summarize is None:
        return ()
    empty = SimResult(requests={k: np.zeros(0, v) for k, v in REQUEST_COLUMNS.items()},
                      steps={k: np.zeros(0, v) for k, v in STEP_COLUMNS.items()}, pools=(),
                      sim_time_s=0.0, wall_time_s=0.0, events=0, seed=0)
    flat = flatten(summarize(empty, slo_ttft_s=1.0, slo_tpot_s=1.0, version=__version__))
    return tuple(k for k, v in flat.items() if v is None or (isinstance(v, int | float) and not isinstance(v, bool)))


def _request_shape(spec: SweepSpec) -> tuple[int, int]:
    """Estimate mode's prompt and output lengths: given, else the trace's means, else 1024 / 256."""
    inp, out = spec.input_tokens, spec.output_tokens
    if (inp is None or out is None) and spec.trace_file is not None and spec.mode == "estimate":
        from hwsim.workload.importers import detect_format, import_requests
        from hwsim.workload.stats import trace_stats

        stats = trace_stats(import_requests(spec.trace_file, detect_format(spec.trace_file)))
        if stats.count == 0 or stats.input_tokens is None or stats.output_tokens is None:
            raise SpecError("the trace has no requests", file=str(spec.trace_file))
        inp = inp or max(1, round(stats.input_tokens.mean))
        out = out or max(1, round(stats.output_tokens.mean))
    return inp or DEFAULT_INPUT_TOKENS, out or DEFAULT_OUTPUT_TOKENS


def default_chunk(mode: str, todo: int, workers: int) -> int:
    """Configurations per task: one simulation, or enough estimates for ~8 tasks per worker (<= 32).

    About 0.5 s of estimates per task: small enough to balance the workers and write parts often,
    large enough that sending tasks costs little.
    """
    if mode == "simulate":
        return 1
    return max(1, min(32, math.ceil(todo / (8 * workers))))


def run_sweep(plan: SweepPlan, out_dir: str | Path, *, executor: Executor | None = None, resume: bool = False,
              retry_errors: bool = False, fmt: str = "parquet", chunk: int | None = None,
              progress: Progress | None = None) -> SweepOutcome:
    """Run ``plan`` into ``out_dir`` (see :mod:`hwsim.sweep.store` for the files).

    With ``resume`` the rows already in ``out_dir`` are kept (``retry_errors`` runs failed
    configurations again); without it, a folder that already holds results is refused.
    """
    t0 = time.perf_counter()
    store = ResultStore(out_dir, plan.layout, fmt)
    if store.has_rows() and not resume:
        raise SpecError(f"{out_dir} already holds sweep results", path="--out",
                        expected="--resume to continue them, or another folder")
    store.remove_temporaries()
    done = store.load_done() if resume else {}
    if retry_errors:
        done = {k: r for k, r in done.items() if r["status"] == STATUS_OK}
    first: dict[str, Configuration] = {}
    for c in plan.configs:
        first.setdefault(c.key, c)
    count = Counter(c.key for c in plan.configs)
    todo = [(k, c.patch) for k, c in first.items() if k not in done]
    executor = executor or SerialExecutor()
    size = chunk or default_chunk(plan.spec.mode, len(todo), executor.workers)
    batches = [todo[i:i + size] for i in range(0, len(todo), size)]
    rows = {k: r for k, r in done.items() if k in first}
    finished = sum(count[k] for k in rows)
    reused = finished
    if progress is not None:
        progress(finished, len(plan.configs))
    def lost(items: list[Any], message: str) -> list[dict[str, Any]]:
        return lost_rows(plan.job, items, message)

    for batch_rows in executor.run(run_batch, plan.job, batches, lost):
        full = [_full_row(first[r["key"]], r) for r in batch_rows]
        store.write_part(full)
        for r in batch_rows:
            rows[r["key"]] = r
            finished += count[r["key"]]
        if progress is not None:
            progress(finished, len(plan.configs))
    ordered = [_full_row(c, rows[c.key]) for c in plan.configs]
    path = store.write_results(ordered)
    ok = sum(1 for r in ordered if r["status"] == STATUS_OK)
    outcome = SweepOutcome(results=path, configurations=len(ordered), ran=len(ordered) - reused, reused=reused,
                           ok=ok, errors=len(ordered) - ok, wall_s=time.perf_counter() - t0,
                           executor=executor.description)
    store.write_manifest({**plan.layout.metadata, "results": path.name, "configurations": outcome.configurations,
                          "ok": ok, "errors": outcome.errors, "inputs": list(plan.layout.inputs),
                          "metrics": list(plan.layout.metrics), "last_run": {"executor": outcome.executor,
                          "ran": outcome.ran, "reused": reused, "wall_s": round(outcome.wall_s, 3)}})
    return outcome


def _full_row(config: Configuration, result: dict[str, Any]) -> dict[str, Any]:
    return {"index": config.index, "key": config.key, **dict(config.inputs), **result}
