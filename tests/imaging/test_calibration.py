"""Phantomless calibration: reference tissues found automatically, the fit, its acceptance, ACR categories."""

from __future__ import annotations

import numpy as np
import pytest

from imaging.calibration import (
    TissueSample,
    acr_category,
    calibration_table,
    fit_calibration,
    hu_to_vbmd,
    sample_reference_tissues,
)
from imaging.measure.vertebra import measure_levels
from imaging.phantom import make_phantom
from imaging.pipeline import _spine_slices, extract_features
from tests.imaging.test_measure import segmentation_of
from tests.imaging.test_measure_spine_model import LevelSpec, Tissues, build_spine

LEVELS = (LevelSpec("T12", 160.0), LevelSpec("L1", 120.0), LevelSpec("L2", 90.0))


def _sample(tissue: str, hu: float) -> TissueSample:
    return TissueSample(tissue=tissue, hu=hu, n_voxels=500, voxels=np.zeros((0, 3), dtype=np.int64))  # type: ignore[arg-type]


def _nominal_samples(scale: float = 1.0, offset: float = 0.0) -> dict:
    table = calibration_table()
    return {t: _sample(t, spec.nominal_hu * scale + offset) for t, spec in table.references.items()}


def test_reference_tissues_are_found_where_the_model_put_them() -> None:
    tissues = Tissues(subcutaneous_fat=-110.0, visceral_fat=-90.0, muscle=55.0, blood=40.0)
    model = build_spine(LEVELS, tissues=tissues, noise_sd=12.0, seed=3)
    results = measure_levels(model.volume, segmentation_of(model))
    samples = sample_reference_tissues(model.volume, _spine_slices(results))
    expected = {"air": -1000.0, "subcutaneous_fat": -110.0, "visceral_fat": -90.0, "muscle": 55.0, "blood": 40.0}
    assert set(samples) == set(expected)
    for tissue, hu in expected.items():
        assert abs(samples[tissue].hu - hu) < 4.0, (tissue, samples[tissue].hu)  # type: ignore[index]


def test_nominal_references_give_the_nominal_line_and_known_vbmd() -> None:
    table = calibration_table()
    cal = fit_calibration(_nominal_samples())
    assert cal.status == "ok" and cal.reason is None
    assert cal.slope == pytest.approx(1.0 / table.hu_per_mg_cm3_ha, rel=1e-3)
    assert cal.intercept == pytest.approx(0.0, abs=0.5)
    assert cal.r2 > 0.9999 and cal.residual_sd_mg_cm3 < 0.5
    assert hu_to_vbmd(cal, 125.0) == pytest.approx(100.0, abs=0.5)  # 1.25 HU per mg/cm3


def test_a_miscalibrated_scanner_is_corrected_by_its_own_tissues() -> None:
    """Every HU scaled by 1.08 and shifted by +12 (tissues and bone alike): vBMD comes out unchanged."""
    reference = fit_calibration(_nominal_samples())
    drifted = fit_calibration(_nominal_samples(scale=1.08, offset=12.0))
    assert drifted.status == "ok"
    bone_hu = 150.0
    assert hu_to_vbmd(drifted, bone_hu * 1.08 + 12.0) == pytest.approx(hu_to_vbmd(reference, bone_hu), abs=0.5)


def test_calibrated_vbmd_of_a_model_scan_equals_the_known_density() -> None:
    """The model's tissues are at their nominal HU on a scanner with a scale and offset error; the
    trabecular cores hold known HA-equivalent densities (HU = 1.25 * density before the error)."""
    densities = {"T12": 130.0, "L1": 95.0, "L2": 70.0}
    levels = tuple(LevelSpec(name, 1.25 * rho) for name, rho in densities.items())
    model = build_spine(levels, noise_sd=10.0, seed=5, scale=1.05, offset_hu=-8.0)
    features = extract_features(model.volume, labels=model.labels)
    assert features.calibration is not None and features.calibration.status == "ok"
    for m in features.levels:
        assert m.vbmd_mg_cm3 is not None
        assert abs(m.vbmd_mg_cm3 - densities[m.level]) < 4.0, (m.level, m.vbmd_mg_cm3)
    assert features.summary.vbmd_l1_l2_mg_cm3 == pytest.approx((95.0 + 70.0) / 2, abs=4.0)
    assert features.summary.acr_category == "low_bone_density"


