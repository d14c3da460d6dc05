"""The RPC thread pool: a few threads run RPCs, and a thread that waits on I/O lends its place to another.

Python runs one thread at a time. With many RPC threads, fast assessments share the interpreter in no
particular order and their tail latency grows (bench/RESULTS.md: p99 14-16 ms with 4 threads, 21-33 ms with
16, on 2 cores); with few threads, a handful of slow requests (a CT fetched from the PACS, a FHIR server, a
stream waiting for its client) would hold every thread and starve the rest, health checks included.

`RpcExecutor` keeps both: at most `active` threads run RPC work; queued RPCs wait in arrival order and a
thread that finishes one takes the next itself (no hand-over between threads on the fast path). Code that
waits on I/O runs inside `blocking()`: its thread stops counting as active, and an idle or new thread (up to
`max_threads` in all) takes the next queued RPC meanwhile. When the wait ends the thread finishes its RPC,
briefly beyond `active`, and takes no new work until the count is back under it. This is the "managed
blocking" of Java's ForkJoinPool (java.util.concurrent.ForkJoinPool.ManagedBlocker).
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_current = threading.local()  # .executor: the RpcExecutor whose worker this is; .blocked: inside blocking()


@dataclass
class _Work:
    future: futures.Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:
            self.future.set_exception(exc)
            self = None  # type: ignore[assignment]  # the traceback must not keep the work's arguments alive
        else:
            self.future.set_result(result)


class RpcExecutor(futures.Executor):
    """A `concurrent.futures.Executor` for `grpc.server`: `active` threads take work, up to `max_threads` exist.

    The fast path is that of `ThreadPoolExecutor`: each active thread takes the next work from one C-level
    queue. Only `blocking()` and the end of a work item after it touch the bookkeeping lock."""

    def __init__(self, active: int, max_threads: int, *, name: str = "rpc") -> None:
        if active < 1 or max_threads < active:
            raise ValueError(f"need 1 <= active ({active}) <= max_threads ({max_threads})")
        self._active_limit = active
        self._max_threads = max_threads
        self._name = name
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._active = 0  # threads taking or running work, not inside blocking() and not parked
        self._parked: collections.deque[threading.Lock] = collections.deque()  # spare threads, each on its lock
        self._threads: list[threading.Thread] = []
        self._shutdown = False
        with self._lock:
            for _ in range(active):
                self._start_thread()

    # ---- Executor ----------------------------------------------------------------------------------

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> futures.Future[T]:
        future: futures.Future[T] = futures.Future()
        with self._lock:  # never after shutdown's stop marks
            if self._shutdown:
                raise RuntimeError("cannot schedule new work after shutdown")
            self._queue.put(_Work(future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
            threads = list(self._threads)
            while self._parked:
                self._parked.popleft().release()  # a parked thread wakes and finds the shutdown
        if cancel_futures:
            while True:
                try:
                    work = self._queue.get_nowait()
                except queue.Empty:
                    break
                if work is not None:
                    work.future.cancel()
        for _ in threads:
            self._queue.put(None)  # one stop mark per thread, after the work already queued
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    # ---- the pool ----------------------------------------------------------------------------------

    def _start_thread(self) -> None:
        """With the lock held: one more active thread (none when the system refuses a new thread)."""
        thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
        self._active += 1  # before start: the new thread may finish an item and check the count at once
        try:
            thread.start()
        except RuntimeError:  # "can't start new thread": the queue waits for a place instead
            self._active -= 1
            return
        self._threads.append(thread)

    def _work(self) -> None:
        _current.executor = self
        while True:
            work = self._queue.get()
            if work is None:
                return
            work.run()
            del work
            if self._active > self._active_limit:  # a blocked thread came back meanwhile: step aside
                self._park()

    def _park(self) -> None:
        with self._lock:
            if self._active <= self._active_limit or self._shutdown:
                return
            self._active -= 1
            spot = threading.Lock()
            spot.acquire()
            self._parked.append(spot)
        spot.acquire()  # released by `_lend` (active again) or by shutdown

    def _lend(self) -> None:
        """A thread starts waiting on I/O: a parked or new thread takes its place in the queue."""
        with self._lock:
            self._active -= 1
            if self._shutdown or self._active >= self._active_limit:
                return
            if self._parked:
                self._active += 1
                self._parked.popleft().release()
            elif len(self._threads) < self._max_threads:
                self._start_thread()

    def _reclaim(self) -> None:
        with self._lock:
            self._active += 1  # may exceed the limit until this work ends; then this thread parks

    @contextmanager
    def _blocking(self) -> Iterator[None]:
        self._lend()
        try:
            yield
        finally:
            self._reclaim()


@contextmanager
def blocking() -> Iterator[None]:
    """Mark a wait on I/O (a PACS or FHIR fetch, a CT slot, a stream's next message, CT work in native code):
    in an `RpcExecutor` thread another RPC may run meanwhile; anywhere else it does nothing.

    Enter and leave it on the same thread: a generator may yield inside it only as a context manager used in
    a `with` (as `assessment._ct_slot`), never as an iterator that could be closed on another thread."""
    executor: RpcExecutor | None = getattr(_current, "executor", None)
    if executor is None or getattr(_current, "blocked", False):  # not a worker, or already lent (nested)
        yield
        return
    _current.blocked = True
    try:
        with executor._blocking():
            yield
    finally:
        _current.blocked = False
