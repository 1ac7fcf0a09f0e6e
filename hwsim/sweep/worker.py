"""What a worker process runs: build each configuration's scenario and estimate or simulate it.

A worker parses the base cluster file once (it travels with the job, so a worker on another
machine needs no copy; a small per-process cache keyed by path and content hash) and shares one
catalog context between configurations, so a catalog node or model is built once
per process. Each configuration patches a deep copy of the parsed base document, builds the
scenario and runs it; any exception becomes an ``error`` row carrying its message, so a bad
configuration never stops a sweep. The deterministic columns of a row depend only on the
configuration; the wall time is kept in its own column (``wall_s``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from hwsim import __version__
from hwsim.errors import HwsimError
from hwsim.io.load import Context
from hwsim.io.patch import patch_document
from hwsim.io.scenario import build_scenario
from hwsim.io.source import Document, parse_text, read_document
from hwsim.io.sweep_spec import SweepSpec
from hwsim.spec.scenario import Scenario
from hwsim.sweep.metrics import estimate_metrics, simulate_metrics

__all__ = ["Job", "Summarizer", "run_batch", "evaluate", "lost_rows", "error_text", "STATUS_OK", "STATUS_ERROR"]

STATUS_OK = "ok"
STATUS_ERROR = "error"

Summarizer = Callable[..., Mapping[str, Any]]
"""``summarize(result, *, slo_ttft_s, slo_tpot_s, warmup_s, inputs, version) -> summary dict``
(:func:`hwsim.report.summary.summarize`); passed in, since the sweep layer sits below report."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """Everything a worker needs besides the configurations (sent once per batch)."""

    spec: SweepSpec
    base_hashes: dict[str, str]  # role ("cluster", "trace") -> SHA-256 of the file
    metrics: tuple[str, ...]
    input_tokens: int
    output_tokens: int
    catalog_dirs: tuple[str, ...] = ()
    summarize: Summarizer | None = field(default=None, compare=False)
    cluster_text: str = ""  # the base cluster file's content: workers need not see the file itself

    @property
    def trace_path(self) -> Path:
        """The trace, as an absolute path (for workers started elsewhere on a shared file system)."""
        return Path(str(self.spec.trace_file)).resolve()


def run_batch(job: Job, batch: Sequence[tuple[str, tuple[tuple[str, Any], ...]]]) -> list[dict[str, Any]]:
    """Evaluate ``(key, patch)`` pairs; one row per pair, in order (see :func:`evaluate`)."""
    return [{"key": key, **evaluate(job, patch)} for key, patch in batch]


def evaluate(job: Job, patch: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """``status``, ``error``, the metrics and ``wall_s`` of one configuration."""
    t0 = time.perf_counter()
    try:
        spec = job.spec
        base, sha = str(spec.cluster_file), job.base_hashes["cluster"]
        doc = patch_document(_base(base, sha, job.cluster_text), patch)
        sc = build_scenario(doc, _context(job.catalog_dirs), {base: sha})
        values = _estimate(job, sc) if spec.mode == "estimate" else _simulate(job, sc)
        row: dict[str, Any] = {"status": STATUS_OK, "error": "", **values}
    except Exception as err:  # noqa: BLE001 - a failing configuration is recorded, never fatal
        row = {"status": STATUS_ERROR, "error": error_text(err), **dict.fromkeys(job.metrics)}
    row["wall_s"] = time.perf_counter() - t0
    return row


def lost_rows(job: Job, batch: Sequence[tuple[str, Any]], message: str) -> list[dict[str, Any]]:
    """Error rows for ``(key, patch)`` pairs whose worker died (no wall time: it is unknown)."""
    return [{"key": key, "status": STATUS_ERROR, "error": message, **dict.fromkeys(job.metrics), "wall_s": None}
            for key, _ in batch]


def error_text(err: BaseException) -> str:
    """An input problem's own message; anything else with its type (it may be a bug)."""
    return str(err) if isinstance(err, HwsimError) else f"{type(err).__name__}: {err}"


@lru_cache(maxsize=16)
def _base(path: str, sha256: str, text: str) -> Document:
    """The parsed base file (parsed once per content; relative references resolve from ``path``)."""
    return parse_text(text, path) if text else read_document(path)


@lru_cache(maxsize=4)
def _context(catalog_dirs: tuple[str, ...]) -> Context:
    return Context(catalog_dirs)


def _estimate(job: Job, sc: Scenario) -> dict[str, float | None]:
    from hwsim.perf.estimate import estimate
    from hwsim.workload.routing import offload_inclusion

    est = estimate(sc.cluster, sc.model, sc.deployment, input_tokens=job.input_tokens,
                   output_tokens=job.output_tokens, batch=job.spec.batch,
                   expert_inclusion=offload_inclusion(sc.deployment, sc.model))
    return estimate_metrics(est, job.metrics)


def _simulate(job: Job, sc: Scenario) -> dict[str, float | None]:
    from hwsim.sim.routing import imbalance_sampler_factory
    from hwsim.sim.run import simulate
    from hwsim.workload.importers import detect_format, import_requests

    spec = job.spec
    if job.summarize is None:
        raise ValueError("simulate mode needs a summarizer (hwsim.report.summary.summarize)")
    trace = job.trace_path
    result = simulate(sc, import_requests(trace, detect_format(trace)), seed=spec.seed,
                      duration_s=spec.duration_s, max_requests=spec.max_requests, router=spec.router,
                      imbalance_sampler_factory=imbalance_sampler_factory(sc), power_cap_w=spec.power_cap_w)
    summary = job.summarize(result, slo_ttft_s=spec.slo_ttft_s, slo_tpot_s=spec.slo_tpot_s,
                            warmup_s=spec.warmup_s, inputs=_inputs(job), version=__version__)
    return simulate_metrics(summary, job.metrics)


def _inputs(job: Job) -> dict[str, str]:
    paths = {"cluster": job.spec.cluster_file, "trace": job.spec.trace_file}
    return {str(paths[role]): sha for role, sha in job.base_hashes.items()}
