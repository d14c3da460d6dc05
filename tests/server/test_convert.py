"""Domain types <-> protobuf messages: lossless both ways, and loud when the two drift apart."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from google.protobuf import json_format
from pydantic import BaseModel

from clinical.types import ClinicalRecord, ClinicalVariables, Variable
from fusion.types import (
    AssessmentInputs,
    Diagnosis,
    Explanation,
    FeatureSpec,
    ModelCard,
    ModelRef,
    Prediction,
    RiskReport,
    ScreeningFlag,
)
from imaging.types import (
    BoneFeatures,
    Calibration,
    CalibrationReference,
    FeatureSummary,
    ImageSource,
    SegmentationInfo,
    VertebraMeasurement,
)
from server import convert
from server.generated.osteorisk.v1 import bone_features_pb2, clinical_record_pb2


def rich_bone_features() -> BoneFeatures:
    level = VertebraMeasurement(
        level="L1",
        hu_mean=150.5,
        hu_median=148.0,
        hu_sd=30.2,
        hu_p05=101.0,
        hu_p25=130.0,
        hu_p75=170.0,
        hu_p95=199.0,
        roi_volume_ml=4.2,
        vbmd_mg_cm3=131.0,
        height_anterior_mm=25.0,
        height_middle_mm=24.0,
        height_posterior_mm=26.0,
        genant_grade=0,
        texture={"glcm_contrast": 12.5, "glcm_homogeneity": 0.4},
        confidence=0.93,
        qc=["NON_120_KVP"],
        excluded=False,
        center_mm=(1.0, -20.5, 300.0),
    )
    fractured = VertebraMeasurement(
        level="L2", hu_median=0.0, confidence=0.0, genant_grade=3, excluded=True, exclusion_reason="fracture"
    )
    return BoneFeatures(
        source=ImageSource(
            kind="dicom",
            series_uid="1.2.3",
            study_uid="1.2",
            study_date=date(2024, 5, 1),
            modality="CT",
            manufacturer="SIEMENS",
            kvp=0.0,
            contrast="contrast",
            contrast_agent="Omnipaque",
            kernel="B30f",
            slice_thickness_mm=2.0,
            spacing_mm=(0.97, 0.97, 2.0),
            shape=(512, 512, 20),
            selection_reason="only series",
        ),
        segmentation=SegmentationInfo(backend="builtin", parameters={"bone_threshold_hu": "180"}),
        levels=[level, fractured],
        summary=FeatureSummary(
            l1_hu=148.0, mean_hu_l1_l4=148.0, vbmd_l1_l2_mg_cm3=131.0, acr_category="normal", levels_used=["L1"]
        ),
        calibration=Calibration(
            method="phantomless_internal_tissue/1",
            slope=0.8,
            intercept=-5.0,
            r2=0.99,
            residual_sd_mg_cm3=3.1,
            references=[CalibrationReference(tissue="air", hu=-1000.0, n_voxels=5000, reference_density_mg_cm3=0.0)],
            status="warning",
            reason="muscle residual 12 mg/cm3",
        ),
        warnings=["NON_120_KVP: 100 kVp"],
    )


def rich_record() -> ClinicalRecord:
    variables = ClinicalVariables(
        age_years=Variable(value=71.5, status="derived", sources=["Patient/p"], effective=date(2024, 5, 1), unit="a"),
        sex=Variable(value="female", status="observed", sources=["Patient/p"]),
        prior_hip_fracture=Variable(value=False, status="observed", sources=["Condition/c"]),
        dxa_t_score_min=Variable(value=0.0, status="observed", sources=["Observation/o"], effective=date(2023, 1, 1)),
    )
    return ClinicalRecord(patient_id="p", index_date=date(2024, 5, 1), variables=variables, warnings=["w"])


def rich_report() -> RiskReport:
    return RiskReport(
        patient_id="p",
        index_date=date(2024, 5, 1),
        diagnosis=Diagnosis(
            category="osteoporosis",
            probabilities={"osteoporosis": 0.7, "normal": 0.0},
            method="classifier",
            basis="p=0.7",
        ),
        screening_flags=[ScreeningFlag(code="PROBABLE_OSTEOPOROSIS", severity="critical", reason="L1 95 HU <= 110")],
        predictions=[
            Prediction(outcome="major_osteoporotic_fracture", horizon_years=10, probability=0.0, ci95=(0.0, 0.01))
        ],
        explanations=[
            Explanation(feature="sex", value="female", contribution=0.0),
            Explanation(feature="age_years", value=None, contribution=-0.2),
        ],
        model=ModelRef(id="m", version="1.0.0", sha256="ab" * 32, trained_on="synthetic", intended_use="demo"),
        inputs=AssessmentInputs(
            clinical_sources=["Patient/p"],
            series_uid="1.2.3",
            features_used={"l1_hu": 95.0},
            imputed=["bmi_kg_m2"],
            clinical=rich_record(),
            imaging=FeatureSummary(l1_hu=95.0, levels_used=["L1"]),
        ),
        warnings=["bmi_kg_m2 imputed"],
        fhir_risk_assessment={
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": {"reference": "Patient/p"},
            "prediction": [{"probabilityDecimal": 0.0, "whenPeriod": {"start": "2024-05-01", "end": "2034-05-01"}}],
        },
    )


def rich_card() -> ModelCard:
    return ModelCard(
        id="m",
        version="1.0.0",
        created=datetime(2026, 1, 1, tzinfo=UTC),
        kind="cox",
        trained_on="synthetic",
        intended_use="demo",
        features=[
            FeatureSpec(name="age_years", unit="a", min=40, max=100, impute_value=65.0),
            FeatureSpec(name="l1_hu", unit="[hnsf'U]", required=True),
        ],
        outcomes=["hip_fracture"],
        metrics={"c": 0.7},
        files={"weights.json": "00" * 32},
        references=["doi:x"],
    )


def test_bone_features_round_trip() -> None:
    original = rich_bone_features()
    assert convert.bone_features_from_proto(convert.bone_features_to_proto(original)) == original


def test_risk_report_round_trip_keeps_nested_record_and_fhir_resource() -> None:
    original = rich_report()
    message = convert.risk_report_to_proto(original)
    assert message.inputs.clinical.variables.prior_hip_fracture.value.bool_value is False
    # the FHIR resource travels as JSON text in its own element order, ready to post to a FHIR server
    assert list(json.loads(message.fhir_risk_assessment_json)) == ["resourceType", "status", "subject", "prediction"]
    assert convert.risk_report_from_proto(message) == original
    for text, reason in (("{not json", "is not JSON"), ("[1, 2]", "not a JSON object")):
        message.fhir_risk_assessment_json = text
        with pytest.raises(ValueError, match=reason):
            convert.risk_report_from_proto(message)
    message.fhir_risk_assessment_json = ""
    assert convert.risk_report_from_proto(message).fhir_risk_assessment is None


def test_model_card_round_trip_carries_manifest_hash_on_the_wire() -> None:
    message = convert.model_card_to_proto(rich_card(), sha256="cd" * 32)
    assert message.sha256 == "cd" * 32
    assert convert.model_card_from_proto(message) == rich_card()


def test_inline_variables_default_to_observed_and_keep_status() -> None:
    message = clinical_record_pb2.ClinicalVariables()
    message.age_years.value.number_value = 70
    message.sex.value.string_value = "female"
    message.bmi_kg_m2.value.number_value = 24.0
    message.bmi_kg_m2.status = "derived"
    variables = convert.clinical_variables_from_proto(message)
    assert variables.age_years == Variable(value=70.0, status="observed")
    assert variables.bmi_kg_m2.status == "derived"
    assert variables.weight_kg.is_missing


def test_inline_variables_round_trip() -> None:
    variables = rich_record().variables
    assert convert.clinical_variables_from_proto(convert.clinical_variables_to_proto(variables)) == variables


def test_a_domain_field_missing_from_the_proto_fails_loudly() -> None:
    class Drifted(BaseModel):
        warnings: list[str] = []
        new_field: float = 1.0

    with pytest.raises(json_format.ParseError, match="new_field"):
        convert.to_proto(Drifted(), bone_features_pb2.BoneFeatures())


def test_a_proto_field_missing_from_the_domain_is_refused() -> None:
    message = convert.model_card_to_proto(rich_card(), sha256="00" * 32)
    with pytest.raises(ValueError, match="sha256"):
        convert.from_proto(message, ModelCard)
