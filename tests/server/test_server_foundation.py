"""A real server on 127.0.0.1: health, reflection, UNIMPLEMENTED for missing capabilities, SIGTERM."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from fusion.bundled import default_model_dir
from server.app import RunningServer, start
from server.config import ServerConfig
from server.generated.osteorisk.v1 import fracture_risk_service_pb2 as pb
from server.generated.osteorisk.v1 import fracture_risk_service_pb2_grpc as pb_grpc
from tests.server.conftest import wait_serving

SERVICE = "osteorisk.v1.FractureRiskService"


@pytest.fixture()
def running() -> Iterator[RunningServer]:
    server = start(ServerConfig(port=0))
    yield server
    server.stop(0)


@pytest.fixture()
def channel(running: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        yield ch


def test_health_reports_serving_once_the_model_is_loaded(channel: grpc.Channel) -> None:
    assert wait_serving(channel) == health_pb2.HealthCheckResponse.SERVING
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert SERVICE in names
    assert "grpc.health.v1.Health" in names


def test_serve_command_shuts_down_gracefully_on_sigterm() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli.main", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"serving on 127\.0\.0\.1:(\d+)", line)
        assert match, f"unexpected first line: {line!r}"
        with grpc.insecure_channel(f"127.0.0.1:{match.group(1)}") as ch:
            assert wait_serving(ch) == health_pb2.HealthCheckResponse.SERVING
        start_stop = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "stopped" in out
        assert time.monotonic() - start_stop < 15
    finally:
        if proc.poll() is None:
            proc.kill()


def test_not_serving_and_unavailable_while_the_model_cannot_load(tmp_path: Path) -> None:
    """A missing or tampered model keeps the server NOT_SERVING; RPCs say why (UNAVAILABLE), none crash."""
    running = start(ServerConfig(port=0, model_dir=tmp_path / "no-model"))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            assert wait_serving(ch, timeout_s=2) == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.RpcError) as err:
                pb_grpc.FractureRiskServiceStub(ch).GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "model failed to load" in (err.value.details() or "")
    finally:
        running.stop(0)


def test_a_tampered_model_is_refused(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(default_model_dir(), model_dir)
    weights = next(p for p in model_dir.iterdir() if p.name != "manifest.json")
    weights.write_bytes(weights.read_bytes().replace(b"0", b"1", 1))
    running = start(ServerConfig(port=0, model_dir=model_dir))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            assert wait_serving(ch, timeout_s=3) == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.RpcError) as err:
                pb_grpc.FractureRiskServiceStub(ch).GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
            assert "sha256" in (err.value.details() or "")
    finally:
        running.stop(0)


def test_several_processes_share_one_port_and_stop_together() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli.main", "serve", "--port", "0", "--processes", "2", "--metrics-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        target = re.search(r"serving on (127\.0\.0\.1:\d+) \(2 processes\)", proc.stdout.readline())
        metrics = re.search(r"metrics on (http://\S+)", proc.stdout.readline())
        assert target and metrics
        for _ in range(6):  # new channels: connections spread over the processes
            with grpc.insecure_channel(target.group(1)) as ch:
                assert wait_serving(ch) == health_pb2.HealthCheckResponse.SERVING
                pb_grpc.FractureRiskServiceStub(ch).GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
        import urllib.request

        text = urllib.request.urlopen(metrics.group(1), timeout=10).read().decode()
        method = "/osteorisk.v1.FractureRiskService/GetModelInfo"
        assert f'osteorisk_requests_total{{code="OK",method="{method}"}} 6.0' in text  # summed over processes
        children = [  # the server processes (not multiprocessing's resource tracker)
            pid
            for pid in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(children) == 2
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "stopped" in out
        for pid in children:
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_failed_multiprocess_start_leaves_no_process_behind() -> None:
    """The metrics port is taken: the parent fails with a clear error and its server processes stop too."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "server.cli.main",
                "serve",
                "--port",
                "0",
                "--processes",
                "2",
                "--metrics-port",
                port,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode != 0
    assert "Address already in use" in proc.stderr or "internal error" in proc.stderr
    # no server process of this checkout is left (they would be orphans now, serving nothing)
    venv = str(Path(sys.executable).parent.parent).encode()
    leftovers: list[str] = []
    for _ in range(50):
        pids = subprocess.run(["pgrep", "-f", "spawn_main"], capture_output=True, text=True).stdout.split()
        leftovers = [pid for pid in pids if Path(f"/proc/{pid}").exists() and venv in _cmdline(pid)]
        if not leftovers:
            break
        time.sleep(0.1)
    assert not leftovers


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
