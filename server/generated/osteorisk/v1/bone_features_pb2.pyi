from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImageSource(_message.Message):
    __slots__ = ("kind", "series_uid", "study_uid", "study_date", "modality", "manufacturer", "kvp", "contrast", "contrast_agent", "kernel", "slice_thickness_mm", "spacing_mm", "shape", "selection_reason")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SERIES_UID_FIELD_NUMBER: _ClassVar[int]
    STUDY_UID_FIELD_NUMBER: _ClassVar[int]
    STUDY_DATE_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    MANUFACTURER_FIELD_NUMBER: _ClassVar[int]
    KVP_FIELD_NUMBER: _ClassVar[int]
    CONTRAST_FIELD_NUMBER: _ClassVar[int]
    CONTRAST_AGENT_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    SLICE_THICKNESS_MM_FIELD_NUMBER: _ClassVar[int]
    SPACING_MM_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    SELECTION_REASON_FIELD_NUMBER: _ClassVar[int]
    kind: str
    series_uid: str
    study_uid: str
    study_date: str
    modality: str
    manufacturer: str
    kvp: float
    contrast: str
    contrast_agent: str
    kernel: str
    slice_thickness_mm: float
    spacing_mm: _containers.RepeatedScalarFieldContainer[float]
    shape: _containers.RepeatedScalarFieldContainer[int]
    selection_reason: str
    def __init__(self, kind: _Optional[str] = ..., series_uid: _Optional[str] = ..., study_uid: _Optional[str] = ..., study_date: _Optional[str] = ..., modality: _Optional[str] = ..., manufacturer: _Optional[str] = ..., kvp: _Optional[float] = ..., contrast: _Optional[str] = ..., contrast_agent: _Optional[str] = ..., kernel: _Optional[str] = ..., slice_thickness_mm: _Optional[float] = ..., spacing_mm: _Optional[_Iterable[float]] = ..., shape: _Optional[_Iterable[int]] = ..., selection_reason: _Optional[str] = ...) -> None: ...

class Segmentation(_message.Message):
    __slots__ = ("backend", "label_convention", "model", "parameters")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    LABEL_CONVENTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    backend: str
    label_convention: str
    model: str
    parameters: _containers.ScalarMap[str, str]
    def __init__(self, backend: _Optional[str] = ..., label_convention: _Optional[str] = ..., model: _Optional[str] = ..., parameters: _Optional[_Mapping[str, str]] = ...) -> None: ...

class VertebraMeasurement(_message.Message):
    __slots__ = ("level", "hu_mean", "hu_median", "hu_sd", "hu_p05", "hu_p25", "hu_p75", "hu_p95", "roi_volume_ml", "vbmd_mg_cm3", "height_anterior_mm", "height_middle_mm", "height_posterior_mm", "genant_grade", "texture", "confidence", "qc", "excluded", "exclusion_reason", "center_mm")
    class TextureEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    HU_MEAN_FIELD_NUMBER: _ClassVar[int]
    HU_MEDIAN_FIELD_NUMBER: _ClassVar[int]
    HU_SD_FIELD_NUMBER: _ClassVar[int]
    HU_P05_FIELD_NUMBER: _ClassVar[int]
    HU_P25_FIELD_NUMBER: _ClassVar[int]
    HU_P75_FIELD_NUMBER: _ClassVar[int]
    HU_P95_FIELD_NUMBER: _ClassVar[int]
    ROI_VOLUME_ML_FIELD_NUMBER: _ClassVar[int]
    VBMD_MG_CM3_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_ANTERIOR_MM_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_MIDDLE_MM_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_POSTERIOR_MM_FIELD_NUMBER: _ClassVar[int]
    GENANT_GRADE_FIELD_NUMBER: _ClassVar[int]
    TEXTURE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    QC_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_FIELD_NUMBER: _ClassVar[int]
    EXCLUSION_REASON_FIELD_NUMBER: _ClassVar[int]
    CENTER_MM_FIELD_NUMBER: _ClassVar[int]
    level: str
    hu_mean: float
    hu_median: float
    hu_sd: float
    hu_p05: float
    hu_p25: float
    hu_p75: float
    hu_p95: float
    roi_volume_ml: float
    vbmd_mg_cm3: float
    height_anterior_mm: float
    height_middle_mm: float
    height_posterior_mm: float
    genant_grade: int
    texture: _containers.ScalarMap[str, float]
    confidence: float
    qc: _containers.RepeatedScalarFieldContainer[str]
    excluded: bool
    exclusion_reason: str
    center_mm: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, level: _Optional[str] = ..., hu_mean: _Optional[float] = ..., hu_median: _Optional[float] = ..., hu_sd: _Optional[float] = ..., hu_p05: _Optional[float] = ..., hu_p25: _Optional[float] = ..., hu_p75: _Optional[float] = ..., hu_p95: _Optional[float] = ..., roi_volume_ml: _Optional[float] = ..., vbmd_mg_cm3: _Optional[float] = ..., height_anterior_mm: _Optional[float] = ..., height_middle_mm: _Optional[float] = ..., height_posterior_mm: _Optional[float] = ..., genant_grade: _Optional[int] = ..., texture: _Optional[_Mapping[str, float]] = ..., confidence: _Optional[float] = ..., qc: _Optional[_Iterable[str]] = ..., excluded: _Optional[bool] = ..., exclusion_reason: _Optional[str] = ..., center_mm: _Optional[_Iterable[float]] = ...) -> None: ...

