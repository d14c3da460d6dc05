"""Upstream faults and hostile input: the server answers with the right code, stays healthy, never crashes.

Real parts: sekmet-fhir as the FHIR server, Orthanc as the PACS, small stdlib HTTP servers that misbehave on
purpose (slow, failing, refusing) — real servers, not mocks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinical.extract import build_record
from clinical.sources.bundle import BundleSource
from server import convert
from server.app import RunningServer, start
from server.config import DicomWebConfig, FhirSourceConfig, ServerConfig
from server.generated.osteorisk.v1 import fracture_risk_service_pb2 as pb
from server.generated.osteorisk.v1 import fracture_risk_service_pb2_grpc as pb_grpc
from tests.fhir_server import SekmetServer
from tests.net import free_port
from tests.server.conftest import wait_serving
from tests.server.test_service import _precomputed_request

LONNIE = "fhir/synthea/Lonnie_Von_28fbf0c8-5a9c-4781-b79f-f6118c3e2816.json"


class _Misbehaving(BaseHTTPRequestHandler):
    """Answers every GET after `delay_s` with `status` (a FHIR server or PACS having a bad day)."""

    delay_s = 0.0
    status = 503

    def do_GET(self) -> None:
        time.sleep(self.delay_s)
        self.send_response(self.status)
        self.send_header("Content-Type", "application/fhir+json")
        self.end_headers()
        self.wfile.write(b'{"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}')

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture()
def misbehaving() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Misbehaving)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@contextmanager
def _serve(config: ServerConfig) -> Iterator[tuple[RunningServer, pb_grpc.FractureRiskServiceStub, grpc.Channel]]:
    running = start(config)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        assert wait_serving(channel) == health_pb2.HealthCheckResponse.SERVING
        yield running, pb_grpc.FractureRiskServiceStub(channel), channel
    finally:
        channel.close()
        running.stop(0)


def _code(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


def test_patient_from_a_real_fhir_server_matches_the_bundle(
    sekmet_fhir: SekmetServer, shared_data: Callable[[str], Path]
) -> None:
    loaded = sekmet_fhir.load_bundle(shared_data(LONNIE))
    config = ServerConfig(port=0, fhir=FhirSourceConfig(source=sekmet_fhir.base_url))
    with _serve(config) as (_running, stub, _channel):
        request = _precomputed_request()
        request.ClearField("variables")
        request.patient_id = ""
        request.fhir_patient.patient_id = loaded.patient_id
        report = convert.risk_report_from_proto(stub.Assess(request, timeout=60))
    assert report.patient_id == loaded.patient_id
    with BundleSource.from_path(shared_data(LONNIE)) as source:
        expected = build_record(source, next(source.patient_ids()), report.index_date)
    assert report.inputs.clinical is not None
    got = report.inputs.clinical.variables
    for name in ("age_years", "sex", "weight_kg", "bmi_kg_m2", "prior_fragility_fracture", "osteoporosis_diagnosis"):
        assert got.get(name).value == expected.variables.get(name).value, name


def test_fhir_server_down_failing_or_slow(misbehaving: ThreadingHTTPServer) -> None:
    request = pb.AssessRequest(fhir_patient=pb.FhirPatient(patient_id="p1"))
    down = ServerConfig(port=0, fhir=FhirSourceConfig(source=f"http://127.0.0.1:{free_port()}/fhir", timeout_s=2))
    with _serve(down) as (_running, stub, channel):
        code, details = _code(lambda: stub.Assess(request, timeout=30))
        assert code == grpc.StatusCode.UNAVAILABLE, details
        assert wait_serving(channel, timeout_s=5) == health_pb2.HealthCheckResponse.SERVING
    url = f"http://127.0.0.1:{misbehaving.server_address[1]}/fhir"
    _Misbehaving.delay_s, _Misbehaving.status = 0.0, 500
    with _serve(ServerConfig(port=0, fhir=FhirSourceConfig(source=url, timeout_s=2))) as (_running, stub, channel):
        code, details = _code(lambda: stub.Assess(request, timeout=30))
        assert code == grpc.StatusCode.UNAVAILABLE, details
        _Misbehaving.delay_s = 5.0
        started = time.monotonic()
        code, details = _code(lambda: stub.Assess(request, timeout=1.0))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 3
        assert wait_serving(channel, timeout_s=5) == health_pb2.HealthCheckResponse.SERVING


def test_rpcs_beyond_the_bound_are_refused_at_once(misbehaving: ThreadingHTTPServer) -> None:
    """Every thread busy and no room to queue: the next RPC gets RESOURCE_EXHAUSTED, not an unbounded wait."""
    _Misbehaving.delay_s, _Misbehaving.status = 1.5, 500
    url = f"http://127.0.0.1:{misbehaving.server_address[1]}/fhir"
    config = ServerConfig(port=0, max_workers=1, max_concurrent_rpcs=1, fhir=FhirSourceConfig(source=url, timeout_s=5))
    with _serve(config) as (_running, stub, _channel):
        slow = stub.Assess.future(pb.AssessRequest(fhir_patient=pb.FhirPatient(patient_id="p1")), timeout=30)
        time.sleep(0.3)  # the slow FHIR fetch now holds the only thread
        started = time.monotonic()
        code, details = _code(lambda: stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
        assert time.monotonic() - started < 1.0
        assert slow.exception() is not None and slow.code() == grpc.StatusCode.UNAVAILABLE
        assert stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).id  # served again


def test_slow_upstreams_do_not_starve_fast_requests(misbehaving: ThreadingHTTPServer) -> None:
    """One RPC place, three requests waiting on a slow FHIR server: model info and health still answer at once."""
    _Misbehaving.delay_s, _Misbehaving.status = 2.0, 500
    url = f"http://127.0.0.1:{misbehaving.server_address[1]}/fhir"
    config = ServerConfig(port=0, max_workers=1, fhir=FhirSourceConfig(source=url, timeout_s=10))
    with _serve(config) as (_running, stub, channel):
        slow = [
            stub.Assess.future(pb.AssessRequest(fhir_patient=pb.FhirPatient(patient_id=f"p{i}")), timeout=30)
            for i in range(3)
        ]
        time.sleep(0.3)  # all three now wait on the FHIR server
        started = time.monotonic()
        assert stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).id
        assert wait_serving(channel, timeout_s=5) == health_pb2.HealthCheckResponse.SERVING
        assert time.monotonic() - started < 1.0
        assert all(call.code() == grpc.StatusCode.UNAVAILABLE for call in slow)


def test_pacs_down_or_slow(misbehaving: ThreadingHTTPServer) -> None:
    request = _precomputed_request()
    request.ClearField("bone_features")
    request.pacs_series.study_uid = "1.2.3"
    request.pacs_series.series_uid = "1.2.3.4"
    down = ServerConfig(port=0, dicomweb=DicomWebConfig(base_url=f"http://127.0.0.1:{free_port()}/dicom-web"))
    with _serve(down) as (_running, stub, channel):
        code, details = _code(lambda: stub.Assess(request, timeout=30))
        assert code == grpc.StatusCode.UNAVAILABLE and "PACS" in details
        assert wait_serving(channel, timeout_s=5) == health_pb2.HealthCheckResponse.SERVING
    _Misbehaving.delay_s, _Misbehaving.status = 5.0, 200
    slow = ServerConfig(
        port=0, dicomweb=DicomWebConfig(base_url=f"http://127.0.0.1:{misbehaving.server_address[1]}/dicom-web")
    )
    with _serve(slow) as (_running, stub, channel):
        started = time.monotonic()
        code, _ = _code(lambda: stub.Assess(request, timeout=1.0))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 3
        assert wait_serving(channel, timeout_s=5) == health_pb2.HealthCheckResponse.SERVING


def test_imaging_work_stops_when_the_caller_gives_up(tmp_path: Path) -> None:
    """A deadline shorter than the CT's processing gives DEADLINE_EXCEEDED, and the imaging stops at its next step:
    with a single RPC thread, a quick call made right after the deadline is answered well before the abandoned
    CT would have finished (its full processing time is measured first, on the same server)."""
    from imaging.phantom import make_phantom, write_nifti

    ct = write_nifti(make_phantom(seed=31, shape=(384, 384), spacing=(0.9, 0.9, 1.0)), tmp_path / "ct.nii.gz")
    request = _precomputed_request()
    request.ClearField("bone_features")
    request.inline_image.format = pb.InlineImage.NIFTI
    request.inline_image.data = ct.read_bytes()
    # one thread in all, so that no other thread can stand in for it while it waits on the CT
    config = ServerConfig(port=0, max_workers=1, max_threads=1, feature_cache_entries=0)
    with _serve(config) as (_running, stub, _channel):
        started = time.monotonic()
        stub.Assess(request, timeout=120)
        full = time.monotonic() - started
        started = time.monotonic()
        code, _ = _code(lambda: stub.Assess(request, timeout=full * 0.2))
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=60)  # queued behind the abandoned work, if any
        freed = time.monotonic() - started
    assert freed < 0.7 * full, f"the abandoned CT held the only RPC thread {freed:.2f} s of its {full:.2f} s"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(max_size=2048))
def test_fuzzed_bytes_never_crash_the_server(fuzz_server: tuple[str, grpc.Channel], payload: bytes) -> None:
    _target, channel = fuzz_server
    call = channel.unary_unary("/osteorisk.v1.FractureRiskService/Assess")
    code, details = _code(lambda: call(payload, timeout=10))
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), details
    if code != grpc.StatusCode.OK:
        assert details


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    patient_id=st.text(max_size=200),
    index_date=st.text(max_size=20),
    outcomes=st.lists(st.text(max_size=30), max_size=3),
    horizons=st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4),
    age=st.floats(allow_nan=True, allow_infinity=True),
    sex=st.text(max_size=10),
    l1=st.floats(allow_nan=True, allow_infinity=True),
    backend=st.text(max_size=20),
)
def test_fuzzed_requests_get_answers_not_crashes(
    fuzz_server: tuple[str, grpc.Channel],
    patient_id: str,
    index_date: str,
    outcomes: list[str],
    horizons: list[float],
    age: float,
    sex: str,
    l1: float,
    backend: str,
) -> None:
    request = pb.AssessRequest(
        patient_id=patient_id,
        index_date=index_date,
        outcomes=outcomes,
        horizons_years=horizons,
        segmentation_backend=backend,
    )
    request.variables.age_years.value.number_value = age
    request.variables.sex.value.string_value = sex
    request.bone_features.source.kind = "nifti"
    request.bone_features.source.contrast = "native"
    request.bone_features.segmentation.backend = "labels"
    request.bone_features.summary.l1_hu = l1
    stub = pb_grpc.FractureRiskServiceStub(fuzz_server[1])
    code, details = _code(lambda: stub.Assess(request, timeout=10))
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), details


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[tuple[str, grpc.Channel]]:
    with _serve(ServerConfig(port=0)) as (running, _stub, channel):
        yield f"127.0.0.1:{running.port}", channel
        assert wait_serving(channel, timeout_s=5) == health_pb2.HealthCheckResponse.SERVING
