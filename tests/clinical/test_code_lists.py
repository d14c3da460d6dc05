"""Every code in the code lists: right system URI, a display, a well-formed code; Synthea codes are found."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from clinical.codes import CODE_LIST_NAMES, ICD10CM, LOINC, RXNORM, SNOMED, V3_ROLE_CODE, code_list
from clinical.sources.base import open_source

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
