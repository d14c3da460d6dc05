"""Phantoms written as DICOM and NIfTI read back into the same canonical array (known truth)."""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)
from scipy import ndimage

from imaging.errors import GeometryError, ProcessingCancelledError
from imaging.io import ReadOptions, load_ct, load_dicom_datasets
from imaging.phantom import Phantom, can_encode, make_phantom, write_dicom_series, write_enhanced_ct, write_nifti
from imaging.types import Volume


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return make_phantom(seed=31, levels=("L1", "L2", "L3"), shape=(80, 80), spacing=(3.5, 3.5, 3.0), noise_sd=5.0)


def assert_same(volume: Volume, reference: Volume, *, tol: float = 0.51) -> None:
    assert volume.shape == reference.shape
    assert np.allclose(volume.affine, reference.affine, atol=1e-3)
    assert volume.orientation == ("R", "A", "S")
    assert float(np.abs(volume.array - reference.array).max()) <= tol


@pytest.mark.parametrize(
    "syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, JPEG2000Lossless, JPEGLSLossless]
)
def test_transfer_syntaxes_with_shuffled_names(phantom: Phantom, tmp_path: Path, syntax: str) -> None:
    if not can_encode(syntax):
        pytest.skip(f"no encoder installed here for {syntax} (JPEG-LS encoding needs the optional pyjpegls)")
    written = write_dicom_series(
        phantom,
        tmp_path,
        transfer_syntax=syntax,
        shuffle_names=True,
        kvp=100,
        kernel="B30f",
        manufacturer="SIEMENS",
        contrast_agent="IOMERON 350",
        study_date=date(2023, 5, 2),
        seed=7,
    )
    assert not any(p.name.startswith("IM") for p in written.paths)
    volume = load_ct(tmp_path)
    assert_same(volume, phantom.volume)
    info = volume.acquisition
    assert info.transfer_syntax == syntax and info.series_uid == written.series_uid
    assert (info.kvp, info.kernel, info.kernel_class, info.manufacturer) == (100.0, "B30f", "soft_tissue", "SIEMENS")
    assert info.contrast_agent == "IOMERON 350" and info.study_date == date(2023, 5, 2)
    assert info.study_uid == written.study_uid and info.slice_thickness_mm == pytest.approx(3.0)
    assert info.warnings == () and info.gantry_tilt_deg == 0.0


def test_uids_are_deterministic_for_a_seed(phantom: Phantom, tmp_path: Path) -> None:
    a = write_dicom_series(phantom, tmp_path / "a", seed=3)
    b = write_dicom_series(phantom, tmp_path / "b", seed=3)
    c = write_dicom_series(phantom, tmp_path / "c", seed=4)
    assert a.series_uid == b.series_uid != c.series_uid
    assert pydicom.dcmread(a.paths[0]).SOPInstanceUID == pydicom.dcmread(b.paths[0]).SOPInstanceUID
    assert a.series_uid.startswith("1.2.826.0.1.3680043.8.498.")


@pytest.mark.parametrize("orientation", ["LPS", "LPI", "RAS", "LAS", "PIL", "LIP"])
def test_orientations_and_reversed_instance_order(phantom: Phantom, tmp_path: Path, orientation: str) -> None:
    write_dicom_series(phantom, tmp_path, orientation=orientation, instance_order="descending")
    volume = load_ct(tmp_path)
    assert_same(volume, phantom.volume)
    assert volume.acquisition.source_orientation is not None
    if orientation in ("PIL", "LIP"):
        assert "axial" not in (volume.acquisition.selection_reason or "")


@pytest.mark.parametrize("thickness", [0.625, 1.25, 5.0])
def test_slice_thicknesses(tmp_path: Path, thickness: float) -> None:
    p = make_phantom(seed=2, levels=("L2",), shape=(48, 48), spacing=(4.0, 4.0, thickness), noise_sd=5.0)
    write_dicom_series(p, tmp_path)
    volume = load_ct(tmp_path)
    assert_same(volume, p.volume)
    assert volume.spacing[2] == pytest.approx(thickness)


