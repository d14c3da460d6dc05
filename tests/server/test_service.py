"""The service end to end over real gRPC: every input form, the stream, features, the model card, errors.

Real parts only: the bundled model (`make model`), the osteorisk server on 127.0.0.1, Orthanc as the PACS,
sekmet-fhir as the FHIR server, the shared real CT and FHIR data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2
from grpc_status import rpc_status

from clinical.sources.bundle import BundleSource
from fusion.artifacts import load_model
from fusion.bundled import default_model_dir
from fusion.types import RiskReport
from server import convert
from server.app import RunningServer, start
from server.config import DicomWebConfig, FhirSourceConfig, ServerConfig
from server.generated.osteorisk.v1 import fracture_risk_service_pb2 as pb
from server.generated.osteorisk.v1 import fracture_risk_service_pb2_grpc as pb_grpc
from tests.orthanc_server import OrthancServer
from tests.server.conftest import StoredSeries, wait_serving

WILLIA = "fhir/synthea/Willia_Runolfsdottir_074c3873-c476-40e3-8046-f67372eb5e05.json"
LONNIE = "fhir/synthea/Lonnie_Von_28fbf0c8-5a9c-4781-b79f-f6118c3e2816.json"


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory,
    shared_data: Callable[[str], Path],
    orthanc: OrthancServer,
) -> Iterator[tuple[RunningServer, grpc.Channel, Path]]:
    audit = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    config = ServerConfig(
        port=0,
        audit_log=audit,
        fhir=FhirSourceConfig(source=str(shared_data(LONNIE))),
        dicomweb=DicomWebConfig(base_url=orthanc.dicomweb_url, timeout_s=30),
        max_inline_image_bytes=8 * 1024 * 1024,
    )
    running = start(config)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    assert wait_serving(channel) == health_pb2.HealthCheckResponse.SERVING
    yield running, channel, audit
    channel.close()
    running.stop(0)


@pytest.fixture()
def stub(service: tuple[RunningServer, grpc.Channel, Path]) -> pb_grpc.FractureRiskServiceStub:
    return pb_grpc.FractureRiskServiceStub(service[1])


def _precomputed_request() -> pb.AssessRequest:
    request = pb.AssessRequest(patient_id="p-inline", index_date="2024-05-01", request_id="r1")
    variables = request.variables
    variables.age_years.value.number_value = 72
    variables.sex.value.string_value = "female"
    variables.bmi_kg_m2.value.number_value = 22.5
    variables.prior_fragility_fracture.value.bool_value = True
    variables.glucocorticoids.value.bool_value = False
    request.bone_features.source.kind = "nifti"
    request.bone_features.source.contrast = "native"
    request.bone_features.segmentation.backend = "labels"
    request.bone_features.summary.l1_hu = 98.0
    request.bone_features.summary.mean_hu_l1_l4 = 101.0
    return request


def _violation(error: grpc.RpcError) -> tuple[str, str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    return bad.field_violations[0].field, bad.field_violations[0].reason


def test_assess_inline_variables_and_precomputed_features(
    stub: pb_grpc.FractureRiskServiceStub, service: tuple[RunningServer, grpc.Channel, Path]
) -> None:
    reply = stub.Assess(_precomputed_request(), timeout=30)
    report = convert.risk_report_from_proto(reply)
    assert report.patient_id == "p-inline"
    assert str(report.index_date) == "2024-05-01"
    assert {(p.outcome, p.horizon_years) for p in report.predictions} == {
        (o, h) for o in ("major_osteoporotic_fracture", "hip_fracture") for h in (1.0, 2.0, 5.0, 10.0)
    }
    for p in report.predictions:
        assert p.ci95[0] <= p.probability <= p.ci95[1]
    codes = {f.code for f in report.screening_flags}
    assert "PROBABLE_OSTEOPOROSIS" in codes  # L1 98 HU <= 110 (Pickhardt 2013)
    model = load_model(default_model_dir())
    assert report.model.sha256 == model.sha256
    assert "not for clinical use" in report.model.intended_use.lower()
    resource = report.fhir_risk_assessment
    assert resource is not None and resource["resourceType"] == "RiskAssessment"
    assert resource["subject"] == {"reference": "Patient/p-inline"}
    assert len(resource["prediction"]) == 8
    audit_lines = [json.loads(line) for line in service[2].read_text().splitlines()]
    assert any(line["patient_id"] == "p-inline" and line["outcome"] == "OK" for line in audit_lines)


def test_assess_inline_bundle_and_inline_nifti_with_labels(
    stub: pb_grpc.FractureRiskServiceStub, shared_data: Callable[[str], Path]
) -> None:
    request = pb.AssessRequest(index_date="2019-06-01")
    request.fhir_bundle.json = shared_data(WILLIA).read_bytes()
    request.inline_image.format = pb.InlineImage.NIFTI
    request.inline_image.data = shared_data("ct/totalseg/example_ct_sm.nii.gz").read_bytes()
    request.inline_image.labels_nifti = shared_data("ct/totalseg/example_seg.nii.gz").read_bytes()
    reply = stub.Assess(request, timeout=120)
    report = convert.risk_report_from_proto(reply)
    assert reply == convert.risk_report_to_proto(report)  # the fast encoder agrees with the generic path
    with BundleSource.from_path(shared_data(WILLIA)) as source:
        expected_patient = next(source.patient_ids())
    assert report.patient_id == expected_patient
    assert report.inputs.segmentation_backend == "labels"
    assert report.inputs.imaging is not None and report.inputs.imaging.l1_hu is not None
    assert abs(report.inputs.imaging.l1_hu - 102) < 15  # the reference labels' L1 trabecular median
    assert any(ref.startswith("Observation/") for ref in report.inputs.clinical_sources)


def test_assess_patient_on_the_configured_fhir_source(stub: pb_grpc.FractureRiskServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Assess(pb.AssessRequest(fhir_patient=pb.FhirPatient(patient_id="no-such-patient")), timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_assess_series_from_the_pacs(
    stub: pb_grpc.FractureRiskServiceStub, shared_series_in_orthanc: StoredSeries
) -> None:
    request = _precomputed_request()
    request.ClearField("bone_features")
    request.pacs_series.study_uid = shared_series_in_orthanc.study_uid
    request.pacs_series.series_uid = shared_series_in_orthanc.series_uid
    report = convert.risk_report_from_proto(stub.Assess(request, timeout=120))
    assert report.inputs.series_uid == shared_series_in_orthanc.series_uid
    assert report.inputs.study_uid == shared_series_in_orthanc.study_uid
    basis = report.fhir_risk_assessment["basis"] if report.fhir_risk_assessment else []
    assert {"system": "urn:dicom:uid", "value": f"urn:oid:{shared_series_in_orthanc.study_uid}"} in [
        b.get("identifier") for b in basis
    ]


def test_extract_bone_features_is_cached_by_series(
    stub: pb_grpc.FractureRiskServiceStub, shared_series_in_orthanc: StoredSeries
) -> None:
    request = pb.ExtractBoneFeaturesRequest(
        pacs_series=pb.PacsSeries(
            study_uid=shared_series_in_orthanc.study_uid, series_uid=shared_series_in_orthanc.series_uid
        )
    )
    first = stub.ExtractBoneFeatures(request, timeout=120)
    import time

    started = time.perf_counter()
    second = stub.ExtractBoneFeatures(request, timeout=120)
    assert time.perf_counter() - started < 0.5
    assert first == second
    assert first.source.contrast == "contrast"  # the Biograph series is contrast-enhanced (tag and aorta)


def test_get_model_info_is_the_loaded_card(stub: pb_grpc.FractureRiskServiceStub) -> None:
    card = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    model = load_model(default_model_dir())
    assert (card.id, card.version, card.sha256) == (model.card.id, model.card.version, model.sha256)
    assert card.not_for_clinical_use
    assert {f.name for f in card.features} >= {"age_years", "sex"}


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (lambda r: r.ClearField("variables"), "clinical", "REQUIRED"),
        (lambda r: setattr(r, "index_date", "01/05/2024"), "index_date", "INVALID_DATE"),
        (lambda r: r.outcomes.append("wrist_fracture"), "outcomes", "UNKNOWN_OUTCOME"),
        (lambda r: r.horizons_years.append(25), "horizons_years", "HORIZON_OUT_OF_RANGE"),
        (lambda r: setattr(r, "patient_id", ""), "patient_id", "REQUIRED"),
        (lambda r: setattr(r, "index_date", "20240501"), "index_date", "INVALID_DATE"),
        (lambda r: setattr(r, "index_date", "2024-W18-3"), "index_date", "INVALID_DATE"),
        (lambda r: setattr(r, "index_date", "9999-12-31"), "index_date", "DATE_OUT_OF_RANGE"),
        (lambda r: r.horizons_years.extend(float(h) for h in range(1, 12)), "horizons_years", "TOO_MANY_HORIZONS"),
        (lambda r: r.horizons_years.extend([5.0] * 20000), "horizons_years", "TOO_MANY_HORIZONS"),
        (lambda r: setattr(r, "segmentation_backend", "nnunet"), "segmentation_backend", "UNKNOWN_BACKEND"),
    ],
)
def test_bad_requests_name_the_field(
    stub: pb_grpc.FractureRiskServiceStub, mutate: Callable[[pb.AssessRequest], object], field: str, reason: str
) -> None:
    request = _precomputed_request()
    mutate(request)
    with pytest.raises(grpc.RpcError) as err:
        stub.Assess(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violation(err.value) == (field, reason)


def test_bad_payloads_are_invalid_argument(stub: pb_grpc.FractureRiskServiceStub) -> None:
    request = _precomputed_request()
    request.inline_image.format = pb.InlineImage.NIFTI
    request.inline_image.data = b"\x1f\x8b not really a nifti"
    with pytest.raises(grpc.RpcError) as err:
        stub.Assess(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violation(err.value)[0] == "imaging"

    request.inline_image.data = b"\0" * (9 * 1024 * 1024)  # over this server's 8 MiB inline limit
    with pytest.raises(grpc.RpcError) as err:
        stub.Assess(request, timeout=30)
    assert _violation(err.value) == ("imaging.inline_image", "PAYLOAD_TOO_LARGE")

    request = pb.AssessRequest(fhir_bundle=pb.FhirBundle(json=b"{not json"))
    with pytest.raises(grpc.RpcError) as err:
        stub.Assess(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_assess_stream_answers_each_request_in_order(stub: pb_grpc.FractureRiskServiceStub) -> None:
    good = _precomputed_request()
    bad = _precomputed_request()
    bad.index_date = "never"
    bad.request_id = ""
    replies = list(stub.AssessStream(iter([good, bad, good]), timeout=60))
    assert [r.request_id for r in replies] == ["r1", "#1", "r1"]
    assert [r.WhichOneof("result") for r in replies] == ["report", "error", "report"]
    assert replies[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert convert.risk_report_from_proto(replies[0].report) == convert.risk_report_from_proto(replies[2].report)


def test_remote_and_in_process_cli_print_the_same_json(
    service: tuple[RunningServer, grpc.Channel, Path], shared_data: Callable[[str], Path], tmp_path: Path
) -> None:
    from server.cli.main import main

    args = [
        "assess",
        "--fhir",
        str(shared_data(WILLIA)),
        "--ct",
        str(shared_data("ct/totalseg/example_ct_sm.nii.gz")),
        "--labels",
        str(shared_data("ct/totalseg/example_seg.nii.gz")),
        "--index-date",
        "2019-06-01",
        "--json",
    ]
    import contextlib
    import io

    outputs = []
    for extra in ([], ["--server", f"127.0.0.1:{service[0].port}"]):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            assert main([*args, *extra]) == 0
        outputs.append(buffer.getvalue())
    local, remote = (RiskReport.model_validate_json(text) for text in outputs)
    assert local == remote
    assert outputs[0] == outputs[1]


def test_a_backend_the_server_has_not_configured_is_refused(
    stub: pb_grpc.FractureRiskServiceStub, shared_data: Callable[[str], Path]
) -> None:
    request = _precomputed_request()
    request.ClearField("bone_features")
    request.segmentation_backend = "monai"
    request.inline_image.format = pb.InlineImage.NIFTI
    request.inline_image.data = shared_data("ct/totalseg/example_ct_sm.nii.gz").read_bytes()
    with pytest.raises(grpc.RpcError) as err:
        stub.Assess(request, timeout=60)
    assert _violation(err.value) == ("segmentation_backend", "BACKEND_NOT_CONFIGURED")


def test_server_limits_on_ct_size_and_bundle_size(shared_data: Callable[[str], Path]) -> None:
    """A CT bigger than `max_ct_voxels` is refused before it is allocated; a Bundle over its limit likewise."""
    config = ServerConfig(port=0, max_ct_voxels=100_000, max_fhir_bundle_bytes=100_000)
    running = start(config)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            wait_serving(channel)
            stub = pb_grpc.FractureRiskServiceStub(channel)
            request = _precomputed_request()
            request.ClearField("bone_features")
            request.inline_image.format = pb.InlineImage.NIFTI
            request.inline_image.data = shared_data("ct/totalseg/example_ct_sm.nii.gz").read_bytes()  # 369,660 voxels
            with pytest.raises(grpc.RpcError) as err:
                stub.Assess(request, timeout=60)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "VOLUME_TOO_LARGE" in _violation(err.value)[1]
            bundle = pb.AssessRequest(index_date="2019-06-01")
            bundle.fhir_bundle.json = shared_data(WILLIA).read_bytes()  # 589 kB
            with pytest.raises(grpc.RpcError) as err:
                stub.Assess(bundle, timeout=60)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        running.stop(0)
