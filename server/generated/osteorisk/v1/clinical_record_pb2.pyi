from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClinicalVariable(_message.Message):
    __slots__ = ("value", "status", "sources", "effective", "unit")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    value: _struct_pb2.Value
    status: str
    sources: _containers.RepeatedScalarFieldContainer[str]
    effective: str
    unit: str
    def __init__(self, value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., status: _Optional[str] = ..., sources: _Optional[_Iterable[str]] = ..., effective: _Optional[str] = ..., unit: _Optional[str] = ...) -> None: ...

class ClinicalVariables(_message.Message):
    __slots__ = ("age_years", "sex", "weight_kg", "height_cm", "bmi_kg_m2", "prior_fragility_fracture", "prior_hip_fracture", "prior_vertebral_fracture", "recent_fracture_2y", "falls_last_12m", "parental_hip_fracture", "current_smoker", "glucocorticoids", "rheumatoid_arthritis", "secondary_osteoporosis", "alcohol_3_or_more_units_day", "dxa_t_score_min", "osteoporosis_diagnosis", "osteoporosis_treatment", "prior_forearm_fracture", "prior_humerus_fracture", "prior_other_fracture")
    AGE_YEARS_FIELD_NUMBER: _ClassVar[int]
    SEX_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_KG_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_CM_FIELD_NUMBER: _ClassVar[int]
    BMI_KG_M2_FIELD_NUMBER: _ClassVar[int]
    PRIOR_FRAGILITY_FRACTURE_FIELD_NUMBER: _ClassVar[int]
    PRIOR_HIP_FRACTURE_FIELD_NUMBER: _ClassVar[int]
    PRIOR_VERTEBRAL_FRACTURE_FIELD_NUMBER: _ClassVar[int]
    RECENT_FRACTURE_2Y_FIELD_NUMBER: _ClassVar[int]
    FALLS_LAST_12M_FIELD_NUMBER: _ClassVar[int]
    PARENTAL_HIP_FRACTURE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_SMOKER_FIELD_NUMBER: _ClassVar[int]
    GLUCOCORTICOIDS_FIELD_NUMBER: _ClassVar[int]
    RHEUMATOID_ARTHRITIS_FIELD_NUMBER: _ClassVar[int]
    SECONDARY_OSTEOPOROSIS_FIELD_NUMBER: _ClassVar[int]
    ALCOHOL_3_OR_MORE_UNITS_DAY_FIELD_NUMBER: _ClassVar[int]
    DXA_T_SCORE_MIN_FIELD_NUMBER: _ClassVar[int]
    OSTEOPOROSIS_DIAGNOSIS_FIELD_NUMBER: _ClassVar[int]
    OSTEOPOROSIS_TREATMENT_FIELD_NUMBER: _ClassVar[int]
    PRIOR_FOREARM_FRACTURE_FIELD_NUMBER: _ClassVar[int]
    PRIOR_HUMERUS_FRACTURE_FIELD_NUMBER: _ClassVar[int]
    PRIOR_OTHER_FRACTURE_FIELD_NUMBER: _ClassVar[int]
    age_years: ClinicalVariable
    sex: ClinicalVariable
    weight_kg: ClinicalVariable
    height_cm: ClinicalVariable
    bmi_kg_m2: ClinicalVariable
    prior_fragility_fracture: ClinicalVariable
    prior_hip_fracture: ClinicalVariable
    prior_vertebral_fracture: ClinicalVariable
    recent_fracture_2y: ClinicalVariable
    falls_last_12m: ClinicalVariable
    parental_hip_fracture: ClinicalVariable
    current_smoker: ClinicalVariable
    glucocorticoids: ClinicalVariable
    rheumatoid_arthritis: ClinicalVariable
    secondary_osteoporosis: ClinicalVariable
    alcohol_3_or_more_units_day: ClinicalVariable
    dxa_t_score_min: ClinicalVariable
    osteoporosis_diagnosis: ClinicalVariable
    osteoporosis_treatment: ClinicalVariable
    prior_forearm_fracture: ClinicalVariable
    prior_humerus_fracture: ClinicalVariable
    prior_other_fracture: ClinicalVariable
    def __init__(self, age_years: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., sex: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., weight_kg: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., height_cm: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., bmi_kg_m2: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., prior_fragility_fracture: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., prior_hip_fracture: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., prior_vertebral_fracture: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., recent_fracture_2y: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., falls_last_12m: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., parental_hip_fracture: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., current_smoker: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., glucocorticoids: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., rheumatoid_arthritis: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., secondary_osteoporosis: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., alcohol_3_or_more_units_day: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., dxa_t_score_min: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., osteoporosis_diagnosis: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., osteoporosis_treatment: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., prior_forearm_fracture: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., prior_humerus_fracture: _Optional[_Union[ClinicalVariable, _Mapping]] = ..., prior_other_fracture: _Optional[_Union[ClinicalVariable, _Mapping]] = ...) -> None: ...

class ClinicalRecord(_message.Message):
    __slots__ = ("schema", "patient_id", "index_date", "variables", "warnings")
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_DATE_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    schema: str
    patient_id: str
    index_date: str
    variables: ClinicalVariables
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, schema: _Optional[str] = ..., patient_id: _Optional[str] = ..., index_date: _Optional[str] = ..., variables: _Optional[_Union[ClinicalVariables, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...
