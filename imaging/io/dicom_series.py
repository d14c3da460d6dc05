"""DICOM instances -> candidate series -> the best axial CT series, with the reason it was chosen.

Headers are read first (`stop_before_pixels`), grouped into series (Series Instance UID, or, when a
scanner leaves it empty, Frame of Reference + Series Number + description), each series split by image
orientation and matrix size. A multi-frame instance is a series of its own. The choice:

1. modality CT and a CT image SOP class; localizers (ImageType LOCALIZER, SCOUT, TOPOGRAM) are not used;
2. axial acquisitions before sagittal/coronal reformats;
3. ORIGINAL/PRIMARY (or untagged) before DERIVED/SECONDARY;
4. slice thickness up to 5 mm before thicker;
5. soft-tissue kernel before intermediate, unknown and sharp (`imaging.io.kernels`);
6. thinnest slices, then most slices.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from imaging.errors import ImageInputError
from imaging.io.dicom_pixels import Rescale, frame_rescale
from imaging.io.kernels import KernelClass, classify_kernel

CT_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image Storage",
}
_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"
_LOCALIZER_TYPES = {"LOCALIZER", "SCOUT", "TOPOGRAM", "SCANOGRAM"}
MAX_THICKNESS_MM = 5.0
"""Thicker series are used only when nothing thinner exists (ISCD/ACR opportunistic CT practice measures
on routine abdominal series of up to 5 mm; thinner slices give better vertebral segmentation)."""


@dataclass(frozen=True)
class Source:
    """Where one instance comes from: a file, bytes or an in-memory dataset. `label` names it in errors."""

    label: str
    path: Path | None = None
    data: bytes | None = None
    dataset: Dataset | None = None

    def read(self, *, stop_before_pixels: bool) -> Dataset:
        if self.dataset is not None:
            return self.dataset
        try:
            return pydicom.dcmread(self._stream(), stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:
            # Older files have no preamble and no file meta (ACR-NEMA style): accept them when they carry
            # image attributes, with the transfer syntax pydicom detected.
            legacy = self._read_without_meta(stop_before_pixels)
            if legacy is None:
                raise
            return legacy

    def _stream(self) -> str | io.BytesIO:
        if self.path is not None:
            return str(self.path)
        if self.data is None:
            raise ImageInputError(f"{self.label}: nothing to read", reason="EMPTY_INPUT")
        return io.BytesIO(self.data)

    def _read_without_meta(self, stop_before_pixels: bool) -> Dataset | None:
        try:
            ds = pydicom.dcmread(self._stream(), stop_before_pixels=stop_before_pixels, force=True)
        except Exception:
            return None
        if not ("Rows" in ds and ("Modality" in ds or "SOPClassUID" in ds)):
            return None
        if "TransferSyntaxUID" not in ds.file_meta:
            implicit = ds.original_encoding[0] if ds.original_encoding else True
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        return ds


@dataclass(frozen=True)
class Frame:
    """One image plane of a series: its instance, frame index, position (LPS mm) and rescale."""

    source: Source
    frame: int
    position: npt.NDArray[np.float64]
    rescale: Rescale
    instance_number: int


@dataclass
class Candidate:
    """A candidate series: frames sharing orientation, matrix and series."""

    key: tuple[str, ...]
    header: Dataset
    frames: list[Frame] = field(default_factory=list)
    orientation: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(6))
    pixel_spacing: tuple[float, float] = (1.0, 1.0)
    rows: int = 0
    columns: int = 0
    multiframe: bool = False

    # --- derived descriptors
    @property
    def modality(self) -> str:
        return str(self.header.get("Modality", "") or "").upper()

    @property
    def sop_class(self) -> str:
        uid = str(self.header.get("SOPClassUID", "") or "")
        if not uid and hasattr(self.header, "file_meta"):
            uid = str(self.header.file_meta.get("MediaStorageSOPClassUID", "") or "")
        return uid

    @property
    def image_type(self) -> tuple[str, ...]:
        value = self.header.get("ImageType")
        if value is None and self.multiframe:
            value = _functional(self.header, 0, "CTImageFrameTypeSequence", "FrameType")
        if value is None:
            return ()
        values = [value] if isinstance(value, str) else list(value)
        return tuple(str(v).upper() for v in values)

    @property
    def is_ct(self) -> bool:
        return self.modality == "CT" and (not self.sop_class or self.sop_class in CT_SOP_CLASSES)

    @property
    def is_localizer(self) -> bool:
        return bool(_LOCALIZER_TYPES & set(self.image_type))

    @property
    def plane(self) -> str:
        normal = np.cross(self.orientation[:3], self.orientation[3:])
        return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]

    @property
    def original(self) -> bool:
        types = self.image_type
        return not types or types[0] == "ORIGINAL"

    @property
    def kernel(self) -> str | None:
        value = self.header.get("ConvolutionKernel")
        if value is None and self.multiframe:
            value = _functional(self.header, 0, "CTReconstructionSequence", "ConvolutionKernel")
        if value is None or value == "":
            return None
        values = [value] if isinstance(value, str) else list(value)
        return "\\".join(str(v) for v in values)

    @property
    def kernel_class(self) -> KernelClass:
        kernel = self.kernel
        return classify_kernel(kernel.split("\\")[0] if kernel else None, self.header.get("Manufacturer"))

    @property
    def thickness(self) -> float | None:
        value = self.header.get("SliceThickness")
        if value in (None, "") and self.multiframe:
            value = _functional(self.header, 0, "PixelMeasuresSequence", "SliceThickness")
        try:
            return float(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None

    @property
    def spacing_estimate(self) -> float | None:
        if len(self.frames) < 2:
            return None
        normal = np.cross(self.orientation[:3], self.orientation[3:])
        s = np.sort([float(f.position @ normal) for f in self.frames])
        steps = np.diff(s)
        steps = steps[steps > 1e-3]
        return float(np.median(steps)) if steps.size else None

    @property
    def effective_thickness(self) -> float:
        return self.thickness or self.spacing_estimate or 0.0

    def describe(self) -> str:
        uid = str(self.header.get("SeriesInstanceUID", "") or "") or "(no Series Instance UID)"
        desc = str(self.header.get("SeriesDescription", "") or "")
        thickness = self.effective_thickness
        kernel = self.kernel or "no kernel tag"
        types = "/".join(self.image_type[:2]) or "untagged"
        quoted = f" '{desc}'" if desc else ""
        return (
            f"series {uid}{quoted} ({self.modality or 'no modality'}, {self.plane}, {len(self.frames)} slices, "
            f"{thickness:g} mm, kernel {kernel} [{self.kernel_class}], {types})"
        )

    def rank(self) -> tuple[float, ...]:
        thickness = self.effective_thickness
        kernel_score = {"soft_tissue": 3, "intermediate": 2, "unknown": 1, "sharp": 0}[self.kernel_class]
        return (
            float(self.plane == "axial"),
            float(self.original),
            float(0 < thickness <= MAX_THICKNESS_MM + 1e-6),
            float(kernel_score),
            -thickness,
            float(len(self.frames)),
        )


def _functional(ds: Dataset, frame: int, sequence: str, keyword: str) -> object | None:
    """An attribute of a functional group macro: per-frame item first, then the shared one."""
    for groups in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        seq = ds.get(groups)
        if not seq:
            continue
        item = seq[frame] if groups.startswith("PerFrame") and frame < len(seq) else seq[0]
        inner = item.get(sequence)
        if inner and keyword in inner[0]:
            return inner[0].get(keyword)
    return None


@dataclass
class ScanResult:
    """Every candidate series found, and what could not be read."""

    candidates: list[Candidate]
    unreadable: list[str]
    not_dicom: int
    total: int
    non_image: list[str] = field(default_factory=list)


def _floats(value: object, n: int) -> npt.NDArray[np.float64] | None:
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (n,) and np.all(np.isfinite(arr)) else None


def scan(sources: Sequence[Source], *, check_cancel: Callable[[], None] | None = None) -> ScanResult:
    """Read every header and group the image frames into candidate series."""
    candidates: dict[tuple[str, ...], Candidate] = {}
    unreadable: list[str] = []
    non_image: list[str] = []
    not_dicom = 0
    for source in sources:
        if check_cancel is not None:
            check_cancel()
        try:
            ds = source.read(stop_before_pixels=True)
        except InvalidDicomError:
            not_dicom += 1
            continue
        except Exception as exc:  # a truncated or corrupt header: pydicom raises many kinds
            unreadable.append(f"{source.label}: {type(exc).__name__}: {exc}")
            continue
        sop_class = str(ds.get("SOPClassUID", "") or "")
        if not sop_class and hasattr(ds, "file_meta"):
            sop_class = str(ds.file_meta.get("MediaStorageSOPClassUID", "") or "")
        if sop_class == _DIRECTORY_SOP_CLASS or "DirectoryRecordSequence" in ds:
            continue
        if "Rows" not in ds or "Columns" not in ds:
            if not sop_class or sop_class in CT_SOP_CLASSES or len(ds) == 0:
                unreadable.append(f"{source.label}: truncated or incomplete DICOM header (no image size)")
            else:
                non_image.append(f"{source.label} ({pydicom.uid.UID(sop_class).name})")
            continue  # not an image (structured report, presentation state, ...)
        _add_instance(candidates, source, ds)
    return ScanResult(
        candidates=list(candidates.values()),
        unreadable=unreadable,
        not_dicom=not_dicom,
        total=len(sources),
        non_image=non_image,
    )


def _series_key(ds: Dataset) -> str:
    uid = str(ds.get("SeriesInstanceUID", "") or "")
    if uid:
        return uid
    return "no-uid:" + "|".join(
        str(ds.get(k, "") or "") for k in ("FrameOfReferenceUID", "SeriesNumber", "SeriesDescription", "Modality")
    )


def _add_instance(candidates: dict[tuple[str, ...], Candidate], source: Source, ds: Dataset) -> None:
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    series = _series_key(ds)
    number = ds.get("InstanceNumber")
    instance_number = int(number) if isinstance(number, int | float) else 0
    if n_frames > 1 or "PerFrameFunctionalGroupsSequence" in ds:
        for k in range(n_frames):
            iop = _floats(_functional(ds, k, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
            ipp = _floats(_functional(ds, k, "PlanePositionSequence", "ImagePositionPatient"), 3)
            spacing = _floats(_functional(ds, k, "PixelMeasuresSequence", "PixelSpacing"), 2)
            key = _slot(candidates, (series, str(ds.get("SOPInstanceUID", source.label)), f"{rows}x{columns}"), iop)
            cand = candidates.get(key)
            if cand is None:
                cand = candidates[key] = _new_candidate(key, ds, iop, spacing, rows, columns, multiframe=True)
            cand.frames.append(
                Frame(source, k, ipp if ipp is not None else np.full(3, np.nan), frame_rescale(ds, k), k + 1)
            )
        return
    iop = _floats(ds.get("ImageOrientationPatient"), 6)
    ipp = _floats(ds.get("ImagePositionPatient"), 3)
    spacing = _floats(ds.get("PixelSpacing"), 2)
    key = _slot(candidates, (series, "", f"{rows}x{columns}"), iop)
    cand = candidates.get(key)
    if cand is None:
        cand = candidates[key] = _new_candidate(key, ds, iop, spacing, rows, columns, multiframe=False)
    cand.frames.append(
        Frame(source, 0, ipp if ipp is not None else np.full(3, np.nan), Rescale.from_item(ds, ds), instance_number)
    )


def _slot(
    candidates: dict[tuple[str, ...], Candidate], base: tuple[str, str, str], iop: npt.NDArray[np.float64] | None
) -> tuple[str, ...]:
    """The candidate key for an image: same series, instance and matrix, and an orientation within 1e-3."""
    others = 0
    for key, cand in candidates.items():
        if key[:3] != base:
            continue
        if iop is None and not np.all(np.isfinite(cand.orientation)):
            return key
        if iop is not None and np.allclose(cand.orientation, iop, atol=1e-3):
            return key
        others += 1
    return (*base, str(others))


def _new_candidate(
    key: tuple[str, ...],
    ds: Dataset,
    iop: npt.NDArray[np.float64] | None,
    spacing: npt.NDArray[np.float64] | None,
    rows: int,
    columns: int,
    *,
    multiframe: bool,
) -> Candidate:
    return Candidate(
        key=key,
        header=ds,
        orientation=iop if iop is not None else np.full(6, np.nan),
        pixel_spacing=(float(spacing[0]), float(spacing[1])) if spacing is not None else (np.nan, np.nan),
        rows=rows,
        columns=columns,
        multiframe=multiframe,
    )


def choose(result: ScanResult, where: str) -> tuple[Candidate, str, list[str]]:
    """The best CT series, the reason it was chosen, and warnings; a clear ImageInputError otherwise."""
    warnings: list[str] = []
    if result.unreadable:
        warnings.append(
            f"UNREADABLE_FILES: {len(result.unreadable)} file(s) skipped: {result.unreadable[0]}"
            + (" ..." if len(result.unreadable) > 1 else "")
        )
    if not result.candidates:
        if result.total == 0:
            raise ImageInputError(f"{where} is empty: no files to read", reason="EMPTY_INPUT")
        if result.unreadable:
            raise ImageInputError(
                f"{where}: no readable DICOM image; {len(result.unreadable)} file(s) are corrupt or truncated "
                f"(first: {result.unreadable[0]})",
                reason="CORRUPT_DICOM",
            )
        found = f"{result.not_dicom} file(s) that are not DICOM"
        if result.non_image:
            found += f", {len(result.non_image)} DICOM object(s) without pixels, e.g. {result.non_image[0]}"
        raise ImageInputError(
            f"{where} holds no DICOM image ({found}); give a DICOM folder, a DICOM file or a NIfTI file",
            reason="NOT_DICOM",
        )
    ct = [c for c in result.candidates if c.is_ct]
    if not ct:
        modalities = sorted(
            {
                c.modality or "no modality"
                if c.modality != "CT"
                else f"CT stored as {pydicom.uid.UID(c.sop_class).name} (a secondary capture, not a CT image)"
                for c in result.candidates
            }
        )
        raise ImageInputError(
            f"{where} holds no CT series (found modality {', '.join(modalities)}); bone density needs a CT",
            reason="WRONG_MODALITY",
        )
    usable = [c for c in ct if not c.is_localizer]
    if not usable:
        raise ImageInputError(
            f"{where} holds only localizer (scout/topogram) CT images, no axial CT series to measure",
            reason="LOCALIZER_ONLY",
        )
    geometric = [c for c in usable if np.all(np.isfinite(c.orientation)) and np.all(np.isfinite(c.pixel_spacing))]
    if not geometric:
        raise ImageInputError(
            f"{where}: the CT images lack Image Orientation/Position (Patient) or Pixel Spacing; cannot place "
            "them in space",
            reason="MISSING_GEOMETRY",
        )
    enough = [c for c in geometric if len(c.frames) >= 3]
    if not enough:
        most = max(geometric, key=lambda c: len(c.frames))
        n = len(most.frames)
        raise ImageInputError(
            f"{where}: the CT series has {n} slice{'s' if n != 1 else ''}; at least 3 are needed to measure "
            "vertebrae (give the whole series folder, not a single file)",
            reason="TOO_FEW_SLICES",
        )
    ranked = sorted(enough, key=lambda c: c.rank(), reverse=True)
    best = ranked[0]
    reason = f"{best.describe()}"
    if len(ranked) > 1 or len(result.candidates) > 1:
        others = [c for c in result.candidates if c is not best]
        why = _why_not(best, others)
        reason += f"; chosen over {len(others)} other series: {why}"
    else:
        reason += "; the only CT series"
    return best, reason, warnings


def _why_not(best: Candidate, others: Sequence[Candidate]) -> str:
    parts = []
    for c in others[:6]:
        if not c.is_ct:
            why = f"modality {c.modality or 'missing'}"
        elif c.is_localizer:
            why = "localizer"
        elif len(c.frames) < 3:
            why = f"{len(c.frames)} slice(s)"
        elif c.plane != "axial" and best.plane == "axial":
            why = f"{c.plane}, not axial"
        elif not c.original and best.original:
            why = "derived/secondary"
        elif c.effective_thickness > MAX_THICKNESS_MM >= best.effective_thickness:
            why = f"thicker than {MAX_THICKNESS_MM:g} mm"
        elif c.kernel_class != best.kernel_class and c.rank()[3] < best.rank()[3]:
            why = f"{c.kernel_class} kernel"
        elif c.effective_thickness > best.effective_thickness:
            why = f"thicker slices ({c.effective_thickness:g} mm)"
        else:
            why = "fewer slices"
        desc = str(c.header.get("SeriesDescription", "") or "") or str(c.header.get("SeriesNumber", "") or "?")
        parts.append(f"'{desc}' ({why})")
    if len(others) > 6:
        parts.append(f"{len(others) - 6} more")
    return ", ".join(parts)