@pytest.mark.parametrize(
    ("options", "tol"),
    [
        ({"signed": False, "bits_stored": 12}, 0.51),
        ({"signed": True, "rescale_slope": 0.5, "rescale_intercept": -1000.0}, 0.26),
        ({"signed": False, "bits_stored": 16, "rescale_slope": 2.0, "rescale_intercept": -2048.0}, 1.01),
    ],
)
def test_rescale_and_stored_integer_types(phantom: Phantom, tmp_path: Path, options: dict, tol: float) -> None:
    write_dicom_series(phantom, tmp_path, **options)
    assert_same(load_ct(tmp_path), phantom.volume, tol=tol)


def test_pixel_padding_and_out_of_field_become_air(phantom: Phantom, tmp_path: Path) -> None:
    write_dicom_series(phantom, tmp_path / "pad", field_of_view_circle=True, padding_value=-2000)
    padded = load_ct(tmp_path / "pad")
    assert padded.array.min() == -1024.0
    assert any(w.startswith("PIXEL_PADDING") for w in padded.acquisition.warnings)
    write_dicom_series(phantom, tmp_path / "oof", field_of_view_circle=True, out_of_field_hu=-3024.0)
    oof = load_ct(tmp_path / "oof")
    assert oof.array.min() == -1024.0
    assert any(w.startswith("OUT_OF_FIELD") for w in oof.acquisition.warnings)
    centre = (slice(25, 55), slice(25, 55), slice(None))
    assert np.abs(oof.array[centre] - phantom.volume.array[centre]).max() <= 0.51


@pytest.mark.parametrize("orientation", ["LPS", "LPI", "PIL"])
def test_missing_slice_is_interpolated_with_a_warning(phantom: Phantom, tmp_path: Path, orientation: str) -> None:
    write_dicom_series(phantom, tmp_path, orientation=orientation, drop_slices=[20])
    volume = load_ct(tmp_path)
    assert volume.shape == phantom.volume.shape
    assert np.allclose(volume.affine, phantom.volume.affine)
    assert any(w.startswith("MISSING_SLICES") for w in volume.acquisition.warnings)
    ref = phantom.volume.array
    axis = {"S": 2, "I": 2, "L": 0}[orientation[2]]
    missing = 20 if orientation[2] == "S" else ref.shape[axis] - 1 - 20  # canonical index of stored slice 20
    others = [k for k in range(ref.shape[axis]) if k != missing]
    assert np.abs(np.take(volume.array, others, axis=axis) - np.take(ref, others, axis=axis)).max() <= 0.51
    expected = (np.take(ref, missing - 1, axis=axis) + np.take(ref, missing + 1, axis=axis)) / 2
    assert np.abs(np.take(volume.array, missing, axis=axis) - expected).max() <= 0.51


def test_big_gap_is_refused(phantom: Phantom, tmp_path: Path) -> None:
    write_dicom_series(phantom, tmp_path, drop_slices=[20, 21])
    with pytest.raises(GeometryError) as err:
        load_ct(tmp_path)
    assert err.value.reason == "SLICE_GAP" and "9.00 mm" in str(err.value)


def test_duplicate_and_uneven_slices_warn(phantom: Phantom, tmp_path: Path) -> None:
    written = write_dicom_series(phantom, tmp_path, duplicate_slices=[5])
    # Nudge one slice 0.4 mm along z: uneven spacing, resampled onto the regular 3 mm grid.
    path = written.paths[30]
    ds = pydicom.dcmread(path)
    ds.ImagePositionPatient = [*list(ds.ImagePositionPatient)[:2], float(ds.ImagePositionPatient[2]) + 0.4]
    ds.save_as(path)
    volume = load_ct(tmp_path)
    codes = {w.split(":")[0] for w in volume.acquisition.warnings}
    assert {"DUPLICATE_SLICES", "UNEVEN_SLICES"} <= codes
    assert volume.shape == phantom.volume.shape
    assert np.allclose(volume.affine, phantom.volume.affine)
    assert np.abs(volume.array[:, :, :25] - phantom.volume.array[:, :, :25]).max() <= 0.51


