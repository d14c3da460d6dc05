"""Prometheus metrics over HTTP, JSON logs without request content, the audit log."""

from __future__ import annotations

import json
import logging
import urllib.request
from pathlib import Path

import grpc
import pytest

from server.app import start
from server.config import ServerConfig
from server.generated.osteorisk.v1 import fracture_risk_service_pb2 as pb
from server.generated.osteorisk.v1 import fracture_risk_service_pb2_grpc as pb_grpc
from server.observability import AuditLog, JsonFormatter
from tests.server.conftest import wait_serving


def test_metrics_endpoint_counts_requests_by_method_and_code() -> None:
    running = start(ServerConfig(port=0, metrics_port=0))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            wait_serving(channel)
            stub = pb_grpc.FractureRiskServiceStub(channel)
            for _ in range(3):
                with pytest.raises(grpc.RpcError):  # no image given: INVALID_ARGUMENT
                    stub.ExtractBoneFeatures(pb.ExtractBoneFeaturesRequest(), timeout=10)
            stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
        assert running.metrics_port is not None
        url = f"http://127.0.0.1:{running.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
    finally:
        running.stop(0)
    method = "/osteorisk.v1.FractureRiskService/ExtractBoneFeatures"
    assert f'osteorisk_requests_total{{code="INVALID_ARGUMENT",method="{method}"}} 3.0' in text
    assert f'osteorisk_request_duration_seconds_count{{method="{method}"}} 3.0' in text
    assert 'osteorisk_errors_total{code="INVALID_ARGUMENT"' in text
    assert 'osteorisk_requests_total{code="OK",method="/osteorisk.v1.FractureRiskService/GetModelInfo"} 1.0' in text
    assert "osteorisk_model_info{" in text


def test_json_log_lines_carry_fields_not_content() -> None:
    record = logging.LogRecord("osteorisk.rpc", logging.INFO, __file__, 1, "rpc finished", None, None)
    record.method = "/osteorisk.v1.FractureRiskService/Assess"
    record.duration_ms = 1.25
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "rpc finished"
    assert line["method"].endswith("/Assess")
    assert line["duration_ms"] == 1.25
    assert set(line) == {"time", "level", "logger", "message", "method", "duration_ms"}


def test_audit_log_appends_one_private_json_line_per_assessment(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    audit = AuditLog(path)
    audit.record(caller="ehr", method="Assess", patient_id="p1", model_id="m", model_version="1", outcome="OK")
    audit.record(caller="ehr", method="Assess", patient_id="p2", model_id="m", model_version="1", outcome="NOT_FOUND")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [entry["patient_id"] for entry in lines] == ["p1", "p2"]
    assert lines[1]["outcome"] == "NOT_FOUND"
    assert path.stat().st_mode & 0o077 == 0


def test_audit_log_stays_private_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path)
    path.unlink()  # as logrotate moves the file away
    audit.record(caller="ehr", method="Assess", patient_id="p1", model_id="m", model_version="1", outcome="OK")
    assert path.stat().st_mode & 0o077 == 0
