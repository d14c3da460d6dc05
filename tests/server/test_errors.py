"""Domain exceptions map to the status codes of DESIGN.md, with google.rpc details."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from clinical import errors as clinical_errors
from fusion import errors as fusion_errors
from imaging import errors as imaging_errors
from server.errors import (
    PacsNotFoundError,
    PacsUnavailableError,
    RequestError,
    status_for,
)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (imaging_errors.ImageInputError("MR series", reason="WRONG_MODALITY"), grpc.StatusCode.INVALID_ARGUMENT),
        (imaging_errors.GeometryError("labels misaligned"), grpc.StatusCode.INVALID_ARGUMENT),
        (imaging_errors.UnusableImageError("no lumbar spine"), grpc.StatusCode.FAILED_PRECONDITION),
        (imaging_errors.BackendUnavailableError("pip install x"), grpc.StatusCode.FAILED_PRECONDITION),
        (imaging_errors.ProcessingCancelledError("caller gave up"), grpc.StatusCode.CANCELLED),
        (clinical_errors.FhirInputError("not JSON"), grpc.StatusCode.INVALID_ARGUMENT),
        (clinical_errors.PatientNotFoundError("no Patient/x"), grpc.StatusCode.NOT_FOUND),
        (clinical_errors.PatientDeceasedError("died 2020"), grpc.StatusCode.FAILED_PRECONDITION),
        (clinical_errors.FhirSourceUnavailableError("HTTP 503"), grpc.StatusCode.UNAVAILABLE),
        (fusion_errors.ModelInputError("age 300"), grpc.StatusCode.INVALID_ARGUMENT),
        (fusion_errors.ModelArtifactError("hash mismatch"), grpc.StatusCode.FAILED_PRECONDITION),
        (PacsUnavailableError("connection refused"), grpc.StatusCode.UNAVAILABLE),
        (PacsNotFoundError("no series"), grpc.StatusCode.NOT_FOUND),
        (RuntimeError("secret detail /etc/passwd"), grpc.StatusCode.INTERNAL),
    ],
)
def test_each_domain_error_has_its_code(exc: Exception, code: grpc.StatusCode) -> None:
    status = status_for(exc)
    assert status.code == code.value[0]
    if code is grpc.StatusCode.INTERNAL:
        assert "secret" not in status.message  # internals never leak to the caller
    else:
        assert str(exc) in status.message


def test_invalid_argument_carries_a_field_violation() -> None:
    status = status_for(RequestError("imaging.pacs_series.study_uid", "INVALID_UID", "not a UID: 'x'"))
    violation = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(violation)
    assert violation.field_violations[0].field == "imaging.pacs_series.study_uid"
    assert violation.field_violations[0].reason == "INVALID_UID"

    status = status_for(imaging_errors.ImageInputError("MR series", reason="WRONG_MODALITY"))
    assert status.details[0].Unpack(violation)
    assert (violation.field_violations[0].field, violation.field_violations[0].reason) == ("imaging", "WRONG_MODALITY")


def test_other_errors_carry_error_info() -> None:
    status = status_for(clinical_errors.PatientNotFoundError("no Patient/x"))
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain) == ("PATIENT_NOT_FOUND", "osteorisk.org")