def test_gantry_tilt_is_corrected_or_refused(phantom: Phantom, tmp_path: Path) -> None:
    write_dicom_series(phantom, tmp_path, gantry_tilt_deg=12.0)
    with pytest.raises(GeometryError) as err:
        load_ct(tmp_path, options=ReadOptions(tilt="refuse"))
    assert err.value.reason == "GANTRY_TILT" and "12.0 degrees" in str(err.value)
    volume = load_ct(tmp_path)
    assert volume.acquisition.gantry_tilt_deg == pytest.approx(12.0, abs=0.05)
    assert any(w.startswith("GANTRY_TILT_CORRECTED") for w in volume.acquisition.warnings)
    affine = volume.affine
    assert np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3])))  # axis-aligned, no shear left
    # The corrected image shows the phantom where it was: sample the truth at the same world points.
    ref = phantom.volume
    grid = np.indices(volume.shape).reshape(3, -1)
    world = affine @ np.vstack([grid, np.ones(grid.shape[1])])
    source = np.linalg.inv(ref.affine) @ world
    truth = ndimage.map_coordinates(ref.array, source[:3], order=1, cval=np.nan).reshape(volume.shape)
    inside = np.isfinite(truth) & (volume.array > -1000) & (truth > -1000)
    assert inside.sum() > 50_000
    assert float(np.median(np.abs(volume.array[inside] - truth[inside]))) < 10.0


@pytest.mark.parametrize("per_frame", [False, True])
def test_enhanced_ct_multiframe(phantom: Phantom, tmp_path: Path, per_frame: bool) -> None:
    path = write_enhanced_ct(phantom, tmp_path / "enhanced.dcm", per_frame_rescale=per_frame, kernel="STANDARD")
    volume = load_ct(path)
    assert_same(volume, phantom.volume)
    assert volume.acquisition.kernel == "STANDARD" and volume.acquisition.kernel_class == "soft_tissue"
    assert volume.acquisition.kvp == 120.0


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "LAS"])
def test_nifti_round_trip(phantom: Phantom, tmp_path: Path, orientation: str) -> None:
    path = write_nifti(phantom, tmp_path / "ct.nii.gz", orientation=orientation)
    volume = load_ct(path)
    assert_same(volume, phantom.volume)
    assert volume.acquisition.source_orientation == orientation


def test_series_choice_and_reason(phantom: Phantom, tmp_path: Path) -> None:
    common = {"seed": 1, "study_uid": "1.2.826.0.1.3680043.8.498.1"}
    write_dicom_series(phantom, tmp_path / "a", kernel="B70f", series_number=2, series_description="bone", **common)
    write_dicom_series(
        phantom,
        tmp_path / "b",
        kernel="B30f",
        series_number=3,
        series_description="soft",
        slice_thickness=3.0,
        **common,
    )
    write_dicom_series(
        phantom,
        tmp_path / "c",
        kernel="B30f",
        series_number=4,
        series_description="thick",
        slice_thickness=8.0,
        **common,
    )
    write_dicom_series(
        phantom,
        tmp_path / "d",
        kernel="B30f",
        series_number=5,
        series_description="reformat",
        image_type=("DERIVED", "SECONDARY", "REFORMATTED"),
        **common,
    )
    write_dicom_series(
        phantom,
        tmp_path / "e",
        kernel="B30f",
        series_number=6,
        series_description="sagittal",
        orientation="PIL",
        **common,
    )
    write_dicom_series(
        phantom,
        tmp_path / "f",
        series_number=7,
        series_description="scout",
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
        **common,
    )
    (tmp_path / "notes.txt").write_text("not a DICOM file")
    volume = load_ct(tmp_path)
    reason = volume.acquisition.selection_reason or ""
    assert "'soft'" in reason.split(";")[0]
    for why in (
        "'bone' (sharp kernel)",
        "'thick' (thicker than 5 mm)",
        "'reformat' (derived/secondary)",
        "'sagittal' (sagittal, not axial)",
        "'scout' (localizer)",
    ):
        assert why in reason, why
    assert volume.acquisition.kernel == "B30f"


def test_datasets_in_memory(phantom: Phantom, tmp_path: Path) -> None:
    written = write_dicom_series(phantom, tmp_path, transfer_syntax=RLELossless)
    datasets = [pydicom.dcmread(p) for p in written.paths]
    assert_same(load_dicom_datasets(datasets[::-1]), phantom.volume)


