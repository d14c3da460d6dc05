"""Bad input: one clear domain error each, never a crash or a guess."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from clinical.errors import FhirInputError, PatientNotFoundError
from clinical.extract import build_record
from clinical.sources.base import open_source, single_patient_id
from clinical.sources.bundle import BundleSource
from tests.clinical.builder import BundleBuilder

INDEX = date(2020, 6, 1)


def _from(data: object) -> BundleSource:
    return BundleSource.from_bytes(json.dumps(data).encode())


def test_not_json() -> None:
    with pytest.raises(FhirInputError, match="not JSON"):
        BundleSource.from_bytes(b"<Bundle/>")
    with pytest.raises(FhirInputError, match="empty"):
        BundleSource.from_bytes(b"  ")


def test_json_array_and_single_resource_name_what_was_expected() -> None:
    with pytest.raises(FhirInputError, match="JSON array"):
        _from([{"resourceType": "Patient"}])
    with pytest.raises(FhirInputError, match="single Patient resource"):
        _from({"resourceType": "Patient", "id": "x"})
    with pytest.raises(FhirInputError, match="without a resourceType"):
        _from({"type": "collection"})


def test_wrong_resource_type_in_an_entry() -> None:
    data = BundleBuilder().bundle()
    data["entry"].append({"resource": {"resourceType": "Observaton", "id": "o"}})
    with pytest.raises(FhirInputError, match="unknown resourceType 'Observaton'"):
        _from(data)


def test_history_bundle_refused() -> None:
    with pytest.raises(FhirInputError, match="history"):
        _from({"resourceType": "Bundle", "type": "history", "entry": []})


def test_size_guard() -> None:
    with pytest.raises(FhirInputError, match="limit"):
        BundleSource.from_bytes(b"{" + b" " * 2000 + b"}", max_bytes=1000)


def test_invalid_resource_names_the_resource() -> None:
    b = BundleBuilder()
    b.observation("29463-7", "2020-01-01", value=70, unit="kg")
    b.resources[-1]["valueQuantity"]["value"] = "seventy"
    with pytest.raises(FhirInputError, match="Observation/obs1"):
        build_record(b.source(), "p1", INDEX)


def test_unknown_unit_stone_text() -> None:
    b = BundleBuilder()
    b.observation("29463-7", "2020-01-01", value=11, unit="stone")
    with pytest.raises(FhirInputError, match="unknown unit 'stone'"):
        build_record(b.source(), "p1", INDEX)


def test_ucum_stone_is_converted() -> None:
    b = BundleBuilder()
    b.observation("29463-7", "2020-01-01", value=11, unit="[stone_av]")
    assert build_record(b.source(), "p1", INDEX).variables.weight_kg.value == pytest.approx(69.853225)


def test_bundle_without_the_patient() -> None:
    b = BundleBuilder()
    b.observation("29463-7", "2020-01-01", value=70, unit="kg")
    data = b.bundle()
    data["entry"] = data["entry"][1:]
    source = _from(data)
    with pytest.raises(PatientNotFoundError, match="p1"):
        build_record(source, "p1", INDEX)
    with pytest.raises(PatientNotFoundError, match="no Patient"):
        single_patient_id(source)


def test_malformed_date() -> None:
    b = BundleBuilder()
    b.observation("29463-7", "2020-13-45", value=70, unit="kg")
    with pytest.raises(FhirInputError, match=r"Observation/obs1.*effectiveDateTime"):
        build_record(b.source(), "p1", INDEX)


def test_birth_after_index() -> None:
    with pytest.raises(FhirInputError, match="after the index date"):
        build_record(BundleBuilder(birth_date="2021-01-01").source(), "p1", INDEX)


def test_open_source_missing_path_and_bad_scheme(tmp_path: Path) -> None:
    with pytest.raises(FhirInputError, match="does not exist"):
        open_source(tmp_path / "nope.json")
    with pytest.raises(FhirInputError, match="unsupported"):
        open_source("ftp://example.org/fhir")


def test_two_patients_need_a_choice() -> None:
    data = BundleBuilder("a").bundle()
    data["entry"] += BundleBuilder("b").bundle()["entry"]
    with pytest.raises(FhirInputError, match="more than one Patient"):
        single_patient_id(_from(data))


def test_duplicate_resource_with_different_content() -> None:
    b = BundleBuilder()
    b.observation("29463-7", "2020-01-01", value=70, unit="kg")
    data = b.bundle()
    copy = json.loads(json.dumps(data["entry"][1]))
    copy["resource"]["valueQuantity"]["value"] = 71
    data["entry"].append(copy)
    with pytest.raises(FhirInputError, match="appears twice"):
        _from(data)


def test_bundle_text_must_be_utf8_json_without_nan_or_excess_nesting() -> None:
    data = json.dumps(BundleBuilder().bundle())
    assert next(BundleSource.from_bytes(b"\xef\xbb\xbf" + data.encode()).patient_ids()) == "p1"  # BOM dropped
    with pytest.raises(FhirInputError, match="not UTF-8 text"):
        BundleSource.from_bytes(data.encode("utf-16"))
    with pytest.raises(FhirInputError, match="not JSON"):
        BundleSource.from_bytes(data.replace('"female"', "NaN").encode())
    with pytest.raises(FhirInputError, match="nested too deeply"):
        BundleSource.from_bytes(b"[" * 5000 + b"]" * 5000)
