"""Every code in the code lists: right system URI, a display, a well-formed code; Synthea codes are found."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from clinical.codes import CODE_LIST_NAMES, ICD10CM, LOINC, RXNORM, SNOMED, V3_ROLE_CODE, code_list
from clinical.extract import build_record
from clinical.sources.base import open_source
from tests.clinical.builder import BundleBuilder, concept

INDEX = date(2020, 6, 1)

SYSTEMS = {SNOMED, LOINC, ICD10CM, RXNORM, V3_ROLE_CODE}


def _loinc_check_digit_ok(code: str) -> bool:
    """LOINC mod-10 check digit (LOINC Users' Guide, 'Calculating Mod 10 check digits')."""
    body, check = code.split("-")
    digits = body[::-1]
    odd = "".join(digits[0::2])[::-1]
    even = "".join(digits[1::2])[::-1]
    total = sum(int(c) for c in even + str(int(odd) * 2))
    return (10 - total % 10) % 10 == int(check)


@pytest.mark.parametrize("name", CODE_LIST_NAMES)
def test_every_entry_has_system_display_and_well_formed_code(name: str) -> None:
    codes = code_list(name)
    assert codes.sources, f"{name}: no sources cited"
    assert codes.version
    for entry in codes.entries():
        assert entry.system in SYSTEMS, f"{name}: {entry.code} has system {entry.system}"
        assert entry.display.strip(), f"{name}: {entry.code} has no display"
        assert entry.category, f"{name}: {entry.code} has no category"
        if entry.system == LOINC and not entry.code.startswith("LA"):
            assert re.fullmatch(r"\d{1,7}-\d", entry.code) and _loinc_check_digit_ok(entry.code), entry.code
        if entry.system == SNOMED:
            assert re.fullmatch(r"\d{6,18}", entry.code), entry.code
            assert entry.code[-3:-1] in {"00", "10"}, f"{entry.code}: not a concept id (partition)"
        if entry.system == ICD10CM:
            assert re.fullmatch(r"[A-Z]\d{2}(\.[0-9A-Z]{1,4})?", entry.code), entry.code
        if entry.system == RXNORM:
            assert entry.code.isdigit(), entry.code


def test_loinc_check_digit_rejects_a_typo() -> None:
    assert _loinc_check_digit_ok("29463-7")
    assert not _loinc_check_digit_ok("29463-8")


def test_codes_in_the_shared_synthea_bundles_are_found(shared_data: Callable[[str], Path]) -> None:
    folder = shared_data("fhir/synthea")
    seen: set[tuple[str, str]] = set()
    for path in sorted(folder.glob("*.json")):
        source = open_source(path)
        for patient_id in source.patient_ids():
            for resource in source.resources(patient_id, ["Observation", "Condition", "MedicationRequest"]):
                concept = resource.get("code") or resource.get("medicationCodeableConcept") or {}
                for coding in concept.get("coding", []):
                    seen.add((coding["system"], coding["code"]))
    facts = {
        ("fractures", SNOMED, "359817006", "hip"),  # Keira
        ("fractures", SNOMED, "65966004", "forearm"),  # Lonnie
        ("fractures", SNOMED, "58150001", "other"),  # Fredrick
        ("fractures", SNOMED, "443165006", "unspecified"),
        ("conditions", SNOMED, "64859006", "osteoporosis"),
        ("dxa", LOINC, "38265-5", "forearm"),  # Willia
        ("body_measures", LOINC, "29463-7", "weight"),
        ("body_measures", LOINC, "8302-2", "height"),
        ("body_measures", LOINC, "39156-5", "bmi"),
        ("smoking", LOINC, "72166-2", "question"),
        ("medications", RXNORM, "904419", "osteoporosis_treatment"),
    }
    for list_name, system, code, category in facts:
        assert (system, code) in seen, f"{code} is not in the shared bundles"
        entry = code_list(list_name).match(system, code)
        assert entry is not None and entry.category == category, (list_name, code)


def test_icd10_prefix_longest_match() -> None:
    fractures = code_list("fractures")
    assert fractures.match(ICD10CM, "M80.08XA").category == "vertebral"  # type: ignore[union-attr]
    assert fractures.match(ICD10CM, "M80.00XA").category == "unspecified"  # type: ignore[union-attr]
    assert fractures.match(ICD10CM, "s72.001a").category == "hip"  # type: ignore[union-attr]
    assert fractures.match(SNOMED, "S72.001A") is None


@pytest.mark.parametrize("name", CODE_LIST_NAMES)
def test_every_entry_says_how_it_was_verified(name: str) -> None:
    codes = code_list(name)
    assert codes.document.get("verification"), f"{name}: no verification statement"
    unverified = [entry.code for entry in codes.entries() if not str(entry.attribute("verified", "")).strip()]
    assert unverified == [], f"{name}: entries without a 'verified' note: {unverified}"
    for raw in codes.document.get("ingredients", ()):
        assert str(raw.get("verified", "")).strip(), raw["display"]


def test_the_glucocorticoid_value_set_is_clean() -> None:
    (value_set,) = code_list("medications").document["value_sets"]
    members = [m["code"] for m in value_set["codes"]]
    excluded = {m["code"] for m in value_set["excluded"]}
    assert len(members) == len(set(members)) >= 50
    assert excluded == {"313979", "1085728"} and not excluded & set(members)  # fludrocortisone; oral paste
    assert all(m["display"] is None or "Oral" in m["display"] or "Pack" in m["display"] for m in value_set["codes"])


def _rx(builder: BundleBuilder, code: str, display: str | None, days: int = 120) -> None:
    builder.medication_request(
        code,
        display,
        "2018-01-01",
        dosageInstruction=[
            {
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "{tbl}", "code": "{tbl}"}}],
            }
        ],
        dispenseRequest={"expectedSupplyDuration": {"value": days, "unit": "days", "code": "d"}},
    )


