"""Requests off the wire: protobuf request messages -> domain-level `AssessmentRequest`s.

Every field is checked here, with the field path in the error (google.rpc.BadRequest), before any work.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from fusion.types import DEFAULT_HORIZONS_YEARS, OUTCOMES
from imaging.io import folder_files, is_nifti_path
from server.assessment import (
    MAX_HORIZONS,
    AssessmentRequest,
    ClinicalInput,
    FhirPatientRef,
    ImagingInput,
    InlineBundle,
    InlineCt,
    InlineVariables,
    LocalCt,
    PacsSeriesRef,
    PrecomputedFeatures,
    parse_index_date,
)
from server.convert import (
    bone_features_from_proto,
    bone_features_to_proto,
    clinical_variables_from_proto,
    clinical_variables_to_proto,
)
from server.errors import RequestError
from server.generated.osteorisk.v1 import fracture_risk_service_pb2 as pb
from server.security import Behaviour, wrap_handler

_MAX_ID_LENGTH = 128  # FHIR ids are at most 64 characters (R4 datatypes: id); room for pseudonyms
SEGMENTATION_BACKENDS = ("builtin", "labels", "monai", "totalsegmentator")
_CONVENTIONS = ("totalsegmentator", "verse")


def _checked_id(value: str, field: str) -> str:
    if len(value) > _MAX_ID_LENGTH or any(ord(c) < 32 for c in value):
        raise RequestError(field, "INVALID_ID", f"{field} must be at most {_MAX_ID_LENGTH} printable characters")
    return value


def _clinical(request: pb.AssessRequest) -> ClinicalInput:
    which = request.WhichOneof("clinical")
    if which == "variables":
        try:
            return InlineVariables(clinical_variables_from_proto(request.variables))
        except (ValueError, json_format.Error) as exc:
            raise RequestError("clinical.variables", "INVALID_VARIABLES", " ".join(str(exc).split())) from None
    if which == "fhir_bundle":
        if not request.fhir_bundle.json:
            raise RequestError("clinical.fhir_bundle.json", "EMPTY", "fhir_bundle.json is empty")
        return InlineBundle(
            request.fhir_bundle.json, _checked_id(request.fhir_bundle.patient_id, "clinical.fhir_bundle.patient_id")
        )
    if which == "fhir_patient":
        return FhirPatientRef(_checked_id(request.fhir_patient.patient_id, "clinical.fhir_patient.patient_id"))
    raise RequestError("clinical", "REQUIRED", "one clinical input is required: variables, fhir_bundle or fhir_patient")


def inline_ct(message: pb.InlineImage, field: str) -> InlineCt:
    convention = message.label_convention or "totalsegmentator"
    if convention not in _CONVENTIONS:
        raise RequestError(
            f"{field}.label_convention", "UNKNOWN_CONVENTION", f"label_convention must be one of {_CONVENTIONS}"
        )
    if message.format == pb.InlineImage.NIFTI:
        return InlineCt("nifti", data=message.data, labels_nifti=message.labels_nifti, label_convention=convention)
    if message.format == pb.InlineImage.DICOM:
        return InlineCt(
            "dicom",
            dicom_instances=tuple(message.dicom_instances),
            labels_nifti=message.labels_nifti,
            label_convention=convention,
        )
    raise RequestError(f"{field}.format", "REQUIRED", "inline_image.format must be NIFTI or DICOM")


def imaging_input(request: pb.AssessRequest | pb.ExtractBoneFeaturesRequest, oneof: str) -> ImagingInput | None:
    which = request.WhichOneof(oneof)
    if which == "bone_features":
        try:
            return PrecomputedFeatures(bone_features_from_proto(request.bone_features))  # type: ignore[union-attr]
        except (ValueError, json_format.Error) as exc:
            raise RequestError("imaging.bone_features", "INVALID_FEATURES", " ".join(str(exc).split())) from None
    if which == "pacs_series":
        return PacsSeriesRef(request.pacs_series.study_uid, request.pacs_series.series_uid)
    if which == "inline_image":
        return inline_ct(request.inline_image, "imaging.inline_image")
    return None


def segmentation_backend(name: str) -> str | None:
    """A request's backend name (checked before any image is fetched), or None for the default."""
    if name and name not in SEGMENTATION_BACKENDS:
        raise RequestError(
            "segmentation_backend", "UNKNOWN_BACKEND", f"segmentation_backend must be one of {SEGMENTATION_BACKENDS}"
        )
    return name or None


