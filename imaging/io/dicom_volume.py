"""A chosen DICOM series -> a canonical `Volume`: slice geometry, parallel decoding, HU, resampling.

Geometry (DICOM PS3.3 C.7.6.2): each frame's position is its ImagePositionPatient (LPS mm); the slice
normal is the cross product of the row and column directions of ImageOrientationPatient; slices are
sorted by their position along the normal, never by file name or InstanceNumber.

- Duplicate positions (within 1% of the spacing): one frame is kept, with a DUPLICATE_SLICES warning.
- Uneven spacing beyond `ReadOptions.uneven_tolerance`: the stack is resampled linearly in z onto a
  regular grid of the median spacing (UNEVEN_SLICES / MISSING_SLICES warning); a gap larger than
  `max_gap_factor` x the median spacing is refused (GeometryError, reason SLICE_GAP).
- Gantry tilt: slice origins that move sideways in proportion to the slice position (a sheared stack,
  the table moving along z while the image planes are tilted) are corrected by resampling the sheared
  stack onto an axis-aligned grid with trilinear interpolation (GANTRY_TILT_CORRECTED warning), or refused
  (reason GANTRY_TILT) with `ReadOptions(tilt="refuse")`. Sideways offsets that are not a consistent shear
  are refused (reason INCONSISTENT_POSITIONS).

Decoding writes each frame's HU straight into the canonical (RAS) array: one float32 allocation, frames
decoded in parallel threads.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import numpy.typing as npt
from nibabel import orientations as nio
from scipy import ndimage

from imaging.errors import GeometryError, ImageInputError
from imaging.io.dicom_pixels import AIR_HU, check_decoder, to_hu
from imaging.io.dicom_series import Candidate, Frame, _functional
from imaging.io.options import ReadOptions, check_cancel
from imaging.io.orientation import LPS_TO_RAS, axcodes
from imaging.types import AcquisitionInfo, SourceKind

_SHEAR_TOLERANCE_MM = 0.05
"""Sideways slice offsets below this (mm, over the whole stack) count as none: DS rounding of positions."""


@dataclass(frozen=True)
class StackGeometry:
    """The sorted frames of a series and the affine of their (regular or to-be-regular) grid."""

    frames: tuple[Frame, ...]
    positions: npt.NDArray[np.float64]  # along the normal, mm, ascending
    affine_lps: npt.NDArray[np.float64]  # index (column, row, slice) -> LPS mm, for the regular grid
    step: float  # regular spacing along the normal, mm (the median spacing)
    regular: bool
    sheared: bool
    tilt_deg: float
    warnings: tuple[str, ...]


def stack_geometry(cand: Candidate, options: ReadOptions, where: str) -> StackGeometry:
    """Sort, de-duplicate and check the slices of a series; build its index -> LPS affine."""
    row_dir = cand.orientation[:3] / np.linalg.norm(cand.orientation[:3])
    col_dir = cand.orientation[3:] / np.linalg.norm(cand.orientation[3:])
    if abs(float(row_dir @ col_dir)) > 1e-3:
        raise GeometryError(
            f"{where}: ImageOrientationPatient rows and columns are not perpendicular ({cand.orientation.tolist()})",
            reason="INVALID_ORIENTATION",
        )
    normal = np.cross(row_dir, col_dir)
    frames = list(cand.frames)
    positions = np.array([f.position for f in frames])
    if not np.all(np.isfinite(positions)):
        raise GeometryError(f"{where}: some slices lack ImagePositionPatient", reason="MISSING_GEOMETRY")
    s = positions @ normal
    order = np.lexsort((np.array([f.instance_number for f in frames]), s))
    frames = [frames[i] for i in order]
    positions, s = positions[order], s[order]
    warnings: list[str] = []

    steps = np.diff(s)
    typical = float(np.median(steps[steps > 1e-3])) if np.any(steps > 1e-3) else 0.0
    if typical <= 0:
        raise GeometryError(f"{where}: all {len(frames)} slices share one position", reason="DUPLICATE_SLICES")
    keep = np.concatenate([[True], steps > 0.01 * typical])
    if not keep.all():
        dropped = int((~keep).sum())
        warnings.append(f"DUPLICATE_SLICES: {dropped} slice(s) repeat a position already present and were dropped")
        frames = [f for f, k in zip(frames, keep, strict=True) if k]
        positions, s = positions[keep], s[keep]
    if len(frames) < 3:
        raise ImageInputError(
            f"{where}: the CT series has {len(frames)} distinct slice positions; at least 3 are needed",
            reason="TOO_FEW_SLICES",
        )
    steps = np.diff(s)
    typical = float(np.median(steps))

    # Sideways offsets of the slice origins: none (orthogonal stack), a consistent shear (gantry tilt), or junk.
    along = s - s[0]
    offsets = positions - positions[0] - np.outer(along, normal)
    shear_vec = np.zeros(3)
    sheared = False
    tilt_deg = 0.0
    if float(np.abs(offsets).max()) > _SHEAR_TOLERANCE_MM:
        shear_vec = np.linalg.lstsq(along[:, None], offsets, rcond=None)[0][0]
        residual = offsets - np.outer(along, shear_vec)
        if float(np.abs(residual).max()) > max(_SHEAR_TOLERANCE_MM, 0.02 * typical):
            raise GeometryError(
                f"{where}: slice positions wander sideways inconsistently (up to {np.abs(residual).max():.2f} mm); "
                "the series is not one stack",
                reason="INCONSISTENT_POSITIONS",
            )
        sheared = True
        tilt_deg = float(np.degrees(np.arctan(np.linalg.norm(shear_vec))))
        declared = cand.header.get("GantryDetectorTilt")
        if options.tilt == "refuse":
            raise GeometryError(
                f"{where}: gantry tilt of {tilt_deg:.1f} degrees (sheared slice stack"
                + (f", GantryDetectorTilt {declared}" if declared not in (None, "") else "")
                + "); reading tilted series was disabled",
                reason="GANTRY_TILT",
            )
        warnings.append(
            f"GANTRY_TILT_CORRECTED: {tilt_deg:.1f} degree gantry tilt; the sheared stack was resampled "
            "onto an axis-aligned grid (trilinear)"
        )

    largest = float(steps.max())
    if largest > options.max_gap_factor * typical * (1 + options.uneven_tolerance):
        where_gap = int(np.argmax(steps))
        raise GeometryError(
            f"{where}: a gap of {largest:.2f} mm between slices {where_gap} and {where_gap + 1} is more than "
            f"{options.max_gap_factor:g} x the usual spacing of {typical:.2f} mm; slices are missing",
            reason="SLICE_GAP",
        )
    regular = bool(np.all(np.abs(steps - typical) <= options.uneven_tolerance * typical))
    if not regular:
        missing = int(np.sum(steps > 1.5 * typical))
        if missing:
            warnings.append(
                f"MISSING_SLICES: {missing} gap(s) of one missing slice; interpolated linearly in z onto a "
                f"regular {typical:.3f} mm grid"
            )
        else:
            spread = float(np.abs(steps - typical).max())
            warnings.append(
                f"UNEVEN_SLICES: slice spacing varies by up to {spread:.3f} mm around {typical:.3f} mm; "
                "resampled linearly along the slice normal onto a regular grid"
            )

    col_spacing = float(cand.pixel_spacing[1])
    row_spacing = float(cand.pixel_spacing[0])
    if not (col_spacing > 0 and row_spacing > 0):
        raise GeometryError(f"{where}: PixelSpacing {cand.pixel_spacing} is not positive", reason="INVALID_SPACING")
    affine = np.eye(4)
    affine[:3, 0] = row_dir * col_spacing
    affine[:3, 1] = col_dir * row_spacing
    affine[:3, 2] = (normal + shear_vec) * typical
    affine[:3, 3] = positions[0]
    return StackGeometry(
        frames=tuple(frames),
        positions=s - s[0],
        affine_lps=affine,
        step=typical,
        regular=regular,
        sheared=sheared,
        tilt_deg=tilt_deg,
        warnings=tuple(warnings),
    )


@dataclass(frozen=True)
class _Layout:
    """Where the source axes (column, row, slice) go in the canonical RAS array."""

    target: tuple[int, int, int]
    flip: tuple[bool, bool, bool]
    shape: tuple[int, int, int]
    canonical_affine: npt.NDArray[np.float64]


def _layout(affine_ras: npt.NDArray[np.float64], shape: tuple[int, int, int]) -> _Layout:
    transform = nio.ornt_transform(nio.io_orientation(affine_ras), nio.axcodes2ornt(("R", "A", "S")))
    target = (int(transform[0, 0]), int(transform[1, 0]), int(transform[2, 0]))
    flip = (bool(transform[0, 1] < 0), bool(transform[1, 1] < 0), bool(transform[2, 1] < 0))
    out_shape = [0, 0, 0]
    for axis in range(3):
        out_shape[target[axis]] = shape[axis]
    canonical = affine_ras @ nio.inv_ornt_aff(transform, shape)
    return _Layout(
        target=target,
        flip=flip,
        shape=(out_shape[0], out_shape[1], out_shape[2]),
        canonical_affine=canonical,
    )


def _place(out: npt.NDArray[np.float32], layout: _Layout, k: int, n_slices: int) -> npt.NDArray[np.float32]:
    """The view of `out` that receives source slice k, arranged as the frame (rows, columns)."""
    index: list[slice | int] = [slice(None)] * 3
    index[layout.target[2]] = n_slices - 1 - k if layout.flip[2] else k
    view = out[tuple(index)]
    # view's axes: the two remaining target axes, ascending. Map them to (row, column) of the frame.
    remaining = sorted(axis for axis in range(3) if axis != layout.target[2])
    row_axis = remaining.index(layout.target[1])
    if row_axis == 1:
        view = view.T
    if layout.flip[1]:
        view = view[::-1, :]
    if layout.flip[0]:
        view = view[:, ::-1]
    return view


@dataclass(frozen=True)
class _Target:
    """The canonical array being filled, and the per-frame padding / out-of-field counts."""

    cand: Candidate
    geometry: StackGeometry
    options: ReadOptions
    where: str
    out: npt.NDArray[np.float32]
    layout: _Layout
    counts: npt.NDArray[np.int64]

    def store(self, k: int, stored: npt.NDArray[np.generic]) -> None:
        """Convert the stored values of sorted frame k to HU, straight into its place in the array."""
        frame = self.geometry.frames[k]
        if stored.shape != (self.cand.rows, self.cand.columns):
            raise ImageInputError(
                f"{self.where}: {frame.source.label} has a {stored.shape} frame in a "
                f"{self.cand.rows}x{self.cand.columns} series",
                reason="CORRUPT_DICOM",
            )
        _, padded, out_of_field = to_hu(
            np.asarray(stored, dtype=stored.dtype),
            frame.rescale,
            out_of_field_hu=self.options.out_of_field_hu,
            out=_place(self.out, self.layout, k, len(self.geometry.frames)),
        )
        self.counts[k] = (padded, out_of_field)


def decode_series(
    cand: Candidate,
    geometry: StackGeometry,
    *,
    options: ReadOptions,
    cancel: threading.Event | None,
    where: str,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], list[str]]:
    """Decode every frame into the canonical array; returns (array, canonical affine, warnings)."""
    n = len(geometry.frames)
    shape = (cand.columns, cand.rows, n)
    voxels = cand.columns * cand.rows * n
    if voxels > options.max_voxels:
        raise ImageInputError(
            f"{where}: {cand.columns}x{cand.rows}x{n} = {voxels} voxels is more than the limit of "
            f"{options.max_voxels} (ReadOptions.max_voxels)",
            reason="VOLUME_TOO_LARGE",
        )
    affine_ras = LPS_TO_RAS @ geometry.affine_lps
    layout = _layout(affine_ras, shape)
    out = np.empty(layout.shape, dtype=np.float32, order="F" if layout.target[2] == 2 else "C")
    ts = ""
    first = geometry.frames[0].source.read(stop_before_pixels=True)
    if hasattr(first, "file_meta"):
        ts = str(first.file_meta.get("TransferSyntaxUID", "") or "")
    check_decoder(ts, where)
    counts = np.zeros((n, 2), dtype=np.int64)
    lock = threading.Lock()
    multiframe_cache: dict[str, npt.NDArray[np.generic]] = {}

    def stored_frame(frame: Frame) -> npt.NDArray[np.generic]:
        if not cand.multiframe:
            ds = frame.source.read(stop_before_pixels=False)
            return ds.pixel_array
        with lock:
            if frame.source.label not in multiframe_cache:
                multiframe_cache[frame.source.label] = frame.source.read(stop_before_pixels=False).pixel_array
            pixels = multiframe_cache[frame.source.label]
        return pixels[frame.frame] if pixels.ndim == 3 else pixels

    def work(k: int) -> None:
        check_cancel(cancel)
        frame = geometry.frames[k]
        try:
            stored = stored_frame(frame)
        except (ImageInputError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise ImageInputError(
                f"{where}: cannot decode the pixels of {frame.source.label}: {exc} (truncated or corrupt file?)",
                reason="CORRUPT_DICOM",
            ) from None
        target.store(k, stored)

    target = _Target(cand=cand, geometry=geometry, options=options, where=where, out=out, layout=layout, counts=counts)
    if _use_processes(cand, geometry, ts, options):
        _decode_in_processes(geometry, options=options, cancel=cancel, where=where, target=target)
    elif options.n_workers > 1 and n > 1:
        with ThreadPoolExecutor(max_workers=options.n_workers) as pool:
            for future in [pool.submit(work, k) for k in range(n)]:
                future.result()
    else:
        for k in range(n):
            work(k)
    warnings = []
    padded, out_of_field = (int(v) for v in counts.sum(axis=0))
    if padded:
        warnings.append(f"PIXEL_PADDING: {padded} padding voxels (Pixel Padding Value) set to {AIR_HU:g} HU")
    if out_of_field:
        warnings.append(
            f"OUT_OF_FIELD: {out_of_field} voxels below {options.out_of_field_hu:g} HU (outside the "
            f"reconstruction field) set to {AIR_HU:g} HU"
        )
    return out, layout.canonical_affine, warnings


_GIL_BOUND_SYNTAXES = {
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
}
"""Transfer syntaxes whose decoder (pylibjpeg-openjpeg) holds the GIL: about 28 ms of CPU per 512x512 slice,
so large series are decoded in worker processes instead of threads."""
_MIN_FRAMES_FOR_PROCESSES = 48


def _use_processes(cand: Candidate, geometry: StackGeometry, ts: str, options: ReadOptions) -> bool:
    return (
        options.decode_processes
        and ts in _GIL_BOUND_SYNTAXES
        and options.n_workers > 1
        and not cand.multiframe
        and len(geometry.frames) >= _MIN_FRAMES_FOR_PROCESSES
        and all(f.source.dataset is None for f in geometry.frames)
    )


def _decode_chunk(items: list[tuple[str | None, bytes | None]]) -> list[npt.NDArray[np.generic]]:
    """Worker process: decode the stored pixel values of a few instances (paths or bytes)."""
    import io as _io

    import pydicom

    out = []
    for path, data in items:
        ds = pydicom.dcmread(path if path is not None else _io.BytesIO(data or b""))
        out.append(ds.pixel_array)
    return out


def _decode_in_processes(
    geometry: StackGeometry,
    *,
    options: ReadOptions,
    cancel: threading.Event | None,
    where: str,
    target: _Target,
) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    n = len(geometry.frames)
    items = [(str(f.source.path) if f.source.path is not None else None, f.source.data) for f in geometry.frames]
    chunk = max(4, n // (options.n_workers * 4))
    starts = list(range(0, n, chunk))
    context = multiprocessing.get_context("spawn")  # safe in a multi-threaded server, unlike fork
    with ProcessPoolExecutor(max_workers=options.n_workers, mp_context=context) as pool:
        futures = [pool.submit(_decode_chunk, items[a : a + chunk]) for a in starts]
        for a, future in zip(starts, futures, strict=True):
            check_cancel(cancel)
            try:
                frames = future.result()
            except Exception as exc:
                raise ImageInputError(
                    f"{where}: cannot decode the pixels of slices {a}..{a + chunk - 1}: {exc} (truncated or corrupt?)",
                    reason="CORRUPT_DICOM",
                ) from None
            for offset, stored in enumerate(frames):
                target.store(a + offset, stored)


def resample_slices(
    array: npt.NDArray[np.float32],
    geometry: StackGeometry,
    options: ReadOptions,
    *,
    columns: int,
    rows: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    """Linear interpolation along the slice axis from the measured positions onto a regular grid.

    `array` is the canonical array from `decode_series` (its slice axis in measured order); the regular grid
    starts at the first slice and steps by the median spacing. Returns (array, canonical affine).
    """
    n = len(geometry.frames)
    affine_ras = LPS_TO_RAS @ geometry.affine_lps
    layout = _layout(affine_ras, (columns, rows, n))
    axis, flip = layout.target[2], layout.flip[2]
    positions, step = geometry.positions, geometry.step
    m = int(np.floor(positions[-1] / step + 0.5)) + 1
    new_shape = list(array.shape)
    new_shape[axis] = m
    if int(np.prod(new_shape)) > options.max_voxels:
        raise ImageInputError(f"resampled volume {new_shape} exceeds the voxel limit", reason="VOLUME_TOO_LARGE")
    out = np.empty(new_shape, dtype=np.float32, order="F" if axis == 2 else "C")
    targets = np.minimum(np.arange(m) * step, positions[-1])
    upper = np.clip(np.searchsorted(positions, targets, side="left"), 1, n - 1)
    lower = upper - 1
    weights = (targets - positions[lower]) / (positions[upper] - positions[lower])
    for j in range(m):
        lo = n - 1 - lower[j] if flip else lower[j]
        hi = n - 1 - upper[j] if flip else upper[j]
        index: list[slice | int] = [slice(None)] * 3
        index[axis] = m - 1 - j if flip else j
        w = np.float32(weights[j])
        out[tuple(index)] = np.take(array, lo, axis=axis) * (1 - w) + np.take(array, hi, axis=axis) * w
    regular_layout = _layout(affine_ras, (columns, rows, m))
    return out, regular_layout.canonical_affine


def resample_sheared(
    array: npt.NDArray[np.float32], affine: npt.NDArray[np.float64], options: ReadOptions
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    """Resample an image with a sheared affine onto an axis-aligned RAS grid covering it (trilinear)."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)  # keep the voxel sizes of the source
    corners = np.array(
        [
            [i, j, k, 1.0]
            for i in (0, array.shape[0] - 1)
            for j in (0, array.shape[1] - 1)
            for k in (0, array.shape[2] - 1)
        ]
    )
    world = (affine @ corners.T).T[:, :3]
    lo, hi = world.min(axis=0), world.max(axis=0)
    shape = tuple(int(np.floor((hi[i] - lo[i]) / spacing[i] + 1e-6)) + 1 for i in range(3))
    if int(np.prod(shape)) > options.max_voxels:
        raise ImageInputError(f"resampled volume {shape} exceeds the voxel limit", reason="VOLUME_TOO_LARGE")
    target = np.diag([*spacing, 1.0])
    target[:3, 3] = lo
    to_source = np.linalg.inv(affine) @ target
    out = np.empty(shape, dtype=np.float32, order="F")
    ndimage.affine_transform(
        array, to_source[:3, :3], offset=to_source[:3, 3], output=out, order=1, mode="constant", cval=AIR_HU
    )
    return out, target