def test_fludrocortisone_in_the_glucocorticoid_value_set_is_not_a_glucocorticoid() -> None:
    builder = BundleBuilder()
    _rx(builder, "313979", "fludrocortisone acetate 0.1 MG Oral Tablet")
    assert build_record(builder.source(), "p1", INDEX).variables.glucocorticoids.value is False


def test_a_value_set_member_without_a_display_is_read_by_its_listed_name() -> None:
    builder = BundleBuilder()
    _rx(builder, "198145", None)  # prednisone 10 MG Oral Tablet, one a day for 120 days
    record = build_record(builder.source(), "p1", INDEX)
    assert record.variables.glucocorticoids.value is True
    assert not any("dose unknown" in w for w in record.warnings)  # the strength came from the value set


@pytest.mark.parametrize(
    ("system", "code", "variable", "value"),
    [
        (SNOMED, "203450003", "prior_vertebral_fracture", True),  # osteoporosis with fracture of lumbar vertebrae
        (SNOMED, "203450003", "osteoporosis_diagnosis", True),
        (SNOMED, "431031001", "prior_hip_fracture", True),  # osteoporotic fracture of neck of femur
        (SNOMED, "102447009", "osteoporosis_diagnosis", True),  # postmenopausal osteoporosis
        (SNOMED, "239791005", "rheumatoid_arthritis", True),  # seropositive rheumatoid arthritis
        (SNOMED, "385482004", "secondary_osteoporosis", True),  # osteogenesis imperfecta type I
        (SNOMED, "240159007", "osteoporosis_diagnosis", False),  # transient osteoporosis of hip: localized, left out
        (ICD10CM, "S82.871A", "prior_other_fracture", True),  # pilon fracture of tibia
        (ICD10CM, "S82.841A", "prior_fragility_fracture", False),  # bimalleolar (ankle): not a fragility site
    ],
)
def test_verified_additions_and_corrections_reach_the_record(
    system: str, code: str, variable: str, value: bool
) -> None:
    builder = BundleBuilder()
    builder.condition(system, code, "2019-01-01")
    assert build_record(builder.source(), "p1", INDEX).variables.get(variable).value is value


@pytest.mark.parametrize(("code", "current"), [("160604004", True), ("82302008", True), ("266924008", False)])
def test_vsac_smoking_answers(code: str, current: bool) -> None:
    builder = BundleBuilder()
    builder.observation("72166-2", "2020-01-01", answer=concept(SNOMED, code))
    assert build_record(builder.source(), "p1", INDEX).variables.current_smoker.value is current
