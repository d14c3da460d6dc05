from __future__ import annotations

from datetime import date

from fhir.resources.R4B.riskassessment import RiskAssessment

from fusion.types import AssessmentInputs
from server.fhir_risk_assessment import MODEL_SYSTEM, build_risk_assessment
from tests.server.test_convert import rich_report


def test_risk_assessment_mirrors_the_report_and_validates() -> None:
    report = rich_report().model_copy(
        update={
            "inputs": AssessmentInputs(
                clinical_sources=["Patient/p", "Observation/o1"], study_uid="1.2.3", series_uid="1.2.3.4"
            )
        }
    )
    resource = build_risk_assessment(report)
    RiskAssessment.model_validate(resource)
    assert resource["subject"] == {"reference": "Patient/p"}
    assert resource["occurrenceDateTime"] == "2024-05-01"
    assert resource["method"]["coding"][0]["system"] == MODEL_SYSTEM
    assert {"reference": "Observation/o1"} in resource["basis"]
    study = next(b for b in resource["basis"] if b.get("type") == "ImagingStudy")
    assert study["identifier"] == {"system": "urn:dicom:uid", "value": "urn:oid:1.2.3"}
    (prediction,) = resource["prediction"]
    assert prediction["probabilityDecimal"] == 0.0
    assert prediction["whenPeriod"] == {"start": "2024-05-01", "end": "2034-05-01"}
    assert prediction["outcome"]["coding"][0]["code"] == "major_osteoporotic_fracture"


def test_id_is_stable_for_the_same_report() -> None:
    report = rich_report()
    assert build_risk_assessment(report)["id"] == build_risk_assessment(report)["id"]
    later = report.model_copy(update={"index_date": date(2025, 1, 1)})
    assert build_risk_assessment(later)["id"] != build_risk_assessment(report)["id"]


def test_fast_path_output_is_the_fhir_models_canonical_form() -> None:
    import json

    from server.fhir_risk_assessment import canonical_risk_assessment

    for report in (rich_report(), rich_report().model_copy(update={"inputs": AssessmentInputs(study_uid="1.2")})):
        built = build_risk_assessment(report)
        again = build_risk_assessment(report)  # the second time takes the cached-structure path
        assert json.dumps(built) == json.dumps(again) == json.dumps(canonical_risk_assessment(built))


def test_new_structures_and_bad_values_take_the_full_validation() -> None:
    import pytest
    from pydantic import ValidationError

    from server.fhir_risk_assessment import validated_risk_assessment

    resource = build_risk_assessment(rich_report())
    with pytest.raises(ValidationError):
        validated_risk_assessment({**resource, "status": 7})  # same keys, a value of the wrong type
    with pytest.raises(ValidationError):
        validated_risk_assessment({**resource, "unknownElement": "x"})
