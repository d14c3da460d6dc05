"""Serving from several processes: one gRPC server per process on the same port (SO_REUSEPORT).

Python runs one thread at a time per process, so a CPU-bound service uses one core per process; the kernel
spreads connections over the processes (grpc's own multiprocessing example does the same). Each process loads
and verifies the model itself. The parent supervises: it restarts a process that dies, forwards SIGTERM/SIGINT
for a graceful shutdown, and serves the Prometheus metrics of all of them (prometheus_client's multiprocess
mode: the processes write their values to files in a private directory, the parent aggregates them).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from server.config import ServerConfig

log = logging.getLogger(__name__)

_METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_RESTART_BACKOFF_S = 1.0  # pause before a dead server process is restarted (no tight restart loop)
_MAX_RESTARTS = 20  # a process that keeps dying at start (bad config, no memory) must not loop forever


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait_listening(host: str, port: int, *, timeout_s: float) -> None:
    """Return once a server process accepts connections on the port (so that "serving" is true when printed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.05)
    raise OSError(f"no server process listens on {host}:{port} after {timeout_s:g} s")


def _child(config_data: dict[str, Any]) -> None:
    """One server process: serve until SIGTERM/SIGINT, then stop gracefully."""
    from server.app import start
    from server.observability import configure_json_logging

    configure_json_logging()
    config = ServerConfig.model_validate(config_data)
    running = start(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    running.stop(config.grace_period_s)


def _serve_metrics(host: str, port: int) -> int:
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return int(server.server_port)


def serve_processes(config: ServerConfig) -> None:
    """Run `config.processes` server processes on one port until SIGTERM or SIGINT."""
    port = config.port or _free_port(config.host)
    metrics_dir = tempfile.mkdtemp(prefix="osteorisk-metrics-")
    os.environ[_METRICS_ENV] = metrics_dir  # inherited by the spawned processes before they import prometheus
    child_config = config.model_copy(update={"port": port, "metrics_port": None}).model_dump(mode="json")
    context = multiprocessing.get_context("spawn")  # grpc does not survive fork()

    def launch() -> BaseProcess:
        process = context.Process(target=_child, args=(child_config,), name="osteorisk-server")
        process.start()
        return process

    children = [launch() for _ in range(config.processes)]
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    restarts = 0
    try:
        _wait_listening(config.host, port, timeout_s=60.0)
        print(f"osteorisk serving on {config.host}:{port} ({config.processes} processes)", flush=True)
        if config.metrics_port is not None:
            metrics_port = _serve_metrics(config.host, config.metrics_port)
            print(f"metrics on http://{config.host}:{metrics_port}/metrics", flush=True)
        while not stop.wait(0.5):
            for index, child in enumerate(children):
                if not child.is_alive():
                    restarts += 1
                    if restarts > _MAX_RESTARTS:
                        raise RuntimeError(f"server processes died {restarts} times; giving up (see their logs)")
                    log.error("server process exited; restarting it", extra={"exitcode": child.exitcode})
                    from prometheus_client import multiprocess

                    if child.pid is not None:
                        multiprocess.mark_process_dead(child.pid)
                    time.sleep(_RESTART_BACKOFF_S)
                    children[index] = launch()
    finally:
        for child in children:
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + config.grace_period_s + 5
        for child in children:
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                child.kill()
                child.join()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.environ.pop(_METRICS_ENV, None)
        print("osteorisk server stopped", flush=True)
