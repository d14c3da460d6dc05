"""QC codes for each condition, and the rule that excluded levels are never averaged in."""

from __future__ import annotations

import numpy as np
import pytest

from imaging.measure.vertebra import measure_levels
from imaging.pipeline import extract_features, summarise
from imaging.qc import combine_contrast, contrast_from_image, contrast_from_tags, level_findings, qc_codes
from imaging.types import Calibration, LabelMap, VertebraMeasurement, Volume
from tests.imaging.test_measure import segmentation_of
from tests.imaging.test_measure_spine_model import LevelSpec, Tissues, build_spine

LEVELS = (LevelSpec("T12", 160.0), LevelSpec("L1", 120.0), LevelSpec("L2", 100.0), LevelSpec("L3", 90.0))


def _codes(features_levels: list[VertebraMeasurement], level: str) -> list[str]:
    return next(m.qc for m in features_levels if m.level == level)


def test_every_code_is_documented_with_a_source() -> None:
    for code in qc_codes().values():
        assert code.action in ("flag", "exclude") and code.scope in ("level", "scan")
        assert code.description and code.source


def test_cut_level_is_excluded() -> None:
    model = build_spine(LEVELS, noise_sd=10.0)
    cut = 30  # slices: the bottom of L3 falls outside the field of view
    volume = Volume(
        array=model.volume.array[:, :, cut:],
        affine=_shifted(model.volume.affine, cut),
        acquisition=model.volume.acquisition,
    )
    labels = LabelMap(array=model.labels.array[:, :, cut:], affine=volume.affine)
    features = extract_features(volume, labels=labels)
    l3 = features.level("L3")
    assert l3 is not None and l3.excluded and "CUT_BY_SCAN_EDGE" in l3.qc
    assert "L3" not in features.summary.levels_used
    assert any(w.startswith("CUT_BY_SCAN_EDGE: L3") for w in features.warnings)


def _shifted(affine: np.ndarray, slices: int) -> np.ndarray:
    out = affine.copy()
    out[:3, 3] += out[:3, 2] * slices
    return out


def test_metal_excludes_the_level() -> None:
    model = build_spine((LevelSpec("T12"), LevelSpec("L1", metal=True), LevelSpec("L2")), noise_sd=10.0)
    features = extract_features(model.volume, labels=model.labels)
    l1 = features.level("L1")
    assert l1 is not None and l1.excluded and "METAL" in l1.qc
    assert features.summary.l1_hu is None
    assert any(w.startswith("L1_UNAVAILABLE: ") and "T12" in w and "L2" in w for w in features.warnings)
    assert not features.level("T12").excluded  # type: ignore[union-attr]


def test_contrast_from_image_tags_and_their_disagreement() -> None:
    enhanced = build_spine(LEVELS, noise_sd=10.0, tissues=Tissues(blood=220.0))
    features = extract_features(enhanced.volume, labels=enhanced.labels)
    assert features.source.contrast == "contrast"
    assert any(w.startswith("CONTRAST_ENHANCED: ") for w in features.warnings)
    assert any(w.startswith("CONTRAST_TAG_IMAGE_DISAGREE: ") for w in features.warnings) is False
    assert features.calibration is not None
    assert "blood" not in {r.tissue for r in features.calibration.references}
    tagged_native = build_spine(LEVELS, noise_sd=10.0, contrast_agent="IOPAMIDOL")
    tagged = extract_features(tagged_native.volume, labels=tagged_native.labels)
    assert tagged.source.contrast == "contrast" and tagged.source.contrast_agent == "IOPAMIDOL"
    assert any(w.startswith("CONTRAST_TAG_IMAGE_DISAGREE: ") for w in tagged.warnings)
    assert contrast_from_tags(None) == "unknown" and contrast_from_tags("None") == "native"
    assert contrast_from_image(45.0) == "native" and contrast_from_image(95.0) == "unknown"
    assert contrast_from_image(180.0) == "contrast"
    phase, findings = combine_contrast("unknown", "unknown", None, None)
    assert phase == "unknown" and [f.code for f in findings] == ["CONTRAST_PHASE_UNKNOWN"]


def test_100_kvp_is_flagged_and_the_calibration_downgraded() -> None:
    model = build_spine(LEVELS, noise_sd=10.0, kvp=100.0)
    features = extract_features(model.volume, labels=model.labels)
    assert any(w.startswith("KVP_NOT_120: 100 kVp") for w in features.warnings)
    assert features.calibration is not None and features.calibration.status == "warning"
    unknown = extract_features(build_spine(LEVELS, noise_sd=10.0, kvp=None).volume, labels=model.labels)
    assert any(w.startswith("KVP_UNKNOWN: ") for w in unknown.warnings)


