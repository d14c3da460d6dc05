"""A real server on 127.0.0.1: health, reflection, UNIMPLEMENTED for missing capabilities, SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from server.app import RunningServer, start
from server.config import ServerConfig
from server.generated.osteorisk.v1 import fracture_risk_service_pb2 as pb
from server.generated.osteorisk.v1 import fracture_risk_service_pb2_grpc as pb_grpc

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


def test_health_reports_serving(channel: grpc.Channel) -> None:
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


def test_unbuilt_rpcs_answer_unimplemented_naming_what_is_missing(channel: grpc.Channel) -> None:
    stub = pb_grpc.FractureRiskServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.ExtractBoneFeatures(pb.ExtractBoneFeaturesRequest(), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "imaging" in (err.value.details() or "")


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
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        start_stop = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "stopped" in out
        assert time.monotonic() - start_stop < 15
    finally:
        if proc.poll() is None:
            proc.kill()
