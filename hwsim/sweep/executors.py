"""Where batches of configurations run: in this process, on a local process pool, or on Dask.

Every executor runs the same task function (:func:`hwsim.sweep.worker.run_batch`) on the same
batches and yields ``(batch index, rows)`` as batches finish, in whatever order they finish;
the caller orders rows by configuration, so every executor gives the same result file.

* :class:`SerialExecutor` runs in the calling process (one worker; no start-up cost).
* :class:`ProcessExecutor` is a :class:`concurrent.futures.ProcessPoolExecutor` started with
  ``forkserver`` (the server imports hwsim once, then forks warm workers) where available, else
  ``spawn``; never plain ``fork``, which is unsafe with the threads that numba and numpy start.
* :class:`DaskExecutor` submits to a ``distributed`` scheduler given by address, or to a
  ``LocalCluster`` of single-threaded worker processes started for the sweep
  (``pip install "hwsim[dask]"``).

A worker that dies (killed, out of memory) stops the sweep with an error: the rows already
written stay, and ``--resume`` continues from them.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

from hwsim.errors import HwsimError, SpecError

__all__ = ["Executor", "SerialExecutor", "ProcessExecutor", "DaskExecutor", "make_executor", "default_workers",
           "ExecutorError", "BACKENDS"]

BACKENDS = ("process", "dask")
Task = Callable[[Any, Any], list[dict[str, Any]]]


class ExecutorError(HwsimError):
    """Workers could not start, or one died while running configurations (exit code 1)."""

    exit_code = 1


class Executor(Protocol):
    """Runs ``fn(job, batch)`` for every batch; yields ``(index, rows)`` as batches finish."""

    workers: int
    description: str

    def run(self, fn: Task, job: Any, batches: Sequence[Any]) -> Iterator[tuple[int, list[dict[str, Any]]]]: ...

    def close(self) -> None: ...


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


class SerialExecutor:
    """Runs every batch in this process, in order."""

    workers = 1
    description = "1 worker (in process)"

    def run(self, fn: Task, job: Any, batches: Sequence[Any]) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        for i, batch in enumerate(batches):
            yield i, fn(job, batch)

    def close(self) -> None:
        pass


def _mp_context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["hwsim.sweep.worker"])
        return ctx
    return multiprocessing.get_context("spawn")


class ProcessExecutor:
    """A local pool of ``workers`` processes."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.description = f"{workers} worker processes"
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context())

    def run(self, fn: Task, job: Any, batches: Sequence[Any]) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        pending: dict[Future[list[dict[str, Any]]], int] = {
            self._pool.submit(fn, job, batch): i for i, batch in enumerate(batches)}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = pending.pop(fut)
                    try:
                        rows = fut.result()
                    except BrokenProcessPool as err:
                        raise ExecutorError(f"a worker process died (killed or out of memory): {err}; "
                                              "the rows written so far are kept: rerun with --resume") from None
                    yield i, rows
        finally:
            for fut in pending:
                fut.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """Batches as tasks of a Dask ``distributed`` cluster (a given scheduler or a LocalCluster)."""

    def __init__(self, workers: int, scheduler: str | None = None) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise SpecError("the dask backend needs dask.distributed", path="--backend",
                            expected='pip install "hwsim[dask]"', found="dask") from None
        self._cluster = None
        try:
            if scheduler is None:
                self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                             dashboard_address=None, silence_logs=logging.ERROR)
                self._client = Client(self._cluster)
            else:
                self._client = Client(scheduler, timeout="20s")
        except OSError as err:
            self.close()
            raise SpecError(f"cannot reach the Dask scheduler: {err}", path="--scheduler",
                            expected="the address of a running scheduler (tcp://host:8786)", found=scheduler) from None
        except Exception as err:  # a LocalCluster that fails to start raises RuntimeError
            self.close()
            raise ExecutorError(f"cannot start Dask workers: {type(err).__name__}: {err}") from None
        self.workers = len(self._client.scheduler_info().get("workers", {})) or workers
        where = f"scheduler {scheduler}" if scheduler else "a LocalCluster"
        self.description = f"Dask, {self.workers} workers on {where}"

    def run(self, fn: Task, job: Any, batches: Sequence[Any]) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        from distributed import as_completed

        job_future = self._client.scatter(job, broadcast=True, hash=False)
        futures = [self._client.submit(fn, job_future, batch, pure=False) for batch in batches]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for fut in as_completed(futures):
                try:
                    rows = fut.result()
                except Exception as err:  # KilledWorker and other scheduler-side failures
                    raise ExecutorError(f"a Dask task failed ({type(err).__name__}: {err}); "
                                          "the rows written so far are kept: rerun with --resume") from None
                yield index[fut.key], rows
        finally:
            self._client.cancel([f for f in futures if not f.done()])

    def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(backend: str, workers: int | None, scheduler: str | None = None) -> Executor:
    """The executor of ``backend`` (``process`` or ``dask``) with ``workers`` (default: all cores).

    ``process`` with one worker runs in this process.
    """
    n = default_workers() if workers is None else workers
    if n < 1:
        raise SpecError("at least one worker", path="--workers", expected="an integer >= 1", found=n)
    if backend == "process":
        if scheduler is not None:
            raise SpecError("--scheduler is for the dask backend", path="--scheduler",
                            expected="--backend dask", found=scheduler)
        return SerialExecutor() if n == 1 else ProcessExecutor(n)
    if backend == "dask":
        return DaskExecutor(n, scheduler)
    raise SpecError("unknown backend", path="--backend", expected=" or ".join(BACKENDS), found=backend)
