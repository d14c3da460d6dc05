"""The domain types: JSON round trips, validation, and the committed JSON Schemas."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from clinical.types import ClinicalRecord, ClinicalVariables, Variable
from fusion.types import Diagnosis, ModelCard, ModelRef, Prediction, RiskReport, ScreeningFlag
from imaging.types import BoneFeatures, FeatureSummary, ImageSource, SegmentationInfo, VertebraMeasurement
from server.json_schemas import CONTRACTS, SCHEMA_DIR, schema_text


def _bone_features() -> BoneFeatures:
    return BoneFeatures(
        source=ImageSource(kind="dicom", series_uid="1.2.3", kvp=120.0, contrast="native", study_date=date(2024, 5, 1)),
        segmentation=SegmentationInfo(backend="labels", label_convention="totalsegmentator"),
        levels=[VertebraMeasurement(level="L1", hu_median=142.5, confidence=0.97, qc=["NON_120_KVP"])],
        summary=FeatureSummary(l1_hu=142.5, acr_category="normal", levels_used=["L1"]),
        warnings=["NON_120_KVP: 100 kVp"],
    )


def _clinical_record() -> ClinicalRecord:
    variables = ClinicalVariables(
        age_years=Variable(value=71.2, status="derived", sources=["Patient/p1"], unit="a"),
        sex=Variable(value="female", status="observed", sources=["Patient/p1"]),
        prior_hip_fracture=Variable(
            value=True, status="observed", sources=["Condition/c9"], effective=date(2020, 1, 3)
        ),
    )
    return ClinicalRecord(patient_id="p1", index_date=date(2024, 5, 1), variables=variables)


def _risk_report() -> RiskReport:
    return RiskReport(
        patient_id="p1",
        index_date=date(2024, 5, 1),
        diagnosis=Diagnosis(category="osteopenia", method="acr_qct_vbmd", basis="L1-L2 vBMD 95 mg/cm3"),
        screening_flags=[ScreeningFlag(code="REFER_DXA", severity="warning", reason="L1 142 HU <= 160")],
        predictions=[Prediction(outcome="hip_fracture", horizon_years=10, probability=0.04, ci95=(0.03, 0.05))],
        model=ModelRef(id="m", version="1", sha256="0" * 64, trained_on="synthetic", intended_use="demo"),
        fhir_risk_assessment={"resourceType": "RiskAssessment", "status": "final"},
    )


def _model_card() -> ModelCard:
    return ModelCard(
        id="m",
        version="1",
        created=datetime(2026, 1, 1, tzinfo=UTC),
        kind="cox",
        trained_on="synthetic",
        intended_use="demo",
    )


@pytest.mark.parametrize("make", [_bone_features, _clinical_record, _risk_report, _model_card])
def test_json_round_trip_is_lossless(make: object) -> None:
    original = make()  # type: ignore[operator]
    text = original.model_dump_json()
    again = type(original).model_validate_json(text)
    assert again == original
    assert again.model_dump_json() == text


def test_schema_field_uses_contract_name() -> None:
    assert json.loads(_bone_features().model_dump_json())["schema"] == "osteorisk.bone_features/1"
    assert json.loads(_clinical_record().model_dump_json())["schema"] == "osteorisk.clinical/1"
    assert json.loads(_risk_report().model_dump_json())["schema"] == "osteorisk.risk_report/1"


def test_clinical_json_has_every_contract_variable() -> None:
    variables = json.loads(_clinical_record().model_dump_json())["variables"]
    assert list(variables) == list(ClinicalVariables.names())
    assert variables["prior_hip_fracture"] == {
        "value": True,
        "status": "observed",
        "sources": ["Condition/c9"],
        "effective": "2020-01-03",
        "unit": None,
    }
    assert variables["bmi_kg_m2"]["status"] == "missing"


def test_types_reject_bad_values() -> None:
    with pytest.raises(ValidationError, match="ci95"):
        Prediction(outcome="hip_fracture", horizon_years=5, probability=0.2, ci95=(0.3, 0.4))
    with pytest.raises(ValidationError):
        Prediction(outcome="wrist_fracture", horizon_years=5, probability=0.2, ci95=(0.1, 0.3))  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        VertebraMeasurement(level="L9", confidence=0.5)
    with pytest.raises(ValidationError):
        VertebraMeasurement(level="L1", confidence=1.5)
    with pytest.raises(ValidationError):
        ClinicalRecord.model_validate({"patient_id": "p", "index_date": "2024-01-01", "surprise": 1})


def test_types_are_immutable() -> None:
    record = _clinical_record()
    with pytest.raises(ValidationError):
        record.patient_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_committed_json_schemas_are_current(name: str) -> None:
    committed = (SCHEMA_DIR / f"{name}.schema.json").read_text()
    assert committed == schema_text(CONTRACTS[name]), "stale JSON schema: run `make schemas`"
