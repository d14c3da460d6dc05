"""Every extraction rule on small hand-built bundles (tests/clinical/builder.py)."""

from __future__ import annotations

from datetime import date

import pytest

from clinical.errors import PatientDeceasedError
from clinical.extract import build_record
from clinical.types import ClinicalRecord
from tests.clinical.builder import ICD10CM, LOINC, RXNORM, SNOMED, BundleBuilder, concept

INDEX = date(2020, 6, 1)


def record(builder: BundleBuilder, index: date = INDEX, **options: bool) -> ClinicalRecord:
    return build_record(builder.source(), builder.patient_id, index, **options)


def test_latest_weight_in_window_with_unit_conversion() -> None:
    b = BundleBuilder()
    b.observation("29463-7", "2019-01-01", value=70, unit="kg")
    b.observation("29463-7", "2020-01-01", value=176.37, unit="[lb_av]")
    b.observation("29463-7", "2021-01-01", value=90, unit="kg")  # after the index date
    v = record(b).variables.weight_kg
    assert v.value == pytest.approx(176.37 * 0.45359237)
    assert v.effective == date(2020, 1, 1)
    assert v.unit == "kg"


def test_height_in_metres_and_bmi_derived() -> None:
    b = BundleBuilder()
    b.observation("29463-7", "2020-01-01", value=64000, unit="g")
    b.observation("8302-2", "2020-01-01", value=1.6, unit="m")
    r = record(b)
    assert r.variables.height_cm.value == pytest.approx(160.0)
    assert r.variables.bmi_kg_m2.value == pytest.approx(25.0)
    assert r.variables.bmi_kg_m2.status == "derived"
    assert len(r.variables.bmi_kg_m2.sources) == 2


def test_implausible_weight_dropped_next_latest_used() -> None:
    b = BundleBuilder()
    b.observation("29463-7", "2019-06-01", value=68, unit="kg")
    b.observation("29463-7", "2020-01-01", value=680, unit="kg")
    r = record(b)
    assert r.variables.weight_kg.value == 68
    assert any("implausible" in w for w in r.warnings)


def test_same_day_conflicting_weights_warned_and_averaged() -> None:
    b = BundleBuilder()
    b.observation("29463-7", "2020-01-01T08:00:00Z", value=70, unit="kg")
    b.observation("29463-7", "2020-01-01T09:00:00Z", value=76, unit="kg")
    r = record(b)
    assert r.variables.weight_kg.value == pytest.approx(73)
    assert r.variables.weight_kg.status == "derived"
    assert any("conflicting" in w for w in r.warnings)


def test_observation_statuses() -> None:
    b = BundleBuilder()
    b.observation("29463-7", "2020-03-01", value=80, unit="kg", status="entered-in-error")
    b.observation("29463-7", "2020-02-01", value=79, unit="kg", status="preliminary")
    b.observation("29463-7", "2020-01-01", value=78, unit="kg", status="amended")
    r = record(b)
    assert r.variables.weight_kg.value == 78
    assert any("preliminary" in w for w in r.warnings)


def test_weight_older_than_two_years_is_missing() -> None:
    b = BundleBuilder()
    b.observation("29463-7", "2018-05-01", value=70, unit="kg")
    r = record(b)
    assert r.variables.weight_kg.status == "missing"
    assert any("weight_kg" in w and "older" in w for w in r.warnings)


def test_partial_birth_date_and_age() -> None:
    b = BundleBuilder(birth_date="1950")
    r = record(b)
    assert r.variables.age_years.value == 69.0  # taken as 1950-07-01
    assert r.variables.age_years.status == "derived"
    assert any("birthDate 1950" in w for w in r.warnings)
    assert record(BundleBuilder(birth_date="1950-05")).variables.age_years.value == 70.0


def test_deceased_rules() -> None:
    b = BundleBuilder()
    b.patient["deceasedDateTime"] = "2020-05-01"
    with pytest.raises(PatientDeceasedError):
        record(b)
    assert record(b, date(2020, 4, 30)).variables.age_years.value == 70.0
    undated = BundleBuilder()
    undated.patient["deceasedBoolean"] = True
    with pytest.raises(PatientDeceasedError, match="without a date"):
        record(undated)
    assert any("deceased" in w for w in record(undated, allow_undated_death=True).warnings)


