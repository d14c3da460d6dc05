"""NIfTI (.nii, .nii.gz, or their bytes) -> a canonical `Volume` or `LabelMap`.

A NIfTI carries no acquisition metadata: `AcquisitionInfo(kind="nifti")` with every field None (nothing
is defaulted). The header is checked before any voxel is read: 3-D (or 4-D with one volume), a size
under the voxel limit, a finite, non-singular affine. Then the voxels: finite (no NaN or infinity).
Bytes are parsed in memory (never written to disk); a gzip payload is inflated only up to the size its
header declares.
"""

from __future__ import annotations

import gzip
import io
import threading
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import numpy.typing as npt

from imaging.errors import GeometryError, ImageInputError
from imaging.io.dicom_pixels import AIR_HU
from imaging.io.dicom_volume import resample_sheared
from imaging.io.options import ReadOptions, check_cancel
from imaging.io.orientation import axcodes, reorient
from imaging.types import AcquisitionInfo, Volume

_HEADER_BYTES = {348: nib.Nifti1Image, 540: nib.Nifti2Image}
_SHEAR_COS = 1e-3
"""Columns of the affine whose direction cosines' dot product exceeds this are sheared (not orthogonal)."""


def _image_from_bytes(data: bytes, where: str, options: ReadOptions) -> nib.Nifti1Image | nib.Nifti2Image:
    if data[:2] == b"\x1f\x8b":
        data = _bounded_gunzip(data, where, options)
    if len(data) < 348:
        raise ImageInputError(f"{where}: {len(data)} bytes is too short for a NIfTI header", reason="NOT_NIFTI")
    for order in ("<", ">"):
        size = int(np.frombuffer(data[:4], dtype=f"{order}i4")[0])
        if size in _HEADER_BYTES:
            _check_declared(_HEADER_BYTES[size].header_class.from_fileobj(io.BytesIO(data)), where, options)
            try:
                return _HEADER_BYTES[size].from_bytes(data)
            except Exception as exc:
                raise ImageInputError(f"{where}: not a readable NIfTI image: {exc}", reason="CORRUPT_NIFTI") from None
    raise ImageInputError(f"{where}: not a NIfTI image (bad header size)", reason="NOT_NIFTI")


def _bounded_gunzip(data: bytes, where: str, options: ReadOptions) -> bytes:
    """Inflate a gzip payload, refusing one that inflates beyond the voxel limit (a zip bomb)."""
    limit = options.max_voxels * 8 + 1024 * 1024
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit)
    except zlib.error as exc:
        raise ImageInputError(f"{where}: corrupt gzip data: {exc}", reason="CORRUPT_NIFTI") from None
    if inflater.unconsumed_tail:
        raise ImageInputError(f"{where}: the gzip payload inflates beyond {limit} bytes", reason="VOLUME_TOO_LARGE")
    return out


def _check_declared(header: nib.Nifti1Header, where: str, options: ReadOptions) -> None:
    shape = tuple(int(d) for d in header.get_data_shape())
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) > 3 and any(d > 1 for d in shape[3:]):
        raise ImageInputError(
            f"{where}: a {len(shape)}-D NIfTI of shape {shape}; give a single 3-D CT volume", reason="NIFTI_4D"
        )
    if len(shape) < 3:
        raise ImageInputError(f"{where}: a {len(shape)}-D NIfTI of shape {shape}; a CT volume is 3-D", reason="NOT_3D")
    voxels = int(np.prod(shape))
    if voxels > options.max_voxels:
        raise ImageInputError(
            f"{where}: NIfTI of shape {shape} ({voxels} voxels) is more than the limit of {options.max_voxels}",
            reason="VOLUME_TOO_LARGE",
        )


def _load_file(path: Path, options: ReadOptions) -> nib.Nifti1Image | nib.Nifti2Image:
    where = path.name
    try:
        image = nib.load(str(path))
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as exc:
        raise ImageInputError(f"{where}: cannot read NIfTI: {exc}", reason="CORRUPT_NIFTI") from None
    except Exception as exc:
        raise ImageInputError(f"{where}: not a readable NIfTI image: {exc}", reason="NOT_NIFTI") from None
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise ImageInputError(f"{where}: {type(image).__name__} is not NIfTI", reason="NOT_NIFTI")
    _check_declared(image.header, where, options)
    return image


