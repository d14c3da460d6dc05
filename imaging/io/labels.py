"""Label maps (NIfTI) aligned to a CT by geometry, never by array order.

A label map is read, reoriented to the canonical RAS orientation (axis permutations and flips only), and
must then share the CT's grid: the same shape and voxel corners within `tolerance_mm` (default: a tenth
of the smallest CT voxel). A label map on another grid is refused with a GeometryError naming both
geometries: resampling someone's segmentation silently would move vertebra boundaries.
Labels must be non-negative integers (integer dtype, or floats that are whole numbers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from imaging.conventions import label_to_level
from imaging.errors import GeometryError, ImageInputError
from imaging.io.nifti import is_nifti_path, open_nifti, raw_canonical
from imaging.io.options import ReadOptions
from imaging.io.orientation import axcodes
from imaging.types import LabelMap, Volume


def describe_geometry(shape: tuple[int, ...], affine: npt.NDArray[np.float64]) -> str:
    """e.g. 'shape 512x512x20, spacing 0.977x0.977x2.000 mm, origin (249.5, -61.5, -804.5) mm, RAS'."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    origin = affine[:3, 3]
    return (
        f"shape {'x'.join(str(int(s)) for s in shape)}, spacing {'x'.join(f'{v:.3f}' for v in spacing)} mm, "
        f"origin ({', '.join(f'{v:.1f}' for v in origin)}) mm, {axcodes(affine)}"
    )


def _corners(shape: tuple[int, ...], affine: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    idx = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
    return (affine @ idx.T).T[:, :3]


def _integer_labels(raw: npt.NDArray[np.generic], where: str) -> npt.NDArray[np.integer]:
    if np.issubdtype(raw.dtype, np.bool_):
        raw = raw.astype(np.uint8)
    if np.issubdtype(raw.dtype, np.floating):
        if not np.all(np.isfinite(raw)):
            raise ImageInputError(f"{where}: label map contains NaN or infinity", reason="NON_INTEGER_LABELS")
        if not np.array_equal(raw, np.round(raw)):
            raise ImageInputError(
                f"{where}: label map holds non-integer values (a probability map or a resampled image?); "
                "give integer labels",
                reason="NON_INTEGER_LABELS",
            )
    elif not np.issubdtype(raw.dtype, np.integer):
        raise ImageInputError(f"{where}: label map of type {raw.dtype} is not integer", reason="NON_INTEGER_LABELS")
    lo, hi = (float(raw.min()), float(raw.max())) if raw.size else (0.0, 0.0)
    if lo < 0:
        raise ImageInputError(f"{where}: label map has negative labels (min {lo:g})", reason="NON_INTEGER_LABELS")
    dtype = np.uint8 if hi < 256 else (np.uint16 if hi < 65536 else np.uint32)
    return np.asarray(raw).astype(dtype, copy=False)


def _label_map(
    path: Path | None,
    data: bytes | None,
    *,
    reference: Volume,
    convention: str,
    tolerance_mm: float | None,
    where: str,
) -> LabelMap:
    label_to_level(convention)  # raises for an unknown convention, naming the known ones
    options = ReadOptions()
    image = open_nifti(path, data, options)
    raw, affine = raw_canonical(image, where)
    labels = _integer_labels(raw, where)
    tolerance = tolerance_mm if tolerance_mm is not None else 0.1 * min(reference.spacing)
    mismatch = labels.shape != reference.shape
    distance = 0.0
    if not mismatch:
        distance = float(np.abs(_corners(labels.shape, affine) - _corners(reference.shape, reference.affine)).max())
        mismatch = distance > tolerance
    if mismatch:
        raise GeometryError(
            f"{where}: the label map's geometry ({describe_geometry(labels.shape, affine)}) differs from the CT's "
            f"({describe_geometry(reference.shape, reference.affine)})"
            + (f" by {distance:.2f} mm (tolerance {tolerance:.2f} mm)" if distance else "")
            + "; segment this CT series or resample the label map onto it",
            reason="LABEL_GEOMETRY_MISMATCH",
        )
    if labels.strides and any(s < 0 for s in labels.strides):
        labels = np.asfortranarray(labels)
    return LabelMap(array=labels, affine=reference.affine, convention=convention)


def load_label_map(
    path: Path, *, reference: Volume, convention: str = "totalsegmentator", tolerance_mm: float | None = None
) -> LabelMap:
    """A NIfTI label map aligned to `reference` by geometry (see the module docstring)."""
    if path.is_dir() or not is_nifti_path(path):
        raise ImageInputError(
            f"{path.name}: label maps are read from NIfTI files (.nii or .nii.gz)", reason="NOT_NIFTI"
        )
    if not path.exists():
        raise ImageInputError(f"{path.name}: no such label map file", reason="NOT_FOUND")
    return _label_map(
        path, None, reference=reference, convention=convention, tolerance_mm=tolerance_mm, where=path.name
    )


def label_map_from_bytes(
    data: bytes, *, reference: Volume, convention: str = "totalsegmentator", tolerance_mm: float | None = None
) -> LabelMap:
    """A NIfTI label map payload (gzip or not, parsed in memory) aligned to `reference` by geometry."""
    return _label_map(
        None, data, reference=reference, convention=convention, tolerance_mm=tolerance_mm, where="label map payload"
    )
