"""The public readers: `load_ct` (a path) and the in-memory variants for gRPC payloads and DICOMweb."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from imaging.errors import ImageInputError
from imaging.io.dicom_series import Source, choose, scan
from imaging.io.dicom_volume import (
    acquisition_info,
    decode_series,
    resample_sheared,
    resample_slices,
    stack_geometry,
)
from imaging.io.nifti import is_nifti_path, load_nifti, load_nifti_bytes
from imaging.io.options import ReadOptions, check_cancel
from imaging.types import SourceKind, Volume


def folder_files(folder: Path) -> list[Path]:
    """The files `load_ct` reads from a folder: every file below it (any names), hidden files left out, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith("."))


def load_ct(path: Path, *, cancel: threading.Event | None = None, options: ReadOptions | None = None) -> Volume:
    """Read a CT into a canonical Volume: a DICOM folder, a DICOM file (multi-frame) or a NIfTI file.

    A folder is searched recursively (any file names; non-DICOM files are skipped); when it holds several
    series the best axial CT series is chosen (`imaging.io.dicom_series`) and
    `volume.acquisition.selection_reason` says which and why. A single-frame DICOM file is one slice and is
    refused (reason TOO_FEW_SLICES): give its folder.
    """
    opts = options or ReadOptions()
    path = Path(path)
    if not path.exists():
        raise ImageInputError(f"{path.name}: no such file or folder", reason="NOT_FOUND")
    if path.is_dir():
        files = folder_files(path)
        return _load_sources(
            [Source(label=str(p.relative_to(path)), path=p) for p in files],
            where=f"folder {path.name}",
            kind="dicom",
            options=opts,
            cancel=cancel,
        )
    if is_nifti_path(path):
        return load_nifti(path, options=opts, cancel=cancel)
    try:
        Source(label=path.name, path=path).read(stop_before_pixels=True)
    except InvalidDicomError:
        raise ImageInputError(
            f"{path.name} is neither DICOM nor NIfTI (.nii/.nii.gz); give a DICOM folder or file, or a NIfTI file",
            reason="NOT_DICOM",
        ) from None
    except Exception as exc:
        raise ImageInputError(f"{path.name}: corrupt or truncated DICOM file: {exc}", reason="CORRUPT_DICOM") from None
    return _load_sources(
        [Source(label=path.name, path=path)], where=f"file {path.name}", kind="dicom", options=opts, cancel=cancel
    )


def load_dicom_datasets(
    datasets: Sequence[Dataset],
    *,
    cancel: threading.Event | None = None,
    options: ReadOptions | None = None,
    kind: SourceKind = "dicom",
) -> Volume:
    """Datasets already in memory (with their pixel data) -> canonical Volume; series chosen as by `load_ct`."""
    sources = [Source(label=f"dataset {i}", dataset=ds) for i, ds in enumerate(datasets)]
    return _load_sources(sources, where="DICOM datasets", kind=kind, options=options or ReadOptions(), cancel=cancel)


def load_dicom_bytes(
    instances: Sequence[bytes],
    *,
    cancel: threading.Event | None = None,
    options: ReadOptions | None = None,
    kind: SourceKind = "dicom",
) -> Volume:
    """DICOM Part 10 instances as bytes (inline gRPC payloads, DICOMweb) -> canonical Volume."""
    sources = [Source(label=f"instance {i}", data=bytes(b)) for i, b in enumerate(instances)]
    return _load_sources(sources, where="DICOM payload", kind=kind, options=options or ReadOptions(), cancel=cancel)


def _load_sources(
    sources: Sequence[Source],
    *,
    where: str,
    kind: SourceKind,
    options: ReadOptions,
    cancel: threading.Event | None,
) -> Volume:
    result = scan(sources, check_cancel=lambda: check_cancel(cancel))
    cand, reason, warnings = choose(result, where)
    geometry = stack_geometry(cand, options, where)
    check_cancel(cancel)
    array, affine, pixel_warnings = decode_series(cand, geometry, options=options, cancel=cancel, where=where)
    if not geometry.regular:
        check_cancel(cancel)
        array, affine = resample_slices(array, geometry, options, columns=cand.columns, rows=cand.rows)
    if geometry.sheared:
        check_cancel(cancel)
        array, affine = resample_sheared(array, affine, options)
    info = acquisition_info(
        cand,
        kind=kind,
        reason=reason,
        warnings=[*warnings, *geometry.warnings, *pixel_warnings],
        tilt_deg=geometry.tilt_deg,
    )
    return Volume(array=array, affine=affine, acquisition=info)


__all__ = ["load_ct", "load_dicom_bytes", "load_dicom_datasets", "load_nifti_bytes"]
