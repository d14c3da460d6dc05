"""The two validation levels: "full" (R4B models) and "elements" (what the extraction reads; cohort default).

Both refuse a resource malformed in an element the extraction reads, naming the resource and the element;
both give the same record for valid data (Synthea bundles, a generated export); only "full" looks at
elements the extraction never reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from clinical.bulk import iter_cohort_records
from clinical.bulk_generator import generate_bulk_export, read_truth
from clinical.errors import FhirInputError
from clinical.extract import build_record
from clinical.fhir_check import check_elements
from clinical.sources.bundle import BundleSource
from tests.clinical.builder import LOINC, SNOMED, UCUM, BundleBuilder

INDEX = date(2020, 6, 1)
LEVELS = ("full", "elements")


def _weight() -> tuple[BundleBuilder, dict[str, Any]]:
    builder = BundleBuilder()
    return builder, builder.observation("29463-7", "2020-01-01", value=70, unit="kg")


def _value_as_text() -> BundleBuilder:
    builder, obs = _weight()
    obs["valueQuantity"]["value"] = "seventy"
    return builder


def _misspelt_element() -> BundleBuilder:
    builder, obs = _weight()
    obs["valueQuantiy"] = obs.pop("valueQuantity")
    return builder


def _time_without_zone() -> BundleBuilder:
    builder, obs = _weight()
    obs["effectiveDateTime"] = "2020-01-01T10:00:00"
    return builder


def _display_a_number() -> BundleBuilder:
    builder, obs = _weight()
    obs["code"]["coding"].append({"system": LOINC, "code": "3141-9", "display": 12})
    return builder


def _two_value_types() -> BundleBuilder:
    builder, obs = _weight()
    obs["valueString"] = "70 kg"
    return builder


def _null_component() -> BundleBuilder:
    builder, obs = _weight()
    obs["component"] = [None]
    return builder


def _onset_age_as_text() -> BundleBuilder:
    builder = BundleBuilder()
    condition = builder.condition(SNOMED, "5913000", None)
    condition["onsetAge"] = {"value": "60", "unit": "a", "system": UCUM, "code": "a"}
    return builder


def _frequency_zero() -> BundleBuilder:
    builder = BundleBuilder()
    request = builder.medication_request("8640", "predniSONE", "2019-01-01")
    request["dosageInstruction"] = [{"timing": {"repeat": {"frequency": 0, "period": 1, "periodUnit": "d"}}}]
    return builder


def _null_family_condition() -> BundleBuilder:
    builder = BundleBuilder()
    builder.family_history("MTH", SNOMED, "5913000")["condition"].append(None)
    return builder


def _impossible_birth_date() -> BundleBuilder:
    return BundleBuilder(birth_date="1950-02-30")


def _misspelt_patient_element() -> BundleBuilder:
    builder = BundleBuilder()
    builder.patient["gendre"] = "female"
    return builder


#: case -> (what the message must name at "elements", at "full")
CASES: dict[str, tuple[Callable[[], BundleBuilder], str, str]] = {
    "value as text": (
        _value_as_text,
        r"Observation/obs1 .*: valueQuantity\.value: expected a decimal",
        "valueQuantity",
    ),
    "misspelt element": (_misspelt_element, r"Observation/obs1 .*: valueQuantiy: is not an element", "valueQuantiy"),
    "time without zone": (_time_without_zone, r"effectiveDateTime: .* with a time zone", "effectiveDateTime"),
    "display a number": (_display_a_number, r"code\.coding\[1\]\.display: expected a non-empty string", "display"),
    "two value types": (_two_value_types, r"value\[x\]: given as valueQuantity and valueString", "valueString"),
    "null component": (_null_component, r"Observation/obs1 .*: component\[0\]: null is not allowed", "component"),
    "onset age as text": (_onset_age_as_text, r"Condition/cond1 .*: onsetAge\.value: expected a decimal", "onsetAge"),
    "frequency zero": (_frequency_zero, r"dosageInstruction\[0\]\.timing\.repeat\.frequency: .*>= 1", "frequency"),
    "null family condition": (
        _null_family_condition,
        r"FamilyMemberHistory/fmh1 .*: condition\[1\]: null",
        "condition",
    ),
    "impossible birth date": (
        _impossible_birth_date,
        r"Patient/p1 .*: birthDate: '1950-02-30' is not a calendar",
        "birth",
    ),
    "misspelt patient element": (_misspelt_patient_element, r"Patient/p1 .*: gendre: is not an element", "gendre"),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("level", LEVELS)
def test_a_resource_malformed_where_the_extraction_reads_is_refused_at_both_levels(name: str, level: str) -> None:
    make, elements_message, full_message = CASES[name]
    with pytest.raises(FhirInputError, match=elements_message if level == "elements" else full_message):
        build_record(make().source(), "p1", INDEX, validation=level)  # type: ignore[arg-type]


def test_an_element_the_extraction_never_reads_is_looked_at_only_by_full_validation() -> None:
    builder, obs = _weight()
    obs["performer"] = "Dr X"  # must be an array of References
    with pytest.raises(FhirInputError, match=r"Observation/obs1 is not a valid FHIR R4 Observation: performer"):
        build_record(builder.source(), "p1", INDEX, validation="full")
    record = build_record(builder.source(), "p1", INDEX, validation="elements")
    assert record.variables.weight_kg.value == 70.0


def test_resources_the_extraction_does_not_use_are_validated_at_neither_level() -> None:
    builder, _ = _weight()
    builder.observation("8480-6", "2020-01-01", value="high", unit="mm[Hg]")  # systolic BP: not a risk factor
    for level in LEVELS:
        record = build_record(builder.source(), "p1", INDEX, validation=level)  # type: ignore[arg-type]
        assert record.variables.weight_kg.value == 70.0


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="validation must be one of full, elements"):
        build_record(BundleBuilder().source(), "p1", INDEX, validation="lenient")  # type: ignore[arg-type]


SYNTHEA = {
    "fhir/synthea/Lonnie_Von_28fbf0c8-5a9c-4781-b79f-f6118c3e2816.json": date(2020, 1, 1),
    "fhir/synthea/Keira_Huel_279e1ce8-1a84-492b-bb78-b1d13a0d564c.json": date(2003, 6, 1),
    "fhir/synthea/Willia_Runolfsdottir_074c3873-c476-40e3-8046-f67372eb5e05.json": date(2019, 6, 1),
    "fhir/synthea/Fredrick_Kris_ec6a5bb6-b412-4bb6-8219-11d66f52ae8b.json": date(2019, 1, 1),
}


@pytest.mark.parametrize("relative", sorted(SYNTHEA))
def test_both_levels_give_the_same_record_for_synthea_bundles(
    relative: str, shared_data: Callable[[str], Path]
) -> None:
    source = BundleSource.from_path(shared_data(relative))
    patient_id = next(source.patient_ids())
    full = build_record(source, patient_id, SYNTHEA[relative], validation="full")
    fast = build_record(source, patient_id, SYNTHEA[relative], validation="elements")
    assert fast == full
    assert len([v for _, v in full.variables if v.status == "observed"]) >= 5


def test_every_resource_of_the_shared_fhir_data_passes_the_element_check(shared_data: Callable[[str], Path]) -> None:
    checked = 0
    for path in sorted(shared_data("fhir").rglob("*.json")):
        document = json.loads(path.read_bytes())
        resources = [e["resource"] for e in document.get("entry", [])] if document["resourceType"] == "Bundle" else []
        for resource in resources or [document]:
            check_elements(resource)
            checked += 1
    assert checked > 1000


def test_both_levels_give_the_same_cohort_records(tmp_path: Path) -> None:
    export = generate_bulk_export(tmp_path, patients=150, seed=5150)
    dates = {pid: row["index_date"] for pid, row in read_truth(export.truth_path).items()}
    full = list(iter_cohort_records(export.directory, dates, workers=1, validation="full"))
    fast = list(iter_cohort_records(export.directory, dates, workers=1))  # "elements" is the cohort default
    assert len(fast) == 150 and all(r.ok for r in fast)
    assert fast == full


def test_a_malformed_resource_in_a_cohort_fails_its_patient_only(tmp_path: Path) -> None:
    patients = [{"resourceType": "Patient", "id": pid, "birthDate": "1950-01-01", "gender": "female"} for pid in "ab"]
    weight = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
        "effectiveDateTime": "2020-01-01",
        "valueQuantity": {"value": 70, "unit": "kg", "system": UCUM, "code": "kg"},
    }
    observations = [
        {**weight, "id": "good", "subject": {"reference": "Patient/a"}},
        {**weight, "id": "bad", "subject": {"reference": "Patient/b"}, "effectiveDateTime": "2020-01-01T10:00"},
    ]
    (tmp_path / "Patient.ndjson").write_text("".join(json.dumps(p) + "\n" for p in patients))
    (tmp_path / "Observation.ndjson").write_text("".join(json.dumps(o) + "\n" for o in observations))
    results = {r.patient_id: r for r in iter_cohort_records(tmp_path, INDEX, workers=1)}
    assert results["a"].record is not None and results["a"].record.variables.weight_kg.value == 70.0
    assert results["b"].record is None and results["b"].reason == "INVALID_FHIR"
    assert "Observation/bad is not a valid FHIR R4 Observation: effectiveDateTime" in (results["b"].error or "")


def _kitchen_sink() -> list[dict[str, Any]]:
    """Valid resources that use every element the element check knows, at any depth."""
    quantity = {"value": 5, "unit": "mg", "system": UCUM, "code": "mg"}
    period = {"start": "2019-01-01", "end": "2019-06-30T10:00:00+01:00"}
    coding = {
        "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
        "code": "312617",
        "display": "predniSONE 5 MG Oral Tablet",
    }
    dosage = {
        "timing": {
            "repeat": {
                "boundsDuration": {"value": 90, "unit": "d", "system": UCUM, "code": "d"},
                "frequency": 1,
                "period": 1,
                "periodUnit": "d",
            },
            "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation", "code": "QD"}]},
        },
        "asNeededBoolean": False,
        "route": {"coding": [{"system": SNOMED, "code": "26643006", "display": "Oral route"}], "text": "oral"},
        "doseAndRate": [{"doseQuantity": quantity}, {"doseRange": {"low": quantity, "high": quantity}}],
    }
    subject = {"reference": "Patient/p1", "display": "p"}
    medication = {"resourceType": "Medication", "id": "med", "code": {"coding": [coding]}}
    return [
        {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-03", "deceasedBoolean": False},
        {
            "resourceType": "Observation",
            "id": "o",
            "status": "amended",
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
            "subject": subject,
            "effectivePeriod": period,
            "issued": "2019-07-01T00:00:00Z",
            "dataAbsentReason": {"text": "x"},
            "component": [
                {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": quantity},
                {"code": {"text": "other"}, "valueCodeableConcept": {"text": "y"}},
                {"code": {"text": "flag"}, "valueBoolean": True},
                {"code": {"text": "n"}, "valueInteger": 3},
            ],
        },
        {
            "resourceType": "Condition",
            "id": "c",
            "code": {"coding": [{"system": SNOMED, "code": "5913000"}]},
            "subject": subject,
            "onsetAge": {"value": 71, "unit": "a", "system": UCUM, "code": "a"},
            "abatementPeriod": period,
            "recordedDate": "2019-02-01",
            "clinicalStatus": {"coding": [{"code": "resolved"}]},
        },
        {
            "resourceType": "MedicationRequest",
            "id": "mr",
            "status": "completed",
            "intent": "order",
            "subject": subject,
            "medicationReference": {"reference": "#med"},
            "contained": [medication],
            "authoredOn": "2019-01-01",
            "dosageInstruction": [dosage],
            "dispenseRequest": {
                "validityPeriod": period,
                "numberOfRepeatsAllowed": 2,
                "quantity": {"value": 30, "unit": "tablet"},
                "expectedSupplyDuration": {"value": 30, "unit": "d", "system": UCUM, "code": "d"},
            },
        },
        {
            "resourceType": "MedicationStatement",
            "id": "ms",
            "status": "active",
            "subject": subject,
            "medicationCodeableConcept": {"coding": [coding]},
            "effectivePeriod": period,
            "dateAsserted": "2019-02-01",
            "dosage": [
                {
                    **dosage,
                    "timing": {"repeat": {"boundsPeriod": period, "frequency": 2, "period": 1, "periodUnit": "d"}},
                }
            ],
        },
        {
            "resourceType": "FamilyMemberHistory",
            "id": "f",
            "status": "completed",
            "patient": subject,
            "date": "2015",
            "relationship": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]
            },
            "condition": [
                {"code": {"coding": [{"system": SNOMED, "code": "5913000"}]}, "onsetAge": {"value": 80, "unit": "a"}}
            ],
        },
        medication,
    ]


def test_both_levels_accept_valid_resources_using_every_checked_element() -> None:
    from clinical.fhir_check import RESOURCE_SPECS
    from clinical.fhir_values import validate_resource

    resources = _kitchen_sink()
    assert {r["resourceType"] for r in resources} == set(RESOURCE_SPECS)
    for resource in resources:
        validate_resource(resource)
        check_elements(resource)
