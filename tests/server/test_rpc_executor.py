"""The RPC thread pool: a bounded number of threads run at once, in arrival order; a thread waiting on I/O
inside `blocking()` lends its place; results, errors and shutdown as `concurrent.futures` defines them."""

from __future__ import annotations

import threading
import time

import pytest

from server import rpc_executor
from server.rpc_executor import RpcExecutor, blocking


def test_results_errors_and_shutdown() -> None:
    executor = RpcExecutor(active=2, max_threads=4)
    assert executor.submit(pow, 2, 10).result(timeout=5) == 1024
    with pytest.raises(ZeroDivisionError):
        executor.submit(lambda: 1 / 0).result(timeout=5)
    executor.shutdown(wait=True)
    with pytest.raises(RuntimeError, match="shutdown"):
        executor.submit(pow, 2, 2)
    with pytest.raises(ValueError, match="max_threads"):
        RpcExecutor(active=4, max_threads=2)


def test_at_most_active_threads_run_and_in_arrival_order() -> None:
    executor = RpcExecutor(active=2, max_threads=8)
    lock = threading.Lock()
    running, peak, order = [0], [0], []

    def work(i: int) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            order.append(i)
        time.sleep(0.02)  # busy without blocking(): the place stays taken
        with lock:
            running[0] -= 1

    done = [executor.submit(work, i) for i in range(12)]
    for future in done:
        future.result(timeout=10)
    executor.shutdown()
    assert peak[0] == 2
    one = RpcExecutor(active=1, max_threads=8)  # one place: the queue is served strictly in arrival order
    order.clear()
    for future in [one.submit(work, i) for i in range(8)]:
        future.result(timeout=10)
    one.shutdown()
    assert order == list(range(8))


def test_a_blocked_thread_lends_its_place() -> None:
    executor = RpcExecutor(active=1, max_threads=2)
    answered = threading.Event()

    def waits_on_io() -> str:
        with blocking():
            assert answered.wait(timeout=5), "the other request never ran: the place was not lent"
        return "slow done"

    slow = executor.submit(waits_on_io)
    fast = executor.submit(answered.set)
    assert fast.result(timeout=5) is None
    assert slow.result(timeout=5) == "slow done"
    executor.shutdown()


def test_no_place_is_lent_beyond_max_threads() -> None:
    executor = RpcExecutor(active=1, max_threads=1)
    events: list[str] = []

    def slow() -> None:
        with blocking():
            time.sleep(0.3)
        events.append("slow")

    first = executor.submit(slow)
    second = executor.submit(events.append, "fast")
    first.result(timeout=5)
    second.result(timeout=5)
    assert events == ["slow", "fast"]  # one thread in all: nobody could stand in
    executor.shutdown()


def test_nested_blocking_lends_once_and_the_returning_thread_steps_aside() -> None:
    executor = RpcExecutor(active=1, max_threads=3)
    go = threading.Event()

    def slow() -> None:
        with blocking(), blocking():  # nested: one stand-in, not two
            assert go.wait(timeout=5)

    first = executor.submit(slow)
    executor.submit(go.set).result(timeout=5)
    first.result(timeout=5)
    assert len(executor._threads) == 2
    lock = threading.Lock()
    running, peak = [0], [0]

    def busy() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1

    for future in [executor.submit(busy) for _ in range(20)]:
        future.result(timeout=10)
    assert peak[0] == 1  # the thread back from blocking() parked: one place again
    executor.shutdown()


def test_a_parked_thread_stands_in_again() -> None:
    executor = RpcExecutor(active=1, max_threads=2)

    def needs_a_stand_in() -> bool:
        done = threading.Event()
        executor.submit(done.set)
        with blocking():
            return done.wait(timeout=3)

    assert [executor.submit(needs_a_stand_in).result(timeout=10) for _ in range(4)] == [True] * 4
    assert len(executor._threads) == 2
    executor.shutdown()


def test_cancelled_work_never_runs_and_shutdown_cancels_the_queue() -> None:
    executor = RpcExecutor(active=1, max_threads=1)
    gate = threading.Event()
    first = executor.submit(gate.wait, 5)
    while not first.running():
        time.sleep(0.005)
    ran: list[str] = []
    withdrawn = executor.submit(ran.append, "withdrawn")
    assert withdrawn.cancel()
    gate.set()
    assert first.result(timeout=5) is True
    executor.submit(ran.append, "next").result(timeout=5)
    assert ran == ["next"]
    gate.clear()
    first = executor.submit(gate.wait, 5)
    while not first.running():
        time.sleep(0.005)
    queued = executor.submit(pow, 2, 3)
    executor.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert first.result(timeout=5) is True
    assert queued.cancelled()
    executor.shutdown()


def test_blocking_outside_the_pool_does_nothing() -> None:
    """The CLI runs the same assessment code in-process: there `blocking()` neither fails nor marks the thread."""
    with blocking():
        assert not getattr(rpc_executor._current, "blocked", False)
    assert getattr(rpc_executor._current, "executor", None) is None
