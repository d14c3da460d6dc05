"""Where cohort chunks run: local worker processes, or the workers of a Dask distributed cluster.

Both engines run the same module-level task functions on the same inputs, so their results are
identical; they differ only in where the work happens.

- `LocalEngine(workers=N)`: N worker processes (spawned, so nothing of the parent's threads or locks is
  inherited) on this machine; `workers=1` runs in the calling process (no pickling, easiest to debug).
- `DaskEngine(scheduler="tcp://host:8786")`: the workers of a running Dask cluster. Every worker needs
  the same Python environment (osteorisk and its dependencies at the same versions) and the model
  directory at the same path (the scoring task checks the model's sha256 on the worker); without a
  scheduler address a `distributed.LocalCluster` of `workers` processes (`processes=False`: threads of
  this process) is started and closed with the engine.

`Engine.run(function, tasks)` calls `function(task)` for every task and yields `Completed(task, result,
error)` items in completion order, with at most `max_in_flight` tasks submitted at once, so the caller
streams results to disk as they finish and memory stays bounded. A task that raises is reported in
`error` (the caller decides whether that stops the job); a local worker process that dies (a crash, the
out-of-memory killer) fails the tasks it may have been running with `WorkerDiedError` and the pool is
restarted for the rest.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from fusion.errors import FusionError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
EngineName = Literal["local", "dask"]
ENGINES: tuple[EngineName, ...] = ("local", "dask")
_END: Any = object()


class EngineError(FusionError):
    """An engine could not start (no such scheduler, Dask missing) or lost its workers."""

    reason = "ENGINE_UNAVAILABLE"


class WorkerDiedError(FusionError):
    """The worker process running a task died (crashed or was killed) before returning a result."""

    reason = "WORKER_DIED"


@dataclass(frozen=True)
class Completed(Generic[T, R]):
    """One finished task: its result, or the exception it raised."""

    task: T
    result: R | None
    error: BaseException | None = None


class Engine(Protocol):
    """What the cohort jobs need of an engine."""

    name: str
    workers: int
    shares_filesystem: bool  # the workers see this machine's files (they may write results themselves)

    def run(
        self, function: Callable[[T], R], tasks: Iterable[T], *, max_in_flight: int | None = None
    ) -> Iterator[Completed[T, R]]: ...

    def close(self) -> None: ...


def default_workers() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def limit_native_threads() -> None:
    """One BLAS/OpenMP thread per worker: the engine already runs one task per core."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass


def _check_workers(workers: int) -> int:
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise EngineError(f"workers must be a positive integer, got {workers!r}", reason="BAD_WORKERS")
    return workers


class LocalEngine:
    """`workers` spawned processes on this machine (module docstring); 1 runs in this process."""

    name = "local"
    shares_filesystem = True

    def __init__(self, *, workers: int = 1) -> None:
        self.workers = _check_workers(workers)
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=limit_native_threads,
            )
        return self._pool

    def run(
        self, function: Callable[[T], R], tasks: Iterable[T], *, max_in_flight: int | None = None
    ) -> Iterator[Completed[T, R]]:
        if self.workers == 1:
            for task in tasks:
                try:
                    result = function(task)
                except Exception as exc:
                    yield Completed(task, None, exc)
                else:
                    yield Completed(task, result)
            return
        limit = max(1, max_in_flight or 2 * self.workers)
        pending: dict[Future[R], T] = {}
        iterator = iter(tasks)
        exhausted = False
        # Tasks that were running when a worker died: one of them killed it, the others were only beside it.
        # Each is run again alone on a fresh pool; the one that kills its worker alone is reported as died.
        suspects: deque[T] = deque()
        alone = False
        while True:
            if suspects:
                alone = True
                if not pending:
                    suspect = suspects.popleft()
                    pending[self._executor().submit(function, suspect)] = suspect
            else:
                alone = False
                while not exhausted and len(pending) < limit:
                    try:
                        task = next(iterator)
                    except StopIteration:
                        exhausted = True
                        break
                    pending[self._executor().submit(function, task)] = task
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                task = pending.pop(future)
                failure = future.exception()
                if isinstance(failure, BrokenProcessPool):
                    broken = True
                    if alone:
                        yield Completed(task, None, WorkerDiedError(_died_message()))
                    else:
                        suspects.append(task)
                elif failure is not None:
                    yield Completed(task, None, failure)
                else:
                    yield Completed(task, future.result())
            if broken:
                # every task still pending ran on the broken pool: suspects too; then a new pool
                suspects.extend(pending.values())
                pending.clear()
                self._shutdown()

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        self._shutdown()

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _died_message() -> str:
    return "the worker process died (a crash or out of memory) while running this task alone"


