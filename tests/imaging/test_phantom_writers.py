"""The phantom writers produce realistic, self-consistent DICOM and NIfTI files."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import CTImageStorage, EnhancedCTImageStorage, JPEG2000Lossless

from imaging.phantom import Phantom, Tissue, make_phantom, write_dicom_series, write_enhanced_ct, write_nifti
from imaging.phantom.__main__ import main as phantom_cli


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return make_phantom(seed=17, levels=("L2", "L3"), shape=(64, 64), spacing=(5.0, 5.0, 4.0), noise_sd=5.0)


def test_ct_series_headers_are_realistic(phantom: Phantom, tmp_path: Path) -> None:
    written = write_dicom_series(
        phantom,
        tmp_path,
        kvp=100,
        kernel="I30f",
        manufacturer="SIEMENS",
        contrast_agent="IOPAMIDOL",
        study_date=date(2022, 1, 31),
        patient_pseudonym="PSEUDO^42",
        seed=9,
    )
    assert len(written.paths) == phantom.volume.shape[2]
    first = pydicom.dcmread(written.paths[0])
    assert first.SOPClassUID == CTImageStorage and first.file_meta.MediaStorageSOPClassUID == CTImageStorage
    assert first.Modality == "CT" and list(first.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert (float(first.KVP), first.ConvolutionKernel, first.ContrastBolusAgent) == (100.0, "I30f", "IOPAMIDOL")
    assert first.StudyDate == "20220131" and str(first.PatientName) == "PSEUDO^42"
    assert first.RescaleType == "HU" and first.PixelRepresentation == 1 and first.BitsStored == 16
    assert first.SOPInstanceUID == first.file_meta.MediaStorageSOPInstanceUID
    # IPP/IOP are LPS and consistent with the RAS affine: voxel (i, j, k) of the phantom sits at the same place.
    affine = phantom.volume.affine
    for path in (written.paths[0], written.paths[-1]):
        ds = pydicom.dcmread(path)
        k = int(ds.InstanceNumber) - 1
        row = np.array([float(v) for v in ds.ImageOrientationPatient[:3]])
        col = np.array([float(v) for v in ds.ImageOrientationPatient[3:]])
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        r, c = 10, 20  # pixel at row 10, column 20
        lps = ipp + c * float(ds.PixelSpacing[1]) * row + r * float(ds.PixelSpacing[0]) * col
        ras = lps * np.array([-1, -1, 1])
        i, j, kk = np.rint(np.linalg.inv(affine) @ np.array([*ras, 1.0]))[:3].astype(int)
        assert kk == k
        hu = ds.pixel_array[r, c] * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert hu == pytest.approx(phantom.volume.array[i, j, kk], abs=0.51)


def test_compressed_and_enhanced_headers(phantom: Phantom, tmp_path: Path) -> None:
    series = write_dicom_series(phantom, tmp_path / "j2k", transfer_syntax=JPEG2000Lossless)
    ds = pydicom.dcmread(series.paths[0])
    assert ds.file_meta.TransferSyntaxUID == JPEG2000Lossless
    path = write_enhanced_ct(phantom, tmp_path / "enhanced.dcm")
    enhanced = pydicom.dcmread(path)
    assert enhanced.SOPClassUID == EnhancedCTImageStorage
    assert int(enhanced.NumberOfFrames) == phantom.volume.shape[2]
    assert len(enhanced.PerFrameFunctionalGroupsSequence) == phantom.volume.shape[2]
    shared = enhanced.SharedFunctionalGroupsSequence[0]
    assert shared.PixelMeasuresSequence[0].SliceThickness == pytest.approx(4.0)


def test_nifti_writer_keeps_geometry_and_labels(phantom: Phantom, tmp_path: Path) -> None:
    ct = nib.load(write_nifti(phantom, tmp_path / "ct.nii.gz", orientation="LPS"))
    assert nib.aff2axcodes(ct.affine) == ("L", "P", "S")
    assert ct.get_data_dtype() == np.int16 and int(ct.header["sform_code"]) == 1
    labels = nib.load(write_nifti(phantom.labels, tmp_path / "labels.nii.gz"))
    assert labels.get_data_dtype() == np.uint8
    assert np.array_equal(np.asarray(labels.dataobj), phantom.labels.array)


def test_hip_prosthesis_and_sacrum(tmp_path: Path) -> None:
    p = make_phantom(seed=3, levels=("L4", "L5", "S1"), metal="hip_prosthesis", shape=(96, 96), spacing=(4.0, 4.0, 3.0))
    assert p.truth.metal == "hip_prosthesis"
    assert np.count_nonzero(p.tissues.array == Tissue.METAL) > 100
    sacrum = p.truth.level("S1")
    assert sacrum is not None and sacrum.is_sacrum and 25 <= sacrum.tilt_deg <= 45
    assert np.count_nonzero(p.labels.array == sacrum.label) > np.count_nonzero(p.body_labels.array == sacrum.label)


def test_command_line_entry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ph"
    argv = [
        "--out",
        str(out),
        "--seed",
        "4",
        "--format",
        "nifti",
        "--shape",
        "48",
        "48",
        "--spacing",
        "7",
        "7",
        "6",
        "--fracture",
        "L1:wedge:2",
    ]
    assert phantom_cli(argv) == 0
    truth = json.loads((out / "truth.json").read_text())
    l1 = next(level for level in truth["levels"] if level["name"] == "L1")
    assert l1["genant_grade"] == 2 and l1["fracture"] == "wedge"
    assert (out / "ct.nii.gz").exists() and (out / "labels.nii.gz").exists()
    assert "wrote nifti phantom" in capsys.readouterr().out