def test_cancel_stops_reading(phantom: Phantom, tmp_path: Path) -> None:
    write_dicom_series(phantom, tmp_path)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ProcessingCancelledError):
        load_ct(tmp_path, cancel=cancel)


def test_jpeg2000_decoded_in_worker_processes(tmp_path: Path) -> None:
    p = make_phantom(seed=5, levels=("L2", "L3"), shape=(40, 40), spacing=(8.0, 8.0, 1.0), noise_sd=5.0)
    assert p.volume.shape[2] >= 48
    write_dicom_series(p, tmp_path, transfer_syntax=JPEG2000Lossless)
    assert_same(load_ct(tmp_path, options=ReadOptions(workers=2, decode_processes=True)), p.volume)


def test_pixel_padding_range_limit(phantom: Phantom, tmp_path: Path) -> None:
    written = write_dicom_series(phantom, tmp_path)
    for path in written.paths:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array.copy()
        pixels[:4, :4] = -2000 - np.arange(16).reshape(4, 4)  # a padded corner, values -2000..-2015
        ds.PixelData = pixels.tobytes()
        ds.add_new(0x00280120, "SS", -2000)  # Pixel Padding Value
        ds.add_new(0x00280121, "SS", -2015)  # Pixel Padding Range Limit
        ds.save_as(path)
    volume = load_ct(tmp_path)
    warning = next(w for w in volume.acquisition.warnings if w.startswith("PIXEL_PADDING"))
    assert f"{16 * len(written.paths)} padding voxels" in warning
    assert float(volume.array.min()) == -1024.0


@pytest.mark.parametrize(
    ("kernel", "manufacturer", "expected"),
    [
        ("Br38f", "SIEMENS", "soft_tissue"),
        ("I31f", "Siemens Healthineers", "soft_tissue"),
        ("B45f", "SIEMENS", "intermediate"),
        ("B70f", "SIEMENS", "sharp"),
        ("Bl57", "SIEMENS", "sharp"),
        ("STANDARD", "GE MEDICAL SYSTEMS", "soft_tissue"),
        ("BONEPLUS", "GE MEDICAL SYSTEMS", "sharp"),
        ("B", "Philips", "soft_tissue"),
        ("L", "Philips", "sharp"),
        ("FC18", "TOSHIBA", "soft_tissue"),
        ("FC52", "Canon Medical Systems", "sharp"),
        ("XYZ1", "ACME", "unknown"),
        (None, "SIEMENS", "unknown"),
    ],
)
def test_kernel_classes(kernel: str | None, manufacturer: str, expected: str) -> None:
    from imaging.io.kernels import classify_kernel

    assert classify_kernel(kernel, manufacturer) == expected


def test_files_without_preamble_or_file_meta(phantom: Phantom, tmp_path: Path) -> None:
    written = write_dicom_series(phantom, tmp_path, transfer_syntax=ImplicitVRLittleEndian)
    for path in written.paths:
        ds = pydicom.dcmread(path)
        ds.preamble = None
        del ds.file_meta
        pydicom.dcmwrite(path, ds, enforce_file_format=False, implicit_vr=True, little_endian=True)
        with pytest.raises(pydicom.errors.InvalidDicomError):
            pydicom.dcmread(path)
    assert_same(load_ct(tmp_path), phantom.volume)


def test_orientation_jitter_and_a_localizer_inside_the_series(phantom: Phantom, tmp_path: Path) -> None:
    written = write_dicom_series(phantom, tmp_path / "axial")
    rng = np.random.default_rng(1)
    for path in written.paths:
        ds = pydicom.dcmread(path)
        iop = np.array([float(v) for v in ds.ImageOrientationPatient]) + rng.uniform(-2e-4, 2e-4, 6)
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in iop]
        ds.save_as(path)
    # A lateral scout stored under the same Series Instance UID, with another orientation.
    scout = write_dicom_series(
        phantom,
        tmp_path / "scout",
        orientation="PIL",
        series_uid=written.series_uid,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
        drop_slices=range(1, 80),
    )
    assert len(scout.paths) == 1
    volume = load_ct(tmp_path)
    assert volume.shape == phantom.volume.shape
    assert np.abs(volume.array - phantom.volume.array).max() <= 0.51
    assert "(localizer)" in (volume.acquisition.selection_reason or "")