def test_fracture_sites_icd_and_snomed_and_resolved_counts() -> None:
    b = BundleBuilder()
    b.condition(ICD10CM, "S72.001A", "2012-01-01", clinical="resolved")  # femoral neck
    b.condition(ICD10CM, "M80.08XA", "2019-09-01")  # osteoporotic vertebral fracture
    b.condition(ICD10CM, "S62.101A", "2019-10-01")  # hand: not a fragility site
    v = record(b).variables
    assert v.prior_hip_fracture.value is True
    assert v.prior_vertebral_fracture.value is True
    assert v.prior_fragility_fracture.value is True
    assert v.recent_fracture_2y.value is True
    assert v.recent_fracture_2y.sources == ["Condition/cond2"]


def test_fracture_refuted_or_future_or_young_ignored() -> None:
    b = BundleBuilder()
    b.condition(SNOMED, "359817006", "2015-01-01", verification="refuted")
    b.condition(SNOMED, "359817006", "2021-01-01")
    b.condition(SNOMED, "65966004", "1980-01-01")  # aged 29
    r = record(b)
    assert r.variables.prior_fragility_fracture.value is False
    assert r.variables.prior_fragility_fracture.status == "derived"


def test_no_conditions_at_all_is_missing_not_false() -> None:
    r = record(BundleBuilder())
    assert r.variables.prior_fragility_fracture.status == "missing"
    assert r.variables.rheumatoid_arthritis.status == "missing"


def test_condition_dated_by_recorded_date_when_no_onset() -> None:
    b = BundleBuilder()
    b.condition(SNOMED, "69896004", None, recordedDate="2010-01-01")
    r = record(b)
    assert r.variables.rheumatoid_arthritis.value is True
    assert any("recordedDate" in w for w in r.warnings)


def test_falls_window_and_screening_answer() -> None:
    b = BundleBuilder()
    b.condition(ICD10CM, "W19.XXXA", "2019-01-01")  # older than 12 months
    b.observation("52552-7", "2020-02-01", answer=concept(LOINC, "LA32-8"))
    v = record(b).variables.falls_last_12m
    assert v.value is False
    b.condition(ICD10CM, "Z91.81", "2020-05-01")
    assert record(b).variables.falls_last_12m.value is True


def test_parental_hip_fracture() -> None:
    b = BundleBuilder()
    b.family_history("MTH", SNOMED, "359817006")
    assert record(b).variables.parental_hip_fracture.value is True
    step = BundleBuilder()
    step.family_history("STPMTH", SNOMED, "359817006")
    r = record(step)
    assert r.variables.parental_hip_fracture.status == "missing"
    other = BundleBuilder()
    other.family_history("FTH", SNOMED, "46635009")
    assert record(other).variables.parental_hip_fracture.value is False


def test_smoking_current_and_window() -> None:
    b = BundleBuilder()
    b.observation("72166-2", "2019-01-01", answer=concept(SNOMED, "449868002"))
    assert record(b).variables.current_smoker.value is True
    b.observation("72166-2", "2020-01-01", answer=concept(SNOMED, "8517006"))
    assert record(b).variables.current_smoker.value is False
    assert record(b, date(2023, 1, 1)).variables.current_smoker.status == "missing"


def test_alcohol_drinks_per_day_and_audit() -> None:
    b = BundleBuilder()
    b.observation("74013-4", "2020-01-01", value=4, unit="{drinks}/d")
    assert record(b).variables.alcohol_3_or_more_units_day.value is True
    audit = BundleBuilder()
    audit.observation("75626-2", "2020-01-01", valueInteger=2)
    assert record(audit).variables.alcohol_3_or_more_units_day.value is False
    high = BundleBuilder()
    high.observation("75626-2", "2020-01-01", valueInteger=8)
    assert record(high).variables.alcohol_3_or_more_units_day.status == "missing"


def _prednisone(
    b: BundleBuilder, authored: str, days: int, tablets_mg: int = 5, per_day: int = 1, **extra: object
) -> None:
    b.medication_request(
        "312617" if tablets_mg == 5 else "8640",
        f"predniSONE {tablets_mg} MG Oral Tablet",
        authored,
        dosageInstruction=[
            {
                "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "{tbl}", "code": "{tbl}"}}],
            }
        ],
        dispenseRequest={"expectedSupplyDuration": {"value": days, "unit": "days", "code": "d"}},
        **extra,
    )


