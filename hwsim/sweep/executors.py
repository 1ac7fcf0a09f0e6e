"""Where batches of configurations run: in this process, on a local process pool, or on Dask.

Every executor runs the same task function (:func:`hwsim.sweep.worker.run_batch`) on lists of
configurations and yields each list's rows as it finishes, in whatever order; the caller orders
rows by configuration, so every executor gives the same result file.

* :class:`SerialExecutor` runs in the calling process (one worker; no start-up cost).
* :class:`ProcessExecutor` is a :class:`concurrent.futures.ProcessPoolExecutor` started with
  ``forkserver`` (the server imports hwsim once, then forks warm workers) where available, else
  ``spawn``; never plain ``fork``, which is unsafe with the threads that numba and numpy start.
* :class:`DaskExecutor` submits to a ``distributed`` scheduler given by address, or to a
  ``LocalCluster`` of single-threaded worker processes started for the sweep
  (``pip install "hwsim[dask]"``).

A configuration that kills its worker process (a crash, the out-of-memory killer) is recorded as
failed, through the ``lost`` callback, and the sweep goes on. On the process pool each worker
notes in a small file which configuration it is running; when the pool breaks, the
configurations that were running are run again one at a time in a fresh single-worker pool, so
that the one that dies again is the one recorded, and the rest of the work resumes on a new
pool. On Dask (which retries a task whose worker died, then gives up) a failed task of several
configurations is split into one task per configuration, and a failed single is recorded.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import suppress
from pathlib import Path
from typing import Any, Protocol

from hwsim.errors import HwsimError, SpecError

__all__ = ["Executor", "SerialExecutor", "ProcessExecutor", "DaskExecutor", "make_executor", "default_workers",
           "ExecutorError", "BACKENDS", "LOST_MESSAGE"]

BACKENDS = ("process", "dask")
Rows = list[dict[str, Any]]
Task = Callable[[Any, list[Any]], Rows]
Lost = Callable[[list[Any], str], Rows]
"""``lost(items, message)``: rows recording ``items`` as failed with ``message``."""
LOST_MESSAGE = "the worker process died while running this configuration (a crash, or out of memory)"


class ExecutorError(HwsimError):
    """Workers could not start, or the cluster went away (exit code 1)."""

    exit_code = 1


class Executor(Protocol):
    """Runs ``fn(job, batch)`` for every batch; yields each batch's rows as it finishes."""

    workers: int
    description: str

    def run(self, fn: Task, job: Any, batches: Sequence[list[Any]], lost: Lost) -> Iterator[Rows]: ...

    def close(self) -> None: ...


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


class SerialExecutor:
    """Runs every batch in this process, in order (a crash here ends the sweep: use --resume)."""

    workers = 1
    description = "1 worker (in process)"

    def run(self, fn: Task, job: Any, batches: Sequence[list[Any]], lost: Lost) -> Iterator[Rows]:
        for batch in batches:
            yield fn(job, batch)

    def close(self) -> None:
        pass


def _mp_context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["hwsim.sweep.worker"])
        return ctx
    return multiprocessing.get_context("spawn")


_NOTE = "{task:>12} {item:>8}\n"  # fixed width: rewritten in place, never truncated


def noted_task(fn: Task, job: Any, batch: list[Any], notes: str, task: int) -> Rows:
    """Run ``fn`` on each item of ``batch`` in turn, noting ``task`` and the item's position in a
    file named after this process (under ``notes``) while it runs; ``-1`` when done."""
    path = os.path.join(notes, str(os.getpid()))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        rows: Rows = []
        for j, item in enumerate(batch):
            os.pwrite(fd, _NOTE.format(task=task, item=j).encode(), 0)
            rows += fn(job, [item])
        os.pwrite(fd, _NOTE.format(task=-1, item=-1).encode(), 0)
        return rows
    finally:
        os.close(fd)


class ProcessExecutor:
    """A local pool of ``workers`` processes (see the module docstring for worker deaths)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.description = f"{workers} worker processes"
        self._notes = tempfile.mkdtemp(prefix="hwsim-sweep-")
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context())

    def run(self, fn: Task, job: Any, batches: Sequence[list[Any]], lost: Lost) -> Iterator[Rows]:
        todo = {t: list(batch) for t, batch in enumerate(batches) if batch}
        while todo:
            pending: dict[Future[Rows], int] = {
                self._pool.submit(noted_task, fn, job, items, self._notes, t): t for t, items in todo.items()}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        rows = fut.result()
                        del todo[pending.pop(fut)]
                        yield rows
            except BrokenProcessPool:
                running = self._running()
                self._restart()
                for t, j in running:
                    if t in todo and j < len(todo[t]):
                        item = todo[t].pop(j)
                        yield self._alone(fn, job, item, lost)
                todo = {t: items for t, items in todo.items() if items}
            finally:
                for fut in pending:
                    fut.cancel()

    def _running(self) -> list[tuple[int, int]]:
        """(task, item) that each worker was running, from the notes; the notes are cleared."""
        out = []
        for note in Path(self._notes).iterdir():
            with suppress(OSError, ValueError):
                task, item = (int(x) for x in note.read_text().split())
                if task >= 0:
                    out.append((task, item))
            with suppress(OSError):
                note.unlink()
        return sorted(out)

    def _restart(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=_mp_context())

    @staticmethod
    def _alone(fn: Task, job: Any, item: Any, lost: Lost) -> Rows:
        """Run one item in a fresh single-worker pool; a second death records it as lost."""
        with ProcessPoolExecutor(max_workers=1, mp_context=_mp_context()) as solo:
            try:
                return solo.submit(fn, job, [item]).result()
            except BrokenProcessPool:
                return lost([item], LOST_MESSAGE)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self._notes, ignore_errors=True)


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

    def run(self, fn: Task, job: Any, batches: Sequence[list[Any]], lost: Lost) -> Iterator[Rows]:
        from distributed import as_completed

        job_future = self._client.scatter(job, broadcast=True, hash=False)
        live: dict[Any, tuple[Any, list[Any]]] = {}  # task key -> (future, its configurations)
        queue = as_completed()

        def submit(batch: list[Any]) -> None:
            fut = self._client.submit(fn, job_future, batch, pure=False)
            live[fut.key] = (fut, batch)
            queue.add(fut)

        for batch in batches:
            submit(list(batch))
        try:
            for fut in queue:
                _, batch = live.pop(fut.key)
                try:
                    rows = fut.result()
                except Exception as err:  # the worker died (KilledWorker) or the task was lost
                    if self._client.status != "running":
                        raise ExecutorError(f"lost the Dask cluster: {type(err).__name__}: {err}; the rows "
                                            "written so far are kept: rerun with --resume") from None
                    if len(batch) > 1:
                        for item in batch:
                            submit([item])
                    else:
                        yield lost(batch, f"{LOST_MESSAGE}; Dask: {type(err).__name__}")
                    continue
                yield rows
        finally:
            self._client.cancel([f for f, _ in live.values()])

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
