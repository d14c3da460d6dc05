from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from server.generated.osteorisk.v1 import bone_features_pb2 as _bone_features_pb2
from server.generated.osteorisk.v1 import clinical_record_pb2 as _clinical_record_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Diagnosis(_message.Message):
    __slots__ = ("category", "probabilities", "method", "basis")
    class ProbabilitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    BASIS_FIELD_NUMBER: _ClassVar[int]
    category: str
    probabilities: _containers.ScalarMap[str, float]
    method: str
    basis: str
    def __init__(self, category: _Optional[str] = ..., probabilities: _Optional[_Mapping[str, float]] = ..., method: _Optional[str] = ..., basis: _Optional[str] = ...) -> None: ...

class ScreeningFlag(_message.Message):
    __slots__ = ("code", "severity", "reason")
    CODE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    code: str
    severity: str
    reason: str
    def __init__(self, code: _Optional[str] = ..., severity: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("outcome", "horizon_years", "probability", "ci95")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    HORIZON_YEARS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    CI95_FIELD_NUMBER: _ClassVar[int]
    outcome: str
    horizon_years: float
    probability: float
    ci95: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, outcome: _Optional[str] = ..., horizon_years: _Optional[float] = ..., probability: _Optional[float] = ..., ci95: _Optional[_Iterable[float]] = ...) -> None: ...

class Explanation(_message.Message):
    __slots__ = ("feature", "value", "contribution", "outcome")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    feature: str
    value: _struct_pb2.Value
    contribution: float
    outcome: str
    def __init__(self, feature: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., contribution: _Optional[float] = ..., outcome: _Optional[str] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("id", "version", "sha256", "trained_on", "intended_use")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    TRAINED_ON_FIELD_NUMBER: _ClassVar[int]
    INTENDED_USE_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: str
    sha256: str
    trained_on: str
    intended_use: str
    def __init__(self, id: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ..., trained_on: _Optional[str] = ..., intended_use: _Optional[str] = ...) -> None: ...

class AssessmentInputs(_message.Message):
    __slots__ = ("clinical_sources", "series_uid", "study_uid", "segmentation_backend", "features_used", "imputed", "missing", "clinical", "imaging")
    class FeaturesUsedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    CLINICAL_SOURCES_FIELD_NUMBER: _ClassVar[int]
    SERIES_UID_FIELD_NUMBER: _ClassVar[int]
    STUDY_UID_FIELD_NUMBER: _ClassVar[int]
    SEGMENTATION_BACKEND_FIELD_NUMBER: _ClassVar[int]
    FEATURES_USED_FIELD_NUMBER: _ClassVar[int]
    IMPUTED_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    CLINICAL_FIELD_NUMBER: _ClassVar[int]
    IMAGING_FIELD_NUMBER: _ClassVar[int]
    clinical_sources: _containers.RepeatedScalarFieldContainer[str]
    series_uid: str
    study_uid: str
    segmentation_backend: str
    features_used: _containers.ScalarMap[str, float]
    imputed: _containers.RepeatedScalarFieldContainer[str]
    missing: _containers.RepeatedScalarFieldContainer[str]
    clinical: _clinical_record_pb2.ClinicalRecord
    imaging: _bone_features_pb2.FeatureSummary
    def __init__(self, clinical_sources: _Optional[_Iterable[str]] = ..., series_uid: _Optional[str] = ..., study_uid: _Optional[str] = ..., segmentation_backend: _Optional[str] = ..., features_used: _Optional[_Mapping[str, float]] = ..., imputed: _Optional[_Iterable[str]] = ..., missing: _Optional[_Iterable[str]] = ..., clinical: _Optional[_Union[_clinical_record_pb2.ClinicalRecord, _Mapping]] = ..., imaging: _Optional[_Union[_bone_features_pb2.FeatureSummary, _Mapping]] = ...) -> None: ...

class RiskReport(_message.Message):
    __slots__ = ("schema", "patient_id", "index_date", "diagnosis", "screening_flags", "predictions", "explanations", "model", "inputs", "warnings", "fhir_risk_assessment_json")
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_DATE_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSIS_FIELD_NUMBER: _ClassVar[int]
    SCREENING_FLAGS_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    FHIR_RISK_ASSESSMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    schema: str
    patient_id: str
    index_date: str
    diagnosis: Diagnosis
    screening_flags: _containers.RepeatedCompositeFieldContainer[ScreeningFlag]
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    explanations: _containers.RepeatedCompositeFieldContainer[Explanation]
    model: ModelRef
    inputs: AssessmentInputs
    warnings: _containers.RepeatedScalarFieldContainer[str]
    fhir_risk_assessment_json: str
    def __init__(self, schema: _Optional[str] = ..., patient_id: _Optional[str] = ..., index_date: _Optional[str] = ..., diagnosis: _Optional[_Union[Diagnosis, _Mapping]] = ..., screening_flags: _Optional[_Iterable[_Union[ScreeningFlag, _Mapping]]] = ..., predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ..., explanations: _Optional[_Iterable[_Union[Explanation, _Mapping]]] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ..., inputs: _Optional[_Union[AssessmentInputs, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ..., fhir_risk_assessment_json: _Optional[str] = ...) -> None: ...
