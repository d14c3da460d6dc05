"""extract_features end to end: real scans and phantoms, QA picture, provenance, cancellation, threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from imaging.errors import GeometryError, ImageInputError, ProcessingCancelledError
from imaging.phantom import make_phantom
from imaging.pipeline import extract_features
from imaging.types import BoneFeatures, LabelMap
from tests.imaging.test_measure_spine_model import LevelSpec, build_spine


def test_real_nifti_scan_with_reference_labels(shared_data: Callable[[str], Path], tmp_path: Path) -> None:
    ct = shared_data("ct/totalseg/example_ct_sm.nii.gz")
    labels = shared_data("ct/totalseg/example_seg.nii.gz")
    png = tmp_path / "qa.png"
    features = extract_features(ct, labels=labels, qa_png=png)
    assert features.source.kind == "nifti" and features.source.shape == (122, 101, 30)
    assert features.segmentation.backend == "labels"
    assert features.segmentation.parameters["roi.erosion_mm"] == "3"
    assert [m.level for m in features.levels] == ["T11", "T12", "L1", "L2"]
    l1 = features.level("L1")
    assert l1 is not None and not l1.excluded and l1.hu_median is not None
    assert 80.0 < l1.hu_median < 130.0  # an independent single-slice check lives in test_measure
    assert features.summary.l1_hu == l1.hu_median and features.summary.levels_used == ["L1"]
    assert features.source.contrast == "native"  # aorta about 40-45 HU
    assert features.calibration is not None and features.calibration.status in ("ok", "warning")
    assert features.summary.vbmd_l1_l2_mg_cm3 is not None and features.summary.acr_category is not None
    # T11 is a sliver at the top edge, T12 and L2 are cut by the scan: all excluded, all said
    for name in ("T11", "T12", "L2"):
        assert features.level(name).excluded  # type: ignore[union-attr]
    _assert_picture(png)
    BoneFeatures.model_validate_json(features.model_dump_json())


def test_real_contrast_dicom_series_with_labels(shared_data: Callable[[str], Path]) -> None:
    ct = shared_data("ct/totalseg/example_ct_dicom")
    labels = shared_data("ct/totalseg/example_seg_dicom.nii.gz")
    features = extract_features(ct, labels=labels)
    assert features.source.kind == "dicom" and features.source.kvp == 120.0
    assert features.source.contrast == "contrast"
    assert any(w.startswith("CONTRAST_ENHANCED: ") for w in features.warnings)
    t12 = features.level("T12")
    assert t12 is not None and t12.hu_median is not None and 80.0 < t12.hu_median < 250.0
    assert any(w.startswith("L1_UNAVAILABLE: L1 not found") for w in features.warnings)
    assert features.summary.l1_hu is None


def _assert_picture(path: Path) -> None:
    assert path.stat().st_size > 50_000
    image = imread(path)
    assert image.shape[0] > 500 and image.shape[1] > 800
    assert float(image[..., :3].std()) > 0.1  # not blank
    # the ROI outline colour (cyan) is drawn somewhere
    cyan = (image[..., 0] < 0.2) & (image[..., 1] > 0.8) & (image[..., 2] > 0.8)
    assert cyan.sum() > 100


@pytest.mark.parametrize("seed", [101, 102])
def test_phantom_hu_heights_and_fractures_with_labels(seed: int) -> None:
    """Phantoms drawn with seeds nobody tuned on: median HU within 5 HU, fracture grades right."""
    fractures = (
        {"L2": ("wedge", 2), "L4": ("biconcave", 3), "T12": ("crush", 2)}
        if seed == 101
        else {"L1": ("wedge", 3), "L3": ("biconcave", 2)}
    )
    phantom = make_phantom(
        seed=seed,
        levels=("T11", "T12", "L1", "L2", "L3", "L4", "L5"),
        shape=(180, 180),
        spacing=(1.8, 1.8, 2.0),
        fractures=fractures,
    )
    features = extract_features(phantom.volume, labels=phantom.labels)
    for truth in phantom.truth.levels:
        m = features.level(truth.name)
        assert m is not None and m.hu_median is not None
        assert abs(m.hu_median - truth.trabecular_hu) < 5.0, (truth.name, m.hu_median, truth.trabecular_hu)
        if truth.in_field == "full":
            assert m.genant_grade == truth.genant_grade, (truth.name, m.genant_grade, truth.genant_grade)
            assert m.height_posterior_mm is not None and m.height_anterior_mm is not None
            # the phantom's biconcave depression also lowers its truncated posterior margin (its drawing
            # keeps the parabola at the posterior wall), so the margin heights are compared for the others
            if truth.fracture != "biconcave":
                assert abs(m.height_posterior_mm - truth.height_posterior_mm) < 3.0, truth.name
                assert abs(m.height_anterior_mm - truth.height_anterior_mm) < 3.0, truth.name
        if truth.genant_grade >= 2:
            assert m.excluded and truth.name not in features.summary.levels_used


def test_cancellation_stops_between_steps() -> None:
    model = build_spine((LevelSpec("T12"), LevelSpec("L1"), LevelSpec("L2")), noise_sd=5.0)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ProcessingCancelledError, match="cancelled"):
        extract_features(model.volume, labels=model.labels, cancel=cancel)


def test_many_threads_give_the_same_answer(tmp_path: Path) -> None:
    model = build_spine((LevelSpec("T12", 150.0), LevelSpec("L1", 110.0), LevelSpec("L2", 95.0)), noise_sd=10.0)
    serial = extract_features(model.volume, labels=model.labels).model_dump_json()
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [
            pool.submit(extract_features, model.volume, labels=model.labels, qa_png=tmp_path / f"qa{i}.png")
            for i in range(4)
        ]
        results = [f.result().model_dump_json() for f in futures]
    assert all(r == serial for r in results)
    assert all((tmp_path / f"qa{i}.png").stat().st_size > 50_000 for i in range(4))


def test_bad_inputs_get_clear_errors(tmp_path: Path) -> None:
    model = build_spine((LevelSpec("T12"), LevelSpec("L1"), LevelSpec("L2")), noise_sd=5.0)
    with pytest.raises(ImageInputError, match="labels backend needs a label map"):
        extract_features(model.volume, backend="labels")
    shifted = LabelMap(array=model.labels.array[:, :, 1:], affine=model.labels.affine)
    with pytest.raises(GeometryError, match="geometry"):
        extract_features(model.volume, labels=shifted)
    with pytest.raises(ImageInputError, match="unknown"):
        extract_features(model.volume, labels=model.labels, backend="nnunet")
    with pytest.raises(ImageInputError, match="ct must be a path"):
        extract_features(np.zeros((4, 4, 4)))  # type: ignore[arg-type]
    empty = LabelMap(array=np.zeros_like(model.labels.array), affine=model.labels.affine)
    with pytest.raises(ImageInputError, match="no vertebra"):
        extract_features(model.volume, labels=empty)
    with pytest.raises(ImageInputError, match="QA picture"):
        extract_features(model.volume, labels=model.labels, qa_png=tmp_path / "missing" / "qa.png")
