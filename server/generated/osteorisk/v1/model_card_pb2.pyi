from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeatureSpec(_message.Message):
    __slots__ = ("name", "unit", "description", "min", "max", "required", "impute_value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    IMPUTE_VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    unit: str
    description: str
    min: float
    max: float
    required: bool
    impute_value: float
    def __init__(self, name: _Optional[str] = ..., unit: _Optional[str] = ..., description: _Optional[str] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., required: _Optional[bool] = ..., impute_value: _Optional[float] = ...) -> None: ...

class ModelCard(_message.Message):
    __slots__ = ("id", "version", "created", "kind", "description", "trained_on", "intended_use", "not_for_clinical_use", "features", "outcomes", "min_horizon_years", "max_horizon_years", "metrics", "training_data_sha256", "files", "sha256", "references", "changelog", "schema", "target", "diagnosis_features")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class FilesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TRAINED_ON_FIELD_NUMBER: _ClassVar[int]
    INTENDED_USE_FIELD_NUMBER: _ClassVar[int]
    NOT_FOR_CLINICAL_USE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    MIN_HORIZON_YEARS_FIELD_NUMBER: _ClassVar[int]
    MAX_HORIZON_YEARS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_DATA_SHA256_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    CHANGELOG_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSIS_FEATURES_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: str
    created: str
    kind: str
    description: str
    trained_on: str
    intended_use: str
    not_for_clinical_use: bool
    features: _containers.RepeatedCompositeFieldContainer[FeatureSpec]
    outcomes: _containers.RepeatedScalarFieldContainer[str]
    min_horizon_years: float
    max_horizon_years: float
    metrics: _containers.ScalarMap[str, float]
    training_data_sha256: str
    files: _containers.ScalarMap[str, str]
    sha256: str
    references: _containers.RepeatedScalarFieldContainer[str]
    changelog: _containers.RepeatedScalarFieldContainer[str]
    schema: str
    target: str
    diagnosis_features: _containers.RepeatedCompositeFieldContainer[FeatureSpec]
    def __init__(self, id: _Optional[str] = ..., version: _Optional[str] = ..., created: _Optional[str] = ..., kind: _Optional[str] = ..., description: _Optional[str] = ..., trained_on: _Optional[str] = ..., intended_use: _Optional[str] = ..., not_for_clinical_use: _Optional[bool] = ..., features: _Optional[_Iterable[_Union[FeatureSpec, _Mapping]]] = ..., outcomes: _Optional[_Iterable[str]] = ..., min_horizon_years: _Optional[float] = ..., max_horizon_years: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ..., training_data_sha256: _Optional[str] = ..., files: _Optional[_Mapping[str, str]] = ..., sha256: _Optional[str] = ..., references: _Optional[_Iterable[str]] = ..., changelog: _Optional[_Iterable[str]] = ..., schema: _Optional[str] = ..., target: _Optional[str] = ..., diagnosis_features: _Optional[_Iterable[_Union[FeatureSpec, _Mapping]]] = ...) -> None: ...
