"""Every kind of bad CT input gets one clear ImageInputError / GeometryError with a reason code."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate

from imaging.errors import GeometryError, ImageInputError
from imaging.io import ReadOptions, label_map_from_bytes, load_ct, load_label_map, load_nifti_bytes
from imaging.phantom import Phantom, make_phantom, write_dicom_series, write_nifti
from imaging.types import Volume


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return make_phantom(seed=41, levels=("L1", "L2"), shape=(48, 48), spacing=(6.0, 6.0, 4.0), noise_sd=5.0)


def refused(reason: str, call: object, *args: object, **kwargs: object) -> ImageInputError:
    with pytest.raises(ImageInputError) as err:
        call(*args, **kwargs)  # type: ignore[operator]
    assert err.value.reason == reason, str(err.value)
    return err.value


def test_truncated_file(phantom: Phantom, tmp_path: Path) -> None:
    written = write_dicom_series(phantom, tmp_path / "series")
    victim = written.paths[7]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    err = refused("CORRUPT_DICOM", load_ct, tmp_path / "series")
    assert victim.name in str(err)
    # A file cut inside its header.
    head = tmp_path / "head.dcm"
    head.write_bytes(written.paths[0].read_bytes()[:200])
    refused("CORRUPT_DICOM", load_ct, head)


def test_non_dicom_file_and_folder(tmp_path: Path) -> None:
    text = tmp_path / "report.txt"
    text.write_text("CT abdomen: no acute findings\n" * 20)
    err = refused("NOT_DICOM", load_ct, text)
    assert "neither DICOM nor NIfTI" in str(err)
    refused("NOT_DICOM", load_ct, tmp_path)


def test_empty_folder_and_missing_path(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    refused("EMPTY_INPUT", load_ct, tmp_path / "empty")
    refused("NOT_FOUND", load_ct, tmp_path / "nowhere")


def test_mr_series_is_named(phantom: Phantom, tmp_path: Path) -> None:
    write_dicom_series(phantom, tmp_path, modality="MR")
    err = refused("WRONG_MODALITY", load_ct, tmp_path)
    assert "MR" in str(err)


def test_folder_with_no_ct(phantom: Phantom, tmp_path: Path) -> None:
    write_dicom_series(phantom, tmp_path / "pet", modality="PT")
    (tmp_path / "readme.txt").write_text("hello")
    err = refused("WRONG_MODALITY", load_ct, tmp_path)
    assert "PT" in str(err)


def test_localizer_only(phantom: Phantom, tmp_path: Path) -> None:
    write_dicom_series(phantom, tmp_path, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    refused("LOCALIZER_ONLY", load_ct, tmp_path)


def test_two_slices(phantom: Phantom, tmp_path: Path) -> None:
    n = phantom.volume.shape[2]
    write_dicom_series(phantom, tmp_path, drop_slices=range(2, n))
    err = refused("TOO_FEW_SLICES", load_ct, tmp_path)
    assert "2 slices" in str(err)


def test_inconsistent_positions(phantom: Phantom, tmp_path: Path) -> None:
    written = write_dicom_series(phantom, tmp_path)
    rng = np.random.default_rng(0)
    for path in written.paths[::3]:
        ds = pydicom.dcmread(path)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x + float(rng.uniform(-9, 9)), y, z]
        ds.save_as(path)
    with pytest.raises(GeometryError) as err:
        load_ct(tmp_path)
    assert err.value.reason == "INCONSISTENT_POSITIONS"


def test_unsupported_transfer_syntax_names_what_to_do(phantom: Phantom, tmp_path: Path) -> None:
    written = write_dicom_series(phantom, tmp_path)
    for path in written.paths:
        ds = pydicom.dcmread(path)
        ds.PixelData = encapsulate([b"\xff\x0a" + b"\x00" * 64])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.92"  # JPEG 2000 Part 2 multi-component
        ds.save_as(path, enforce_file_format=True)
    err = refused("UNSUPPORTED_TRANSFER_SYNTAX", load_ct, tmp_path)
    assert "1.2.840.10008.1.2.4.92" in str(err) and "uncompressed" in str(err)


def test_voxel_limit_for_dicom(phantom: Phantom, tmp_path: Path) -> None:
    write_dicom_series(phantom, tmp_path)
    err = refused("VOLUME_TOO_LARGE", load_ct, tmp_path, options=ReadOptions(max_voxels=10_000))
    assert "10000" in str(err)


def _nifti(tmp_path: Path, data: np.ndarray, affine: np.ndarray | None = None, name: str = "x.nii.gz") -> Path:
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine), str(path))
    return path


def test_nifti_with_nan_or_infinity(tmp_path: Path) -> None:
    data = np.full((8, 8, 6), -1000.0, dtype=np.float32)
    data[2, 3, 4] = np.nan
    err = refused("NON_FINITE_VALUES", load_ct, _nifti(tmp_path, data, name="nan.nii.gz"))
    assert "1 NaN" in str(err)
    data[2, 3, 4] = np.inf
    err = refused("NON_FINITE_VALUES", load_ct, _nifti(tmp_path, data, name="inf.nii"))
    assert "1 infinite" in str(err)


def test_4d_nifti(tmp_path: Path) -> None:
    refused("NIFTI_4D", load_ct, _nifti(tmp_path, np.zeros((8, 8, 6, 3), dtype=np.int16)))


def _raw_nifti(path: Path, shape: tuple[int, ...], sform: np.ndarray, payload: bytes) -> Path:
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header.set_sform(sform, code=1)
    with path.open("wb") as f:
        header.write_to(f)
        f.write(b"\x00" * (352 - 348))
        f.write(payload)
    return path


def test_nifti_with_singular_affine(tmp_path: Path) -> None:
    singular = np.diag([2.0, 0.0, 2.0, 1.0])  # a zero voxel size along y
    path = _raw_nifti(tmp_path / "flat.nii", (8, 8, 6), singular, np.zeros(8 * 8 * 6, np.int16).tobytes())
    with pytest.raises(GeometryError) as err:
        load_ct(path)
    assert err.value.reason == "SINGULAR_AFFINE"


def test_huge_declared_nifti_is_refused_before_reading(tmp_path: Path) -> None:
    # 1024 x 1024 x 2001 int16 declared, 16 bytes of voxels present: refused from the header alone.
    path = _raw_nifti(tmp_path / "huge.nii", (1024, 1024, 2001), np.eye(4), b"\x00" * 16)
    refused("VOLUME_TOO_LARGE", load_ct, path)


def test_gzip_bomb_payload_is_refused() -> None:
    image = nib.Nifti1Image(np.zeros((200, 200, 200), dtype=np.int16), np.eye(4))
    payload = gzip.compress(image.to_bytes())
    assert len(payload) < 200_000
    refused("VOLUME_TOO_LARGE", load_nifti_bytes, payload, options=ReadOptions(max_voxels=10_000))
    refused("NOT_NIFTI", load_nifti_bytes, b"definitely not a NIfTI payload" * 20)


def test_label_map_refusals(phantom: Phantom, tmp_path: Path) -> None:
    reference: Volume = phantom.volume
    good = write_nifti(phantom.labels, tmp_path / "labels.nii.gz")
    assert load_label_map(good, reference=reference).same_geometry(reference)
    probabilities = phantom.labels.array.astype(np.float32) * 0.5
    floats = _nifti(tmp_path, probabilities, reference.affine, "prob.nii.gz")
    refused("NON_INTEGER_LABELS", load_label_map, floats, reference=reference)
    refused("UNKNOWN_LABEL_CONVENTION", load_label_map, good, reference=reference, convention="nnunet")
    refused("NOT_NIFTI", load_label_map, tmp_path, reference=reference)
    shifted = reference.affine.copy()
    shifted[2, 3] += 4.0
    moved = _nifti(tmp_path, phantom.labels.array, shifted, "moved.nii.gz")
    with pytest.raises(GeometryError) as err:
        load_label_map(moved, reference=reference)
    assert err.value.reason == "LABEL_GEOMETRY_MISMATCH" and "by 4.00 mm" in str(err.value)
    with pytest.raises(GeometryError):
        label_map_from_bytes(moved.read_bytes(), reference=reference)
    assert label_map_from_bytes(good.read_bytes(), reference=reference).array.dtype == np.uint8


def test_secondary_capture_of_a_ct_is_not_a_ct(phantom: Phantom, tmp_path: Path) -> None:
    written = write_dicom_series(phantom, tmp_path)
    for path in written.paths:
        ds = pydicom.dcmread(path)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        ds.save_as(path)
    err = refused("WRONG_MODALITY", load_ct, tmp_path)
    assert "Secondary Capture" in str(err)
