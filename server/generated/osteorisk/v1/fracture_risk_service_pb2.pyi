from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.rpc import status_pb2 as _status_pb2
from server.generated.osteorisk.v1 import bone_features_pb2 as _bone_features_pb2
from server.generated.osteorisk.v1 import clinical_record_pb2 as _clinical_record_pb2
from server.generated.osteorisk.v1 import model_card_pb2 as _model_card_pb2
from server.generated.osteorisk.v1 import risk_report_pb2 as _risk_report_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FhirBundle(_message.Message):
    __slots__ = ("json", "patient_id")
    JSON_FIELD_NUMBER: _ClassVar[int]
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    json: bytes
    patient_id: str
    def __init__(self, json: _Optional[bytes] = ..., patient_id: _Optional[str] = ...) -> None: ...

class FhirPatient(_message.Message):
    __slots__ = ("patient_id",)
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    patient_id: str
    def __init__(self, patient_id: _Optional[str] = ...) -> None: ...

class PacsSeries(_message.Message):
    __slots__ = ("study_uid", "series_uid")
    STUDY_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_UID_FIELD_NUMBER: _ClassVar[int]
    study_uid: str
    series_uid: str
    def __init__(self, study_uid: _Optional[str] = ..., series_uid: _Optional[str] = ...) -> None: ...

class InlineImage(_message.Message):
    __slots__ = ("format", "data", "dicom_instances", "labels_nifti", "label_convention")
    class Format(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        FORMAT_UNSPECIFIED: _ClassVar[InlineImage.Format]
        NIFTI: _ClassVar[InlineImage.Format]
        DICOM: _ClassVar[InlineImage.Format]
    FORMAT_UNSPECIFIED: InlineImage.Format
    NIFTI: InlineImage.Format
    DICOM: InlineImage.Format
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    DICOM_INSTANCES_FIELD_NUMBER: _ClassVar[int]
    LABELS_NIFTI_FIELD_NUMBER: _ClassVar[int]
    LABEL_CONVENTION_FIELD_NUMBER: _ClassVar[int]
    format: InlineImage.Format
    data: bytes
    dicom_instances: _containers.RepeatedScalarFieldContainer[bytes]
    labels_nifti: bytes
    label_convention: str
    def __init__(self, format: _Optional[_Union[InlineImage.Format, str]] = ..., data: _Optional[bytes] = ..., dicom_instances: _Optional[_Iterable[bytes]] = ..., labels_nifti: _Optional[bytes] = ..., label_convention: _Optional[str] = ...) -> None: ...

class AssessRequest(_message.Message):
    __slots__ = ("request_id", "patient_id", "index_date", "variables", "fhir_bundle", "fhir_patient", "bone_features", "pacs_series", "inline_image", "outcomes", "horizons_years", "segmentation_backend")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_DATE_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    FHIR_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    FHIR_PATIENT_FIELD_NUMBER: _ClassVar[int]
    BONE_FEATURES_FIELD_NUMBER: _ClassVar[int]
    PACS_SERIES_FIELD_NUMBER: _ClassVar[int]
    INLINE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    HORIZONS_YEARS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTATION_BACKEND_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    patient_id: str
    index_date: str
    variables: _clinical_record_pb2.ClinicalVariables
    fhir_bundle: FhirBundle
    fhir_patient: FhirPatient
    bone_features: _bone_features_pb2.BoneFeatures
    pacs_series: PacsSeries
    inline_image: InlineImage
    outcomes: _containers.RepeatedScalarFieldContainer[str]
    horizons_years: _containers.RepeatedScalarFieldContainer[float]
    segmentation_backend: str
    def __init__(self, request_id: _Optional[str] = ..., patient_id: _Optional[str] = ..., index_date: _Optional[str] = ..., variables: _Optional[_Union[_clinical_record_pb2.ClinicalVariables, _Mapping]] = ..., fhir_bundle: _Optional[_Union[FhirBundle, _Mapping]] = ..., fhir_patient: _Optional[_Union[FhirPatient, _Mapping]] = ..., bone_features: _Optional[_Union[_bone_features_pb2.BoneFeatures, _Mapping]] = ..., pacs_series: _Optional[_Union[PacsSeries, _Mapping]] = ..., inline_image: _Optional[_Union[InlineImage, _Mapping]] = ..., outcomes: _Optional[_Iterable[str]] = ..., horizons_years: _Optional[_Iterable[float]] = ..., segmentation_backend: _Optional[str] = ...) -> None: ...

class AssessStreamResponse(_message.Message):
    __slots__ = ("request_id", "report", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    report: _risk_report_pb2.RiskReport
    error: _status_pb2.Status
    def __init__(self, request_id: _Optional[str] = ..., report: _Optional[_Union[_risk_report_pb2.RiskReport, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class ExtractBoneFeaturesRequest(_message.Message):
    __slots__ = ("pacs_series", "inline_image", "segmentation_backend")
    PACS_SERIES_FIELD_NUMBER: _ClassVar[int]
    INLINE_IMAGE_FIELD_NUMBER: _ClassVar[int]
    SEGMENTATION_BACKEND_FIELD_NUMBER: _ClassVar[int]
    pacs_series: PacsSeries
    inline_image: InlineImage
    segmentation_backend: str
    def __init__(self, pacs_series: _Optional[_Union[PacsSeries, _Mapping]] = ..., inline_image: _Optional[_Union[InlineImage, _Mapping]] = ..., segmentation_backend: _Optional[str] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
