"""Domain exceptions mapped to gRPC status codes, once, at the edge (google.rpc rich error model).

Each package raises its own exceptions (`imaging.errors`, `clinical.errors`, `fusion.errors`); this
module turns them into a `google.rpc.Status` with a `BadRequest` field violation or an `ErrorInfo`.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from clinical import errors as clinical_errors
from fusion import errors as fusion_errors
from imaging import errors as imaging_errors

ERROR_DOMAIN = "osteorisk.org"


class RequestError(Exception):
    """A request field is invalid; raised by the server's own request translation."""

    def __init__(self, field: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason


class PacsUnavailableError(Exception):
    """The configured PACS did not answer, timed out, or answered with a server error (UNAVAILABLE)."""

    reason = "PACS_UNAVAILABLE"


class PacsNotFoundError(Exception):
    """The PACS holds no such study or series, or no CT series in the study (NOT_FOUND)."""

    reason = "SERIES_NOT_FOUND"


class ServerBusyError(Exception):
    """Every CT slot is taken for longer than the caller's deadline allows (RESOURCE_EXHAUSTED): retry later."""

    reason = "SERVER_BUSY"


@dataclass(frozen=True)
class _Mapping:
    code: grpc.StatusCode
    field: str | None  # request field for a BadRequest violation; None -> ErrorInfo


_MAPPINGS: tuple[tuple[type[Exception], _Mapping], ...] = (
    (PacsUnavailableError, _Mapping(grpc.StatusCode.UNAVAILABLE, None)),
    (PacsNotFoundError, _Mapping(grpc.StatusCode.NOT_FOUND, None)),
    (ServerBusyError, _Mapping(grpc.StatusCode.RESOURCE_EXHAUSTED, None)),
    (imaging_errors.BackendUnavailableError, _Mapping(grpc.StatusCode.FAILED_PRECONDITION, None)),
    (imaging_errors.UnusableImageError, _Mapping(grpc.StatusCode.FAILED_PRECONDITION, None)),
    (imaging_errors.ImageInputError, _Mapping(grpc.StatusCode.INVALID_ARGUMENT, "imaging")),
    (clinical_errors.PatientNotFoundError, _Mapping(grpc.StatusCode.NOT_FOUND, None)),
    (clinical_errors.PatientDeceasedError, _Mapping(grpc.StatusCode.FAILED_PRECONDITION, None)),
    (clinical_errors.FhirSourceUnavailableError, _Mapping(grpc.StatusCode.UNAVAILABLE, None)),
    (clinical_errors.FhirInputError, _Mapping(grpc.StatusCode.INVALID_ARGUMENT, "clinical")),
    (fusion_errors.ModelInputError, _Mapping(grpc.StatusCode.INVALID_ARGUMENT, "clinical.variables")),
    (fusion_errors.ModelArtifactError, _Mapping(grpc.StatusCode.FAILED_PRECONDITION, None)),
    (imaging_errors.ProcessingCancelledError, _Mapping(grpc.StatusCode.CANCELLED, None)),
    # base classes last: a subclass added later still gets a sensible code
    (imaging_errors.ImagingError, _Mapping(grpc.StatusCode.FAILED_PRECONDITION, None)),
    (clinical_errors.ClinicalError, _Mapping(grpc.StatusCode.INVALID_ARGUMENT, "clinical")),
    (fusion_errors.FusionError, _Mapping(grpc.StatusCode.INVALID_ARGUMENT, "clinical")),
)


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _bad_request(code: grpc.StatusCode, field: str, reason: str, message: str) -> status_pb2.Status:
    details = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field=field, description=message, reason=reason)]
    )
    return status_pb2.Status(code=code.value[0], message=message, details=[_pack(details)])


def _error_info(code: grpc.StatusCode, reason: str, message: str) -> status_pb2.Status:
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN)
    return status_pb2.Status(code=code.value[0], message=message, details=[_pack(info)])


def status_for(exc: Exception) -> status_pb2.Status:
    """The google.rpc.Status of a domain exception; anything unknown is INTERNAL without its text."""
    if isinstance(exc, RequestError):
        return _bad_request(grpc.StatusCode.INVALID_ARGUMENT, exc.field, exc.reason, str(exc))
    for exc_type, mapping in _MAPPINGS:
        if isinstance(exc, exc_type):
            reason = str(getattr(exc, "reason", exc_type.__name__))
            if mapping.field is not None:
                field = str(getattr(exc, "field", None) or mapping.field)
                return _bad_request(mapping.code, field, reason, str(exc))
            return _error_info(mapping.code, reason, str(exc))
    return status_pb2.Status(code=code_pb2.INTERNAL, message=f"internal error ({type(exc).__name__}); see server log")
