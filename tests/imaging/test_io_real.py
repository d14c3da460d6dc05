"""Reading the real scans of ../shared/data and pydicom's CT_small.dcm."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from imaging.errors import GeometryError, ImageInputError
from imaging.io import dataset_to_hu, load_ct, load_dicom_bytes, load_label_map, load_nifti_bytes
from imaging.types import Volume

SharedData = Callable[[str], Path]


@pytest.fixture(scope="module")
def dicom_ct(shared_data: SharedData) -> Volume:
    return load_ct(shared_data("ct/totalseg/example_ct_dicom"))


def test_dicom_jpeg2000_series(dicom_ct: Volume) -> None:
    v = dicom_ct
    assert v.shape == (512, 512, 20)
    assert v.spacing == pytest.approx((0.9765625, 0.9765625, 2.0))
    assert v.orientation == ("R", "A", "S")
    assert v.array.dtype == np.float32
    assert v.array.min() == -1024.0 and 1000 < v.array.max() < 3072
    info = v.acquisition
    assert info.kind == "dicom" and info.modality == "CT" and info.manufacturer == "SIEMENS"
    assert info.kvp == 120.0 and info.kernel == "Br38f\\3" and info.kernel_class == "soft_tissue"
    assert info.contrast_agent == "APPLIED" and info.slice_thickness_mm == 3.0
    assert info.study_date == date(2022, 12, 8)
    assert info.transfer_syntax == "1.2.840.10008.1.2.4.90"
    assert info.image_type[:2] == ("ORIGINAL", "PRIMARY")
    # The files carry an empty Series Instance UID: kept as None and said, never invented.
    assert info.series_uid is None and any(w.startswith("NO_SERIES_UID") for w in info.warnings)
    assert info.selection_reason and "20 slices" in info.selection_reason
    # Stored head-first (instance numbers run caudally): canonical k grows cranially all the same.
    assert info.source_orientation == "LPI"
    z = [v.affine @ np.array([0, 0, k, 1.0]) for k in (0, 19)]
    assert z[1][2] - z[0][2] == pytest.approx(38.0)
    assert z[0][2] == pytest.approx(-804.5)


def test_dicom_series_and_its_las_label_map_align_by_geometry(shared_data: SharedData, dicom_ct: Volume) -> None:
    path = shared_data("ct/totalseg/example_seg_dicom.nii.gz")
    labels = load_label_map(path, reference=dicom_ct)
    raw = np.asarray(nib.load(path).dataobj)
    assert nib.aff2axcodes(nib.load(path).affine) == ("L", "A", "S")
    assert labels.shape == dicom_ct.shape and labels.same_geometry(dicom_ct)
    # LAS -> RAS flips the first axis: the canonical map is the stored array mirrored left-right.
    assert np.array_equal(labels.array, raw[::-1, :, :])
    for vertebra in (32, 33):  # T12, T11
        inside = dicom_ct.array[labels.array == vertebra]
        assert inside.size > 5000
        assert 120 < float(np.median(inside)) < 400, vertebra
        # Read in array order (ignoring geometry), the same label would land mostly off the bone.
        wrong = dicom_ct.array[raw == vertebra]
        assert float(np.median(wrong)) < float(np.median(inside)) - 80


def test_nifti_ras_scan_and_label_map(shared_data: SharedData) -> None:
    ct = load_ct(shared_data("ct/totalseg/example_ct_sm.nii.gz"))
    assert ct.shape == (122, 101, 30) and ct.spacing == pytest.approx((3.0, 3.0, 3.0))
    assert ct.orientation == ("R", "A", "S") and ct.acquisition.source_orientation == "RAS"
    assert -1100 <= ct.array.min() <= -1000 and 1000 < ct.array.max() < 1300
    info = ct.acquisition
    assert info.kind == "nifti"
    assert (info.series_uid, info.kvp, info.modality, info.kernel, info.study_date, info.manufacturer) == (None,) * 6
    labels = load_label_map(shared_data("ct/totalseg/example_seg.nii.gz"), reference=ct)
    l1 = ct.array[labels.array == 31]
    assert l1.size > 500 and 100 < float(np.median(l1)) < 300


def test_lps_chest_crop_is_reoriented_without_moving_anatomy(shared_data: SharedData) -> None:
    path = shared_data("ct/totalseg/chest_ct_cropped.nii.gz")
    image = nib.load(path)
    raw = np.asarray(image.dataobj)
    ct = load_ct(path)
    assert ct.acquisition.source_orientation == "LPS" and ct.orientation == ("R", "A", "S")
    assert ct.shape == (122, 102, 112) and ct.spacing == pytest.approx((1.5, 1.5, 1.5))
    for index in ((10, 20, 30), (100, 5, 111), (61, 51, 56)):
        world = image.affine @ np.array([*index, 1.0])
        i, j, k = np.rint(np.linalg.inv(ct.affine) @ world)[:3].astype(int)
        assert ct.array[i, j, k] == pytest.approx(max(float(raw[index]), -1024.0))


def test_label_map_of_another_scan_is_refused_naming_both_geometries(shared_data: SharedData, dicom_ct: Volume) -> None:
    with pytest.raises(GeometryError) as err:
        load_label_map(shared_data("ct/totalseg/example_seg.nii.gz"), reference=dicom_ct)
    assert err.value.reason == "LABEL_GEOMETRY_MISMATCH"
    assert "122x101x30" in str(err.value) and "512x512x20" in str(err.value)


def test_in_memory_readers_match_the_file_readers(shared_data: SharedData, dicom_ct: Volume) -> None:
    folder = shared_data("ct/totalseg/example_ct_dicom")
    payload = [p.read_bytes() for p in sorted(folder.iterdir())]
    from_bytes = load_dicom_bytes(payload[::-1], kind="dicomweb")
    assert np.array_equal(from_bytes.array, dicom_ct.array)
    assert np.allclose(from_bytes.affine, dicom_ct.affine)
    assert from_bytes.acquisition.kind == "dicomweb"
    nifti = shared_data("ct/totalseg/example_ct_sm.nii.gz")
    assert np.array_equal(load_nifti_bytes(nifti.read_bytes()).array, load_ct(nifti).array)


def test_ct_small_single_slice_is_refused_and_its_hu_are_right() -> None:
    path = Path(str(get_testdata_file("CT_small.dcm")))
    with pytest.raises(ImageInputError) as err:
        load_ct(path)
    assert err.value.reason == "TOO_FEW_SLICES" and "1 slice" in str(err.value)
    ds = pydicom.dcmread(path)
    hu = dataset_to_hu(ds)
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert hu.shape == (128, 128) and hu.dtype == np.float32
    assert np.allclose(hu, np.maximum(expected, -1024.0))
    assert float(ds.RescaleIntercept) == -1024.0
    # A thoracic vertebra is in this slice: bone well above soft tissue.
    assert float(np.percentile(hu, 99)) > 300
