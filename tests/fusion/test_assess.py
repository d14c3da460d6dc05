"""`assess`: one patient's RiskReport from a ClinicalRecord and BoneFeatures with a loaded model."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from clinical.types import ClinicalRecord, ClinicalVariables, Variable
from fusion.artifacts import LoadedModel, load_model
from fusion.assess import assess
from fusion.errors import ModelInputError
from fusion.types import RiskReport
from imaging.types import BoneFeatures, FeatureSummary, ImageSource, SegmentationInfo, VertebraMeasurement
from tests.fusion.model_helpers import trained_model_dir

INDEX = date(2024, 5, 1)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_model(trained_model_dir(tmp_path_factory.mktemp("assess"), bootstrap=6))


def _record(**overrides: Variable) -> ClinicalRecord:
    variables = {
        "age_years": Variable(value=74.0, status="derived", sources=["Patient/p1"], unit="a"),
        "sex": Variable(value="female", status="observed", sources=["Patient/p1"]),
        "bmi_kg_m2": Variable(value=23.5, status="observed", sources=["Observation/bmi1"], unit="kg/m2"),
        "prior_fragility_fracture": Variable(value=True, status="observed", sources=["Condition/fx1"]),
        "recent_fracture_2y": Variable(value=True, status="observed", sources=["Condition/fx1"]),
        "current_smoker": Variable(value=False, status="observed", sources=["Observation/smk"]),
        "glucocorticoids": Variable(value=False, status="derived", sources=["MedicationRequest/m1"]),
    }
    variables.update(overrides)
    return ClinicalRecord(
        patient_id="p1",
        index_date=INDEX,
        variables=ClinicalVariables(**variables),
        warnings=["STALE_WEIGHT: 3 years old"],
    )


def _bone(*, l1: float | None = 95.0, mean: float | None = 101.0, vbmd: float | None = None) -> BoneFeatures:
    return BoneFeatures(
        source=ImageSource(kind="dicom", series_uid="1.2.840.1", study_uid="1.2.840.9", study_date=INDEX, kvp=120.0),
        segmentation=SegmentationInfo(backend="labels"),
        levels=[
            VertebraMeasurement(level="L1", hu_median=l1, confidence=0.95, genant_grade=2),
            VertebraMeasurement(level="L2", hu_median=107.0, confidence=0.95, genant_grade=0),
            VertebraMeasurement(level="L3", hu_median=60.0, confidence=0.2, genant_grade=3, excluded=True),
        ],
        summary=FeatureSummary(l1_hu=l1, mean_hu_l1_l4=mean, vbmd_l1_l2_mg_cm3=vbmd, levels_used=["L1", "L2"]),
        warnings=["CONTRAST_ENHANCED: portal venous phase"],
    )


def test_full_report(model: LoadedModel) -> None:
    report = assess(model, patient_id="p1", index_date=INDEX, clinical=_record(), bone=_bone(), horizons=(1, 5, 10))
    assert [(p.outcome, p.horizon_years) for p in report.predictions] == [
        ("major_osteoporotic_fracture", 1.0),
        ("major_osteoporotic_fracture", 5.0),
        ("major_osteoporotic_fracture", 10.0),
        ("hip_fracture", 1.0),
        ("hip_fracture", 5.0),
        ("hip_fracture", 10.0),
    ]
    for p in report.predictions:
        assert p.ci95[0] <= p.probability <= p.ci95[1]
    codes = {f.code for f in report.screening_flags}
    assert {"PROBABLE_OSTEOPOROSIS", "REFER_DXA", "SUSPECTED_VERTEBRAL_FRACTURE", "IMMINENT_FRACTURE_RISK"} <= codes
    fracture = next(f for f in report.screening_flags if f.code == "SUSPECTED_VERTEBRAL_FRACTURE")
    assert "L3" not in fracture.reason  # an excluded level is not evidence
    mof10 = next(p.probability for p in report.predictions if p.horizon_years == 10 and p.outcome.startswith("major"))
    assert ("HIGH_10Y_MOF_RISK" in codes) == (mof10 >= 0.20)
    assert report.diagnosis.method == "classifier" and set(report.diagnosis.probabilities) == {
        "normal",
        "osteopenia",
        "osteoporosis",
    }
    assert report.model.sha256 == model.sha256 and report.model.trained_on == model.card.trained_on
    assert report.inputs.series_uid == "1.2.840.1" and report.inputs.study_uid == "1.2.840.9"
    assert report.inputs.segmentation_backend == "labels"
    assert "Condition/fx1" in report.inputs.clinical_sources
    assert report.inputs.features_used["mean_hu_l1_l4"] == 101.0
    assert (
        "STALE_WEIGHT: 3 years old" in report.warnings and "CONTRAST_ENHANCED: portal venous phase" in report.warnings
    )
    assert report.fhir_risk_assessment is None
    imputed = set(report.inputs.imputed)
    assert "falls_last_12m" in imputed and "parental_hip_fracture" in imputed
    for name in imputed:
        assert any(w.startswith("IMPUTED_INPUT: " + name) for w in report.warnings)
    features = {e.feature for e in report.explanations if e.outcome == "hip_fracture"}
    assert features == set(model.design.labels)
    again = RiskReport.model_validate_json(report.model_dump_json())
    assert again == report


def test_diagnosis_prefers_dxa_then_vbmd(model: LoadedModel) -> None:
    with_dxa = _record(dxa_t_score_min=Variable(value=-2.8, status="observed", sources=["Observation/dxa"]))
    report = assess(model, patient_id="p1", index_date=INDEX, clinical=with_dxa, bone=_bone(vbmd=150.0))
    assert report.diagnosis.method == "dxa_t_score_who" and report.diagnosis.category == "osteoporosis"
    report = assess(model, patient_id="p1", index_date=INDEX, clinical=_record(), bone=_bone(vbmd=75.0))
    assert report.diagnosis.method == "qct_vbmd_acr" and report.diagnosis.category == "osteoporosis"


def test_without_ct_the_risk_is_computed_with_the_imaging_input_named(model: LoadedModel) -> None:
    report = assess(model, patient_id="p1", index_date=INDEX, clinical=_record(), bone=None)
    assert "mean_hu_l1_l4" in report.inputs.imputed and "mean_hu_l1_l4" in report.inputs.missing
    assert any(w.startswith("IMPUTED_INPUT: mean_hu_l1_l4") for w in report.warnings)
    assert report.diagnosis.category == "undetermined"  # no DXA, no vBMD, no CT for the classifier, no L1
    assert report.inputs.series_uid is None


def test_a_source_imputed_value_is_named(model: LoadedModel) -> None:
    record = _record(bmi_kg_m2=Variable(value=27.0, status="imputed", sources=[]))
    report = assess(model, patient_id="p1", index_date=INDEX, clinical=record, bone=_bone())
    assert any(w.startswith("DEFAULTED_INPUT: bmi_kg_m2") for w in report.warnings)


def test_required_and_implausible_inputs_are_refused(model: LoadedModel) -> None:
    with pytest.raises(ModelInputError, match="requires age_years") as info:
        assess(model, patient_id="p1", index_date=INDEX, clinical=_record(age_years=Variable()), bone=_bone())
    assert info.value.field == "clinical.variables.age_years"  # type: ignore[attr-defined]
    with pytest.raises(ModelInputError, match="sex"):
        assess(
            model,
            patient_id="p1",
            index_date=INDEX,
            clinical=_record(sex=Variable(value="unknown", status="observed")),
            bone=_bone(),
        )
    with pytest.raises(ModelInputError, match="outside the plausible range") as info:
        assess(model, patient_id="p1", index_date=INDEX, clinical=_record(), bone=_bone(mean=1500.0))
    assert info.value.field == "imaging.summary.mean_hu_l1_l4"  # type: ignore[attr-defined]
    with pytest.raises(ModelInputError, match="requires age_years"):
        assess(model, patient_id="p1", index_date=INDEX, clinical=None, bone=_bone())


def test_mismatched_records_outcomes_and_horizons_are_refused(model: LoadedModel) -> None:
    with pytest.raises(ModelInputError, match="another patient"):
        assess(model, patient_id="p2", index_date=INDEX, clinical=_record(), bone=_bone())
    with pytest.raises(ModelInputError, match="anchored"):
        assess(model, patient_id="p1", index_date=date(2025, 1, 1), clinical=_record(), bone=_bone())
    with pytest.raises(ModelInputError, match="unknown outcome"):
        assess(model, patient_id="p1", index_date=INDEX, clinical=_record(), bone=_bone(), outcomes=("wrist",))
    with pytest.raises(ModelInputError, match="horizons"):
        assess(model, patient_id="p1", index_date=INDEX, clinical=_record(), bone=_bone(), horizons=(12,))


def test_one_outcome_only(model: LoadedModel) -> None:
    report = assess(
        model, patient_id="p1", index_date=INDEX, clinical=_record(), bone=_bone(), outcomes=("hip_fracture",)
    )
    assert {p.outcome for p in report.predictions} == {"hip_fracture"}
    assert {e.outcome for e in report.explanations} == {"hip_fracture"}


def test_a_single_outcome_model_answers_the_default_request(tmp_path: Path) -> None:
    from fusion.training import TrainConfig, train_model
    from tests.fusion.model_helpers import TEST_FEATURES, small_cohort

    cohort = small_cohort().drop(columns=["hip_time_years", "hip_event"])
    config = TrainConfig(features=TEST_FEATURES, bootstrap=2, diagnosis=False)
    model = load_model(train_model(cohort, config).save(tmp_path / "mof-only"))
    report = assess(model, patient_id="p1", index_date=INDEX, clinical=_record(), bone=_bone())
    assert {p.outcome for p in report.predictions} == {"major_osteoporotic_fracture"}
    assert "HIGH_10Y_HIP_RISK" not in {f.code for f in report.screening_flags}
    with pytest.raises(ModelInputError, match="does not predict hip_fracture"):
        assess(model, patient_id="p1", index_date=INDEX, clinical=_record(), bone=_bone(), outcomes=("hip_fracture",))
