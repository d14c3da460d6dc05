"""Warnings of the source itself (what it could not provide) reach `ClinicalRecord.warnings`, first.

The real FHIR server case (sekmet-fhir cannot search FamilyMemberHistory) is in test_sekmet_records.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path

from clinical.bulk import iter_cohort_records
from clinical.extract import build_record
from clinical.sources.base import FhirResource, SourceWarnings, source_warnings
from clinical.sources.bundle import BundleSource
from clinical.sources.ndjson import NdjsonSource
from tests.clinical.builder import LOINC, UCUM, BundleBuilder

INDEX = date(2020, 6, 1)


def _export_with_a_bad_line(directory: Path) -> Path:
    patients = [{"resourceType": "Patient", "id": pid, "birthDate": "1950-01-01", "gender": "female"} for pid in "ab"]
    weights = [
        json.dumps(
            {
                "resourceType": "Observation",
                "id": f"w{pid}",
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
                "subject": {"reference": f"Patient/{pid}"},
                "effectiveDateTime": "2020-01-01",
                "valueQuantity": {"value": 70, "unit": "kg", "system": UCUM, "code": "kg"},
            }
        )
        for pid in "ab"
    ]
    (directory / "Patient.ndjson").write_text("".join(json.dumps(p) + "\n" for p in patients))
    (directory / "Observation.ndjson").write_text(weights[0] + "\n" + '{"resourceType": "Observ\n' + weights[1] + "\n")
    return directory


def test_an_ndjson_record_says_that_malformed_lines_were_skipped(tmp_path: Path) -> None:
    source = NdjsonSource(_export_with_a_bad_line(tmp_path), on_malformed="skip")
    record = build_record(source, "a", INDEX)
    assert record.variables.weight_kg.value == 70.0
    assert record.warnings[0].startswith("Observation.ndjson: 1 malformed line skipped (on_malformed='skip')")
    assert source_warnings(BundleBuilder().source(), "p1") == []  # a bundle has nothing to say


def test_every_cohort_record_says_that_malformed_lines_were_skipped(tmp_path: Path) -> None:
    results = list(iter_cohort_records(_export_with_a_bad_line(tmp_path), INDEX, workers=1, on_malformed="skip"))
    assert [r.patient_id for r in results] == ["a", "b"]
    for result in results:
        assert result.record is not None
        assert "1 malformed NDJSON line skipped" in result.record.warnings[0]
    clean = list(iter_cohort_records(tmp_path, INDEX, workers=1, resource_types=["Condition"]))
    assert all(r.record is not None and "malformed" not in " ".join(r.record.warnings) for r in clean)


class _DelegatingSource:
    """A FhirSource written without `SourceBase` (delegates to a bundle); no source warnings."""

    def __init__(self, inner: BundleSource, warnings: list[str]) -> None:
        self.inner = inner
        self.warnings = warnings

    def patient(self, patient_id: str) -> FhirResource:
        return self.inner.patient(patient_id)

    def resources(self, patient_id: str, resource_types: Sequence[str]) -> Iterator[FhirResource]:
        return self.inner.resources(patient_id, resource_types)

    def resolve(self, reference: str) -> FhirResource | None:
        return self.inner.resolve(reference)

    def patient_ids(self) -> Iterator[str]:
        return self.inner.patient_ids()

    def describe(self) -> str:
        return "test source"

    def close(self) -> None:
        self.inner.close()


class _ProtocolOnlySource(_DelegatingSource):
    """The same, implementing the optional `SourceWarnings` protocol."""

    def source_warnings(self, patient_id: str) -> list[str]:
        return list(self.warnings)


def test_a_source_implementing_the_protocol_contributes_warnings_first_and_once() -> None:
    builder = BundleBuilder()
    builder.observation("29463-7", "2020-01-01", value=70, unit="kg")
    source = _ProtocolOnlySource(builder.source(), ["Condition not read", "Condition not read"])
    assert isinstance(source, SourceWarnings)
    record = build_record(source, "p1", INDEX)
    assert record.warnings[0] == "Condition not read" and record.warnings.count("Condition not read") == 1
    plain = _DelegatingSource(builder.source(), ["never asked"])
    assert not isinstance(plain, SourceWarnings)
    assert not any("never asked" in w for w in build_record(plain, "p1", INDEX).warnings)