class DaskEngine:
    """The workers of a Dask distributed cluster (module docstring)."""

    name = "dask"

    def __init__(
        self,
        *,
        scheduler: str | None = None,
        workers: int = 2,
        processes: bool = True,
        connect_timeout_s: float = 30.0,
    ) -> None:
        self._check_scheduler(scheduler)
        self.workers = _check_workers(workers)
        self.shares_filesystem = scheduler is None  # a LocalCluster of this machine
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise EngineError("the Dask engine needs `distributed`: pip install 'dask[distributed]'") from exc
        self._cluster: Any = None
        try:
            if scheduler is None:
                self._cluster = LocalCluster(
                    n_workers=self.workers,
                    threads_per_worker=1,
                    processes=processes,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
                self._client: Any = Client(self._cluster, set_as_default=False)
            else:
                self._client = Client(scheduler, timeout=connect_timeout_s, set_as_default=False)
                self.workers = max(1, len(self._client.scheduler_info().get("workers", {})))
        except (OSError, TimeoutError) as exc:
            self.close()
            where = scheduler or "a local cluster"
            raise EngineError(f"cannot connect to the Dask scheduler at {where}: {exc}") from exc
        if scheduler is None and processes:
            self._client.run(limit_native_threads)

    @staticmethod
    def _check_scheduler(scheduler: str | None) -> None:
        if scheduler is None:
            return
        if "://" not in scheduler or scheduler.split("://", 1)[0] not in ("tcp", "tls", "inproc", "ucx", "ws", "wss"):
            raise EngineError(
                f"scheduler address {scheduler!r} must look like tcp://host:8786 (or tls://...)",
                reason="BAD_SCHEDULER",
            )

    @property
    def dashboard_link(self) -> str | None:
        link = getattr(self._client, "dashboard_link", None)
        return str(link) if link else None

    def run(
        self, function: Callable[[T], R], tasks: Iterable[T], *, max_in_flight: int | None = None
    ) -> Iterator[Completed[T, R]]:
        from distributed import as_completed

        limit = max(1, max_in_flight or 2 * self.workers)
        iterator = iter(tasks)
        pending: dict[Any, T] = {}

        def submit_next() -> Any:
            task = next(iterator, _END)
            if task is _END:
                return None
            future = self._client.submit(function, task, pure=False)
            pending[future] = task
            return future

        first = [f for f in (submit_next() for _ in range(limit)) if f is not None]
        if not first:
            return
        queue = as_completed(first, loop=self._client.loop)
        for future in queue:
            task = pending.pop(future)
            if future.status == "error":
                yield Completed(task, None, future.exception())
            else:
                yield Completed(task, future.result())
            future.release()
            following = submit_next()
            if following is not None:
                queue.add(following)

    def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __enter__(self) -> DaskEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_engine(
    name: str, *, workers: int | None = None, scheduler: str | None = None, processes: bool = True
) -> LocalEngine | DaskEngine:
    """The engine called `name` ("local" or "dask"); `scheduler` only with "dask"."""
    if name not in ENGINES:
        raise EngineError(f"unknown engine {name!r}; use one of {', '.join(ENGINES)}", reason="BAD_ENGINE")
    if name == "local":
        if scheduler is not None:
            raise EngineError("--scheduler needs --engine dask", reason="BAD_ENGINE")
        return LocalEngine(workers=workers or default_workers())
    return DaskEngine(scheduler=scheduler, workers=workers or 2, processes=processes)