class FeatureSummary(_message.Message):
    __slots__ = ("l1_hu", "mean_hu_l1_l4", "vbmd_l1_l2_mg_cm3", "acr_category", "levels_used")
    L1_HU_FIELD_NUMBER: _ClassVar[int]
    MEAN_HU_L1_L4_FIELD_NUMBER: _ClassVar[int]
    VBMD_L1_L2_MG_CM3_FIELD_NUMBER: _ClassVar[int]
    ACR_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    LEVELS_USED_FIELD_NUMBER: _ClassVar[int]
    l1_hu: float
    mean_hu_l1_l4: float
    vbmd_l1_l2_mg_cm3: float
    acr_category: str
    levels_used: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, l1_hu: _Optional[float] = ..., mean_hu_l1_l4: _Optional[float] = ..., vbmd_l1_l2_mg_cm3: _Optional[float] = ..., acr_category: _Optional[str] = ..., levels_used: _Optional[_Iterable[str]] = ...) -> None: ...

class CalibrationReference(_message.Message):
    __slots__ = ("tissue", "hu", "n_voxels", "reference_density_mg_cm3", "residual_mg_cm3")
    TISSUE_FIELD_NUMBER: _ClassVar[int]
    HU_FIELD_NUMBER: _ClassVar[int]
    N_VOXELS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_DENSITY_MG_CM3_FIELD_NUMBER: _ClassVar[int]
    RESIDUAL_MG_CM3_FIELD_NUMBER: _ClassVar[int]
    tissue: str
    hu: float
    n_voxels: int
    reference_density_mg_cm3: float
    residual_mg_cm3: float
    def __init__(self, tissue: _Optional[str] = ..., hu: _Optional[float] = ..., n_voxels: _Optional[int] = ..., reference_density_mg_cm3: _Optional[float] = ..., residual_mg_cm3: _Optional[float] = ...) -> None: ...

class Calibration(_message.Message):
    __slots__ = ("method", "slope", "intercept", "r2", "residual_sd_mg_cm3", "references", "status", "reason")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    SLOPE_FIELD_NUMBER: _ClassVar[int]
    INTERCEPT_FIELD_NUMBER: _ClassVar[int]
    R2_FIELD_NUMBER: _ClassVar[int]
    RESIDUAL_SD_MG_CM3_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    method: str
    slope: float
    intercept: float
    r2: float
    residual_sd_mg_cm3: float
    references: _containers.RepeatedCompositeFieldContainer[CalibrationReference]
    status: str
    reason: str
    def __init__(self, method: _Optional[str] = ..., slope: _Optional[float] = ..., intercept: _Optional[float] = ..., r2: _Optional[float] = ..., residual_sd_mg_cm3: _Optional[float] = ..., references: _Optional[_Iterable[_Union[CalibrationReference, _Mapping]]] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class BoneFeatures(_message.Message):
    __slots__ = ("schema", "source", "segmentation", "levels", "summary", "calibration", "warnings")
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SEGMENTATION_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    schema: str
    source: ImageSource
    segmentation: Segmentation
    levels: _containers.RepeatedCompositeFieldContainer[VertebraMeasurement]
    summary: FeatureSummary
    calibration: Calibration
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, schema: _Optional[str] = ..., source: _Optional[_Union[ImageSource, _Mapping]] = ..., segmentation: _Optional[_Union[Segmentation, _Mapping]] = ..., levels: _Optional[_Iterable[_Union[VertebraMeasurement, _Mapping]]] = ..., summary: _Optional[_Union[FeatureSummary, _Mapping]] = ..., calibration: _Optional[_Union[Calibration, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...