def assessment_request(request: pb.AssessRequest) -> AssessmentRequest:
    outcomes = tuple(dict.fromkeys(request.outcomes)) or OUTCOMES  # repeats asked once
    horizons = tuple(request.horizons_years) or DEFAULT_HORIZONS_YEARS
    if len(horizons) <= 4 * MAX_HORIZONS:
        horizons = tuple(dict.fromkeys(horizons))
    backend = segmentation_backend(request.segmentation_backend)
    return AssessmentRequest(
        clinical=_clinical(request),
        imaging=imaging_input(request, "imaging"),
        patient_id=_checked_id(request.patient_id, "patient_id"),
        index_date=parse_index_date(request.index_date),
        outcomes=outcomes,
        horizons_years=horizons,
        segmentation_backend=backend,
    )


def _dicom_files(folder: Path) -> tuple[bytes, ...]:
    """The files the in-process read of the folder takes, in the same order (so both give the same report)."""
    return tuple(p.read_bytes() for p in folder_files(folder))


def to_wire(request: AssessmentRequest) -> pb.AssessRequest:
    """The proto of a CLI-built request, with local files read into inline payloads (for `assess --server`)."""
    message = pb.AssessRequest(
        patient_id=request.patient_id,
        index_date=request.index_date.isoformat() if request.index_date else "",
        outcomes=list(request.outcomes),
        horizons_years=list(request.horizons_years),
        segmentation_backend=request.segmentation_backend or "",
    )
    clinical = request.clinical
    if isinstance(clinical, InlineVariables):
        message.variables.CopyFrom(clinical_variables_to_proto(clinical.variables))
    elif isinstance(clinical, InlineBundle):
        message.fhir_bundle.json = clinical.json
        message.fhir_bundle.patient_id = clinical.patient_id
    elif isinstance(clinical, FhirPatientRef):
        message.fhir_patient.patient_id = clinical.patient_id
    else:
        path = Path(clinical.source)
        if not path.is_file():
            raise RequestError(
                "--fhir",
                "REMOTE_SOURCE",
                "with --server, --fhir must be a Bundle file (sent inline); for a patient on the server's own FHIR "
                "source pass only --patient",
            )
        message.fhir_bundle.json = path.read_bytes()
        message.fhir_bundle.patient_id = clinical.patient_id
    imaging = request.imaging
    if isinstance(imaging, PrecomputedFeatures):
        message.bone_features.CopyFrom(bone_features_to_proto(imaging.features))
    elif isinstance(imaging, PacsSeriesRef):
        message.pacs_series.study_uid = imaging.study_uid
        message.pacs_series.series_uid = imaging.series_uid
    elif isinstance(imaging, InlineCt):
        message.inline_image.CopyFrom(_inline_image_proto(imaging))
    elif isinstance(imaging, LocalCt):
        labels = imaging.labels.read_bytes() if imaging.labels else b""
        convention = imaging.label_convention
        if not imaging.path.is_dir() and is_nifti_path(imaging.path):
            inline = InlineCt("nifti", data=imaging.path.read_bytes(), labels_nifti=labels, label_convention=convention)
        else:  # a DICOM folder, or one (multi-frame) DICOM file
            files = _dicom_files(imaging.path) if imaging.path.is_dir() else (imaging.path.read_bytes(),)
            inline = InlineCt("dicom", dicom_instances=files, labels_nifti=labels, label_convention=convention)
        message.inline_image.CopyFrom(_inline_image_proto(inline))
    return message


def _inline_image_proto(inline: InlineCt) -> pb.InlineImage:
    return pb.InlineImage(
        format=pb.InlineImage.NIFTI if inline.format == "nifti" else pb.InlineImage.DICOM,
        data=inline.data,
        dicom_instances=list(inline.dicom_instances),
        labels_nifti=inline.labels_nifti,
        label_convention=inline.label_convention,
    )


class DecodeGuardInterceptor(grpc.ServerInterceptor):
    """Requests whose bytes do not parse get INVALID_ARGUMENT naming the message type (grpcio's own answer
    would be INTERNAL, which tells a client nothing and reads like a server fault)."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        return guard_decoding(handler)


def guard_decoding(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """`handler`, taking raw request bytes and answering INVALID_ARGUMENT when they do not parse."""
    parse = handler.request_deserializer
    if parse is None:
        return handler
    streaming = handler.request_streaming

    def decode(data: bytes, context: grpc.ServicerContext) -> Any:
        try:
            return parse(data)
        except DecodeError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the request bytes are not a valid protobuf message")

    def around(behaviour: Behaviour) -> Behaviour:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            if streaming:
                return behaviour((decode(item, context) for item in request), context)
            return behaviour(decode(request, context), context)

        return run

    return wrap_handler(handler, around, raw_requests=True)