def test_glucocorticoids_three_months_at_5mg() -> None:
    b = BundleBuilder()
    _prednisone(b, "2018-01-01", 120)
    assert record(b).variables.glucocorticoids.value is True


def test_glucocorticoids_short_or_low_not_counted() -> None:
    short = BundleBuilder()
    _prednisone(short, "2018-01-01", 10)
    r = record(short)
    assert r.variables.glucocorticoids.value is False
    assert any("lasted 10 days" in w for w in r.warnings)
    low = BundleBuilder()
    low.medication_request(
        "5492",
        "Hydrocortisone 10 MG Oral Tablet",
        "2018-01-01",
        dosageInstruction=[
            {"timing": {"code": concept("http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation", "QD")},
             "doseAndRate": [{"doseQuantity": {"value": 10, "unit": "mg", "code": "mg"}}]}
        ],
    )  # fmt: skip
    assert record(low).variables.glucocorticoids.value is False  # 2.5 mg prednisolone-equivalent


def test_glucocorticoids_consecutive_courses_merge() -> None:
    b = BundleBuilder()
    _prednisone(b, "2018-01-01", 60)
    _prednisone(b, "2018-03-05", 60)
    assert record(b).variables.glucocorticoids.value is True


def test_glucocorticoids_unknown_duration_counted_with_warning_and_inhaled_ignored() -> None:
    b = BundleBuilder()
    b.medication_request("8640", None, "2019-01-01")
    r = record(b)
    assert r.variables.glucocorticoids.value is True
    assert any("assumptions" in w for w in r.warnings)
    inhaled = BundleBuilder()
    inhaled.medication_request("1234", "budesonide 0.5 MG/ML Inhalation Suspension", "2019-01-01")
    inhaled.medication_request("5678", "dexamethasone 4 MG/ML Injectable Solution", "2019-01-01")
    r = record(inhaled)
    assert r.variables.glucocorticoids.value is False
    assert any("not an oral glucocorticoid" in w for w in r.warnings)


def test_medication_statuses() -> None:
    b = BundleBuilder()
    b.medication_request("904419", "Alendronic acid 10 MG Oral Tablet", "2019-01-01", status="entered-in-error")
    b.medication_statement("46041", None, status="not-taken", effectiveDateTime="2019-01-01")
    assert record(b).variables.osteoporosis_treatment.value is False
    b.medication_statement("993449", None, status="completed", effectiveDateTime="2019-01-01")
    assert record(b).variables.osteoporosis_treatment.value is True


def test_dxa_min_over_sites_within_five_years() -> None:
    b = BundleBuilder()
    b.observation("38267-1", "2019-01-01", value=-1.2, unit="{T-score}")
    b.observation("80946-7", "2019-01-01", value=-2.7, unit="{T-score}")
    b.observation("38263-0", "2012-01-01", value=-3.5, unit="{T-score}")  # older than 5 years
    b.observation("38266-3", "2019-01-01", value=-4.0, unit="{T-score}")  # calcaneus: ignored
    r = record(b)
    assert r.variables.dxa_t_score_min.value == pytest.approx(-2.7)
    assert r.variables.dxa_t_score_min.sources == ["Observation/obs2"]
    assert any("non-diagnostic" in w for w in r.warnings)


def test_secondary_osteoporosis_active_rule() -> None:
    b = BundleBuilder()
    b.condition(ICD10CM, "E05.00", "2010-01-01", clinical="resolved", abatementDateTime="2012-01-01")
    assert record(b).variables.secondary_osteoporosis.value is False
    b.condition(SNOMED, "46635009", "1990-01-01")
    assert record(b).variables.secondary_osteoporosis.value is True


def test_medication_reference_to_contained_medication() -> None:
    b = BundleBuilder()
    b.add(
        {
            "resourceType": "MedicationRequest",
            "id": "mr-ref",
            "status": "active",
            "intent": "order",
            "contained": [{"resourceType": "Medication", "id": "m", "code": concept(RXNORM, "72143")}],
            "medicationReference": {"reference": "#m"},
            "subject": {"reference": "Patient/p1"},
            "authoredOn": "2019-01-01",
        }
    )  # fmt: skip
    assert record(b).variables.osteoporosis_treatment.value is True
