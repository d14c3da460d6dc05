"""Domain types of `imaging/`: a CT volume that carries its geometry, and the bone features measured on it.

`Volume` and `LabelMap` hold voxels (numpy) and are not serialised; `BoneFeatures` and its parts are the
JSON contract `osteorisk.bone_features/1` of DESIGN.md (the CLI's `features --json` output).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Final, Literal, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from imaging.errors import GeometryError

BONE_FEATURES_SCHEMA: Final = "osteorisk.bone_features/1"

ContrastPhase = Literal["native", "contrast", "unknown"]
SourceKind = Literal["dicom", "nifti", "dicomweb"]
SegmentationBackendName = Literal["builtin", "labels", "totalsegmentator", "monai"]
AcrCategory = Literal["normal", "low_bone_density", "osteoporosis"]
CalibrationStatus = Literal["ok", "warning", "refused"]


def _validated_affine(affine: npt.ArrayLike) -> npt.NDArray[np.float64]:
    matrix = np.asarray(affine, dtype=np.float64)
    if matrix.shape != (4, 4):
        raise GeometryError(f"affine must be 4x4, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise GeometryError("affine contains NaN or infinite values")
    if not np.allclose(matrix[3], [0.0, 0.0, 0.0, 1.0]):
        raise GeometryError(f"affine's last row must be [0, 0, 0, 1], got {matrix[3].tolist()}")
    if abs(np.linalg.det(matrix[:3, :3])) < 1e-9:
        raise GeometryError("affine is singular (a zero voxel spacing or collinear axes)")
    matrix.setflags(write=False)
    return matrix


@dataclass(frozen=True)
class _Image:
    """Voxels with one validated float64 voxel-to-scanner affine (RAS+ millimetres).

    Spacing, origin and orientation are derived from the affine, never stored twice.
    """

    array: npt.NDArray[np.generic]
    affine: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise GeometryError(f"image must be 3-D, got {self.array.ndim}-D with shape {self.array.shape}")
        object.__setattr__(self, "affine", _validated_affine(self.affine))

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.array.shape
        return (int(s[0]), int(s[1]), int(s[2]))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the array axes (column norms of the affine)."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(norms[0]), float(norms[1]), float(norms[2]))

    @property
    def origin(self) -> tuple[float, float, float]:
        """Scanner (RAS) coordinate in mm of the centre of voxel (0, 0, 0)."""
        o = self.affine[:3, 3]
        return (float(o[0]), float(o[1]), float(o[2]))

    @property
    def orientation(self) -> tuple[str, str, str]:
        """Axis codes (nibabel convention: the direction each array axis points to, e.g. R, A, S)."""
        import nibabel as nib

        codes = nib.orientations.aff2axcodes(self.affine)
        return (str(codes[0]), str(codes[1]), str(codes[2]))

    def same_geometry(self, other: _Image, *, atol_mm: float = 1e-3) -> bool:
        """True when both images share shape and affine (within `atol_mm`)."""
        return self.shape == other.shape and bool(np.allclose(self.affine, other.affine, atol=atol_mm))


@dataclass(frozen=True)
class AcquisitionInfo:
    """Acquisition metadata kept from the DICOM or NIfTI header (None when the header lacks it)."""

    kind: SourceKind
    series_uid: str | None = None
    study_uid: str | None = None
    study_date: date | None = None
    modality: str | None = None
    manufacturer: str | None = None
    kvp: float | None = None
    contrast_agent: str | None = None
    kernel: str | None = None
    slice_thickness_mm: float | None = None
    image_type: tuple[str, ...] = ()
    selection_reason: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    series_description: str | None = None
    kernel_class: str | None = None
    """soft_tissue | intermediate | sharp | unknown (imaging/io/data/ct_kernels.json); None for NIfTI."""
    transfer_syntax: str | None = None
    source_orientation: str | None = None
    """Axis codes of the data as stored (e.g. "LPS" for a standard axial DICOM series, "LAS"), before
    reorientation to the canonical RAS."""
    gantry_tilt_deg: float | None = None
    """Gantry tilt measured from the slice geometry (0 for an orthogonal stack; None for NIfTI)."""


@dataclass(frozen=True)
class Volume(_Image):
    """A CT intensity volume in Hounsfield units (float32) with its geometry and acquisition metadata."""

    acquisition: AcquisitionInfo = field(default_factory=lambda: AcquisitionInfo(kind="nifti"))


@dataclass(frozen=True)
class LabelMap(_Image):
    """An integer label map (e.g. vertebra ids); resampling it is nearest-neighbour by construction."""

    convention: str = "totalsegmentator"


V = TypeVar("V")


def _sorted_keys(mapping: dict[str, V]) -> dict[str, V]:
    """Maps serialise in key order, so that the same content gives the same JSON whatever path built it."""
    return dict(sorted(mapping.items()))


FloatMap = Annotated[dict[str, float], AfterValidator(_sorted_keys)]
StrMap = Annotated[dict[str, str], AfterValidator(_sorted_keys)]


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True, allow_inf_nan=False
    )


class ImageSource(_Model):
    """Where the CT came from and how it was acquired."""

    kind: SourceKind
    series_uid: str | None = None
    study_uid: str | None = None
    study_date: date | None = None
    modality: str | None = None
    manufacturer: str | None = None
    kvp: float | None = Field(default=None, description="peak tube voltage, kV")
    contrast: ContrastPhase = "unknown"
    contrast_agent: str | None = None
    kernel: str | None = None
    slice_thickness_mm: float | None = None
    spacing_mm: tuple[float, float, float] | None = None
    shape: tuple[int, int, int] | None = None
    selection_reason: str | None = None


class SegmentationInfo(_Model):
    """How the vertebrae were found, with the parameters used (provenance)."""

    backend: SegmentationBackendName
    label_convention: str | None = None
    model: str | None = None
    parameters: StrMap = Field(default_factory=dict)


class VertebraMeasurement(_Model):
    """Measurements of one vertebra: trabecular attenuation, density, heights, texture and QC."""

    level: str = Field(pattern=r"^(C[1-7]|T([1-9]|1[0-3])|L[1-6]|S1)$")
    hu_mean: float | None = None
    hu_median: float | None = None
    hu_sd: float | None = None
    hu_p05: float | None = None
    hu_p25: float | None = None
    hu_p75: float | None = None
    hu_p95: float | None = None
    roi_volume_ml: float | None = Field(default=None, ge=0)
    vbmd_mg_cm3: float | None = None
    height_anterior_mm: float | None = Field(default=None, ge=0)
    height_middle_mm: float | None = Field(default=None, ge=0)
    height_posterior_mm: float | None = Field(default=None, ge=0)
    genant_grade: int | None = Field(default=None, ge=0, le=3)
    texture: FloatMap = Field(default_factory=dict)
    confidence: float = Field(ge=0.0, le=1.0)
    qc: list[str] = Field(default_factory=list)
    excluded: bool = False
    exclusion_reason: str | None = None
    center_mm: tuple[float, float, float] | None = None


class FeatureSummary(_Model):
    """Scan-level values used by the models (canonical cohort column names)."""

    l1_hu: float | None = None
    mean_hu_l1_l4: float | None = None
    vbmd_l1_l2_mg_cm3: float | None = None
    acr_category: AcrCategory | None = None
    levels_used: list[str] = Field(default_factory=list)


class CalibrationReference(_Model):
    tissue: Literal["air", "subcutaneous_fat", "visceral_fat", "muscle", "blood"]
    hu: float
    n_voxels: int = Field(ge=0)
    reference_density_mg_cm3: float
    residual_mg_cm3: float = 0.0


class Calibration(_Model):
    """The phantomless HU -> vBMD fit: vBMD = slope * HU + intercept."""

    method: str
    slope: float
    intercept: float
    r2: float
    residual_sd_mg_cm3: float
    references: list[CalibrationReference] = Field(default_factory=list)
    status: CalibrationStatus = "ok"
    reason: str | None = None


class BoneFeatures(_Model):
    """All bone features of one CT series (JSON contract `osteorisk.bone_features/1`)."""

    schema_id: Literal["osteorisk.bone_features/1"] = Field(default=BONE_FEATURES_SCHEMA, alias="schema")
    source: ImageSource
    segmentation: SegmentationInfo
    levels: list[VertebraMeasurement] = Field(default_factory=list)
    summary: FeatureSummary = Field(default_factory=FeatureSummary)
    calibration: Calibration | None = None
    warnings: list[str] = Field(default_factory=list)

    def level(self, name: str) -> VertebraMeasurement | None:
        """The measurement of one level, or None when it was not found."""
        return next((m for m in self.levels if m.level == name), None)