def test_calibration_on_a_phantom_recovers_its_tissues() -> None:
    phantom = make_phantom(seed=21, levels=("T12", "L1", "L2", "L3"), shape=(160, 160), spacing=(2.0, 2.0, 2.0))
    features = extract_features(phantom.volume, labels=phantom.labels)
    cal = features.calibration
    assert cal is not None
    found = {r.tissue: r.hu for r in cal.references}
    truth = phantom.truth.tissues
    assert abs(found["subcutaneous_fat"] - truth.subcutaneous_fat) < 5.0
    assert abs(found["muscle"] - truth.muscle) < 5.0
    assert abs(found["air"] - truth.air) < 5.0


def test_disagreeing_references_are_flagged_then_refused() -> None:
    mild = _nominal_samples()
    mild["muscle"] = _sample("muscle", 28.0)  # fatty muscle: about 15 mg/cm3 off
    cal = fit_calibration(mild)
    assert cal.status == "warning" and "muscle" in (cal.reason or "")
    assert hu_to_vbmd(cal, 100.0) is not None
    bad = _nominal_samples()
    bad["subcutaneous_fat"] = _sample("subcutaneous_fat", -20.0)  # not fat at all
    refused = fit_calibration(bad)
    assert refused.status == "refused" and "disagree" in (refused.reason or "")
    assert hu_to_vbmd(refused, 100.0) is None
    worst = max(refused.references, key=lambda r: abs(r.residual_mg_cm3))
    assert worst.tissue == "subcutaneous_fat"


def test_too_few_references_are_refused_and_no_vbmd_is_reported() -> None:
    two = {t: s for t, s in _nominal_samples().items() if t in ("air", "muscle")}
    cal = fit_calibration(two)
    assert cal.status == "refused" and "at least 3" in (cal.reason or "")
    assert fit_calibration({}).status == "refused"


def test_a_refused_calibration_leaves_every_vbmd_empty() -> None:
    # "fat" at -40 HU (e.g. oedematous subcutaneous tissue): the references disagree
    model = build_spine(LEVELS, noise_sd=10.0, tissues=Tissues(subcutaneous_fat=-40.0, visceral_fat=-40.0))
    features = extract_features(model.volume, labels=model.labels)
    assert features.calibration is not None and features.calibration.status == "refused"
    assert all(m.vbmd_mg_cm3 is None for m in features.levels)
    assert all(m.hu_median is not None for m in features.levels)  # HU are still reported
    assert features.summary.vbmd_l1_l2_mg_cm3 is None and features.summary.acr_category is None
    assert any(w.startswith("CALIBRATION_REFUSED: ") for w in features.warnings)


def test_contrast_drops_blood_and_non_120_kvp_downgrades() -> None:
    cal = fit_calibration(_nominal_samples(), exclude=("blood",), notes=("KVP_NOT_120: 100 kVp",))
    assert {r.tissue for r in cal.references} == {"air", "subcutaneous_fat", "visceral_fat", "muscle"}
    assert cal.status == "warning" and "100 kVp" in (cal.reason or "")


def test_slope_far_from_nominal_is_refused() -> None:
    samples = _nominal_samples(scale=1.6)
    cal = fit_calibration(samples)
    assert cal.status == "refused" and "slope" in (cal.reason or "")


@pytest.mark.parametrize(
    ("vbmd", "category"),
    [
        (150.0, "normal"),
        (120.01, "normal"),
        (120.0, "low_bone_density"),
        (80.0, "low_bone_density"),
        (79.99, "osteoporosis"),
        (20.0, "osteoporosis"),
    ],
)
def test_acr_categories_follow_the_practice_parameter(vbmd: float, category: str) -> None:
    assert acr_category(vbmd) == category