def _affine(image: nib.Nifti1Image | nib.Nifti2Image, where: str, warnings: list[str]) -> npt.NDArray[np.float64]:
    header = image.header
    if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        warnings.append(
            "NIFTI_NO_ORIENTATION: sform and qform codes are 0; orientation taken from pixdim "
            "(Analyze convention), left-right may be wrong"
        )
    affine = np.asarray(image.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        raise GeometryError(f"{where}: the NIfTI affine contains NaN or infinity", reason="SINGULAR_AFFINE")
    if abs(float(np.linalg.det(affine[:3, :3]))) < 1e-9:
        raise GeometryError(
            f"{where}: the NIfTI affine is singular (a zero voxel size or collinear axes): {affine[:3, :3].tolist()}",
            reason="SINGULAR_AFFINE",
        )
    return affine


def _voxels(image: nib.Nifti1Image | nib.Nifti2Image, where: str, *, scaled: bool) -> npt.NDArray[np.generic]:
    """The voxels of the first (only) volume: float32 HU with the header's scaling, or the raw stored values."""
    try:
        if not scaled:
            data = np.asanyarray(image.dataobj)
        elif hasattr(image.dataobj, "get_scaled"):
            data = np.asarray(image.dataobj.get_scaled(dtype=np.float32))
        else:
            data = np.asarray(image.get_fdata(dtype=np.float32))
    except (EOFError, OSError, ValueError, zlib.error) as exc:
        raise ImageInputError(
            f"{where}: the NIfTI voxel data is truncated or corrupt: {exc}", reason="CORRUPT_NIFTI"
        ) from None
    return data[..., 0] if data.ndim == 4 else data


def _sheared(affine: npt.NDArray[np.float64]) -> bool:
    cols = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    gram = cols.T @ cols
    return bool(np.abs(gram - np.eye(3)).max() > _SHEAR_COS)


def _canonical(
    array: npt.NDArray[np.generic], affine: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.float64]]:
    data, new_affine = reorient(array, affine, "RAS")
    if any(stride < 0 for stride in data.strides):
        data = np.asfortranarray(data)
    return data, new_affine


def volume_from_nifti(
    image: nib.Nifti1Image | nib.Nifti2Image,
    *,
    where: str,
    options: ReadOptions,
    cancel: threading.Event | None = None,
) -> Volume:
    """A checked, canonical float32 HU Volume from an opened NIfTI image."""
    warnings: list[str] = []
    affine = _affine(image, where, warnings)
    check_cancel(cancel)
    data = np.asarray(_voxels(image, where, scaled=True), dtype=np.float32)
    finite = np.isfinite(data)
    if not finite.all():
        bad = data.size - int(np.count_nonzero(finite))
        n_nan = int(np.count_nonzero(np.isnan(data)))
        raise ImageInputError(
            f"{where}: {bad} voxels are not finite ({n_nan} NaN, {bad - n_nan} infinite); a CT must be finite HU",
            reason="NON_FINITE_VALUES",
        )
    low = data < np.float32(options.out_of_field_hu)
    n_low = int(np.count_nonzero(low))
    if n_low:
        data[low] = AIR_HU
        warnings.append(f"OUT_OF_FIELD: {n_low} voxels below {options.out_of_field_hu:g} HU set to {AIR_HU:g} HU")
    sample = data.ravel(order="K")[:: max(1, data.size // 200_000)]
    if float(np.percentile(sample, 1)) > -200:
        warnings.append("HU_RANGE_SUSPICIOUS: no voxel near air (1st percentile above -200 HU): is this CT in HU?")
    source_orientation = axcodes(affine)
    canonical, affine = _canonical(data, affine)
    data = np.asarray(canonical, dtype=np.float32)
    if _sheared(affine):
        if options.tilt == "refuse":
            raise GeometryError(f"{where}: the NIfTI affine is sheared (gantry tilt)", reason="GANTRY_TILT")
        data, affine = resample_sheared(np.asarray(data, dtype=np.float32), affine, options)
        warnings.append("GANTRY_TILT_CORRECTED: sheared NIfTI affine resampled onto an axis-aligned grid (trilinear)")
    shape = data.shape
    slice_axis = int(np.argmax(np.abs(affine[2, :3]) / np.linalg.norm(affine[:3, :3], axis=0)))
    if shape[slice_axis] < 3:
        raise ImageInputError(
            f"{where}: {shape[slice_axis]} slice(s); at least 3 are needed to measure vertebrae",
            reason="TOO_FEW_SLICES",
        )
    info = AcquisitionInfo(kind="nifti", warnings=tuple(warnings), source_orientation=source_orientation)
    return Volume(array=np.asarray(data, dtype=np.float32), affine=affine, acquisition=info)


def load_nifti(path: Path, *, options: ReadOptions | None = None, cancel: threading.Event | None = None) -> Volume:
    """A NIfTI file -> canonical Volume."""
    opts = options or ReadOptions()
    return volume_from_nifti(_load_file(path, opts), where=path.name, options=opts, cancel=cancel)


def load_nifti_bytes(
    data: bytes, *, options: ReadOptions | None = None, cancel: threading.Event | None = None
) -> Volume:
    """NIfTI bytes (gzip or not), parsed in memory -> canonical Volume."""
    opts = options or ReadOptions()
    image = _image_from_bytes(bytes(data), "NIfTI payload", opts)
    return volume_from_nifti(image, where="NIfTI payload", options=opts, cancel=cancel)


def open_nifti(path: Path | None, data: bytes | None, options: ReadOptions) -> nib.Nifti1Image | nib.Nifti2Image:
    """Open (header checked, voxels not yet read) a NIfTI from a path or bytes."""
    if path is not None:
        return _load_file(path, options)
    if data is None:
        raise ImageInputError("no NIfTI given", reason="EMPTY_INPUT")
    return _image_from_bytes(bytes(data), "NIfTI payload", options)


def is_nifti_path(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".nii", ".nii.gz"))


def raw_canonical(
    image: nib.Nifti1Image | nib.Nifti2Image, where: str
) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.float64]]:
    """The stored (unscaled where integer) array and affine in canonical orientation, for label maps."""
    warnings: list[str] = []
    affine = _affine(image, where, warnings)
    raw = _voxels(image, where, scaled=False)
    return _canonical(raw, affine)