def test_fractured_level_is_excluded_and_never_averaged() -> None:
    healthy = (LevelSpec("T12", 160.0), LevelSpec("L1", 120.0), LevelSpec("L2", 100.0), LevelSpec("L3", 90.0))
    fractured = (*healthy[:2], LevelSpec("L2", 300.0, height_anterior_mm=15.0), healthy[3])
    model = build_spine(fractured, noise_sd=10.0)
    features = extract_features(model.volume, labels=model.labels)
    l2 = features.level("L2")
    assert l2 is not None and l2.genant_grade is not None and l2.genant_grade >= 2
    assert l2.excluded and "VERTEBRAL_FRACTURE" in l2.qc and l2.exclusion_reason
    # L2's 300 HU would pull the means up: it must not be in them
    assert features.summary.mean_hu_l1_l4 == pytest.approx((120.0 + 90.0) / 2, abs=4.0)
    assert features.summary.levels_used == ["L1", "L3"]
    l1_vbmd = features.level("L1").vbmd_mg_cm3  # type: ignore[union-attr]
    assert features.summary.vbmd_l1_l2_mg_cm3 == pytest.approx(l1_vbmd)


def test_low_confidence_flags_and_very_low_confidence_excludes() -> None:
    model = build_spine(LEVELS, noise_sd=10.0)
    for confidence, code, excluded in ((0.6, "LOW_CONFIDENCE", False), (0.3, "UNRELIABLE_LEVEL", True)):
        results = measure_levels(model.volume, segmentation_of(model, confidence=confidence))
        findings = level_findings(results[1])
        assert code in [f.code for f in findings]
        assert any(f.excludes for f in findings) is excluded


def test_roi_too_small_vein_and_bone_island_codes() -> None:
    model = build_spine(
        (LevelSpec("T12", bone_island_mm=6.0), LevelSpec("L1", height_posterior_mm=6.0), LevelSpec("L2")),
        noise_sd=10.0,
    )
    features = extract_features(model.volume, labels=model.labels)
    assert "BONE_ISLAND" in _codes(features.levels, "T12")
    l1 = features.level("L1")
    assert l1 is not None and "ROI_TOO_SMALL" in l1.qc and l1.excluded
    # a vein channel left inside the ROI (no vein exclusion) is caught by the low-outlier rule
    from imaging.measure.roi import RoiParams
    from imaging.measure.vertebra import MeasureParams

    veined = build_spine((LevelSpec("T12"), LevelSpec("L1", 250.0, vein=True), LevelSpec("L2")), noise_sd=8.0)
    no_vein_cut = MeasureParams(roi=RoiParams(vein_depth_fraction=0.0, posterior_fraction=0.0))
    features = extract_features(veined.volume, labels=veined.labels, params=no_vein_cut)
    assert "VEIN_CONTAMINATION" in _codes(features.levels, "L1")


def test_summary_never_averages_excluded_levels() -> None:
    cal = Calibration(method="test", slope=0.8, intercept=0.0, r2=1.0, residual_sd_mg_cm3=0.0)

    def level(name: str, hu: float, excluded: bool) -> VertebraMeasurement:
        return VertebraMeasurement(
            level=name,
            hu_median=hu,
            vbmd_mg_cm3=0.8 * hu,
            confidence=1.0,
            excluded=excluded,
            qc=["METAL"] if excluded else [],
        )

    levels = [level("L1", 100.0, True), level("L2", 120.0, False), level("L3", 999.0, True), level("L4", 80.0, False)]
    summary, findings = summarise(levels, cal)
    assert summary.l1_hu is None
    assert summary.mean_hu_l1_l4 == pytest.approx(100.0)
    assert summary.vbmd_l1_l2_mg_cm3 == pytest.approx(96.0)
    assert summary.levels_used == ["L2", "L4"]
    assert {f.code for f in findings} == {"L1_UNAVAILABLE", "L1_L4_INCOMPLETE", "L1_L2_INCOMPLETE"}
    nothing, _ = summarise([level("L1", 100.0, True)], cal)
    assert nothing.mean_hu_l1_l4 is None and nothing.acr_category is None and nothing.levels_used == []