def acquisition_info(
    cand: Candidate,
    *,
    kind: SourceKind,
    reason: str,
    warnings: Sequence[str],
    tilt_deg: float,
) -> AcquisitionInfo:
    """AcquisitionInfo from the series header (None where the header lacks a value; nothing defaulted)."""
    ds = cand.header
    notes = list(warnings)

    def text(keyword: str) -> str | None:
        value = ds.get(keyword)
        if value is None or str(value).strip() == "":
            return None
        return str(value).strip()

    def number(value: object) -> float | None:
        try:
            return float(value) if value not in (None, "") else None  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None

    study_date: date | None = None
    raw_date = text("StudyDate") or text("SeriesDate") or text("AcquisitionDate")
    if raw_date:
        try:
            study_date = datetime.strptime(raw_date[:8], "%Y%m%d").date()
        except ValueError:
            notes.append(f"BAD_STUDY_DATE: StudyDate {raw_date!r} is not YYYYMMDD; left empty")
    kvp = number(ds.get("KVP"))
    if kvp is None and cand.multiframe:
        kvp = number(_functional(ds, 0, "CTAcquisitionDetailsSequence", "KVP"))
    series_uid = text("SeriesInstanceUID")
    if series_uid is None:
        notes.append("NO_SERIES_UID: the series has no Series Instance UID")
    ts = None
    if hasattr(ds, "file_meta"):
        ts = str(ds.file_meta.get("TransferSyntaxUID", "") or "") or None
    return AcquisitionInfo(
        kind=kind,
        series_uid=series_uid,
        study_uid=text("StudyInstanceUID"),
        study_date=study_date,
        modality=text("Modality"),
        manufacturer=text("Manufacturer"),
        kvp=kvp,
        contrast_agent=text("ContrastBolusAgent"),
        kernel=cand.kernel,
        slice_thickness_mm=cand.thickness,
        image_type=cand.image_type,
        selection_reason=reason,
        warnings=tuple(notes),
        series_description=text("SeriesDescription"),
        kernel_class=cand.kernel_class,
        transfer_syntax=ts,
        source_orientation=axcodes(LPS_TO_RAS @ _source_affine(cand)),
        gantry_tilt_deg=tilt_deg,
    )


def _source_affine(cand: Candidate) -> npt.NDArray[np.float64]:
    affine = np.eye(4)
    row_dir, col_dir = cand.orientation[:3], cand.orientation[3:]
    normal = np.cross(row_dir, col_dir)
    s = [float(f.position @ normal) for f in cand.frames]
    first = cand.frames[int(np.argmin([f.instance_number for f in cand.frames]))]
    last = cand.frames[int(np.argmax([f.instance_number for f in cand.frames]))]
    direction = 1.0 if float(last.position @ normal) >= float(first.position @ normal) or len(set(s)) < 2 else -1.0
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = row_dir, col_dir, normal * direction
    return affine
