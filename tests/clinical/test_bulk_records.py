"""ClinicalRecords for a whole Bulk Data export (`iter_cohort_records`) against the generator's truth.

The export is drawn with a seed used nowhere else (no code list or rule was tuned on it); every variable
of every patient must equal the truth the generator wrote (window edges are kept clear by design).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from clinical.bulk import CohortRecord, StreamStats, iter_clinical_records, iter_cohort_records
from clinical.bulk_generator import TRUTH_COLUMNS, generate_bulk_export, read_truth
from clinical.errors import PatientDeceasedError

#: every extracted variable the truth file holds (age is checked against the birth date separately)
CHECKED = tuple(c for c in TRUTH_COLUMNS if c not in ("patient_id", "index_date", "birth_date", "n_resources"))


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_bulk_export(tmp_path_factory.mktemp("cohort"), patients=400, seed=90817, compress=True).directory


def _completed_years(birth: date, at: date) -> int:
    return at.year - birth.year - ((at.month, at.day) < (birth.month, birth.day))


def _matches(expected: Any, got: Any) -> bool:
    if isinstance(expected, float):
        return isinstance(got, float) and abs(got - expected) < 0.01
    return bool(got == expected)


def test_every_variable_of_every_patient_equals_the_truth(export: Path) -> None:
    truth = read_truth(export / "truth.csv")
    stats = StreamStats()
    results = list(
        iter_cohort_records(export, {pid: row["index_date"] for pid, row in truth.items()}, workers=2, stats=stats)
    )
    assert [r.error for r in results if not r.ok] == []
    assert sorted(r.patient_id for r in results) == sorted(truth)
    assert stats.patients == 400 and stats.resources + 1 == sum(row["n_resources"] for row in truth.values()) + 1
    wrong: list[tuple[str, str, Any, Any]] = []
    for result in results:
        assert result.record is not None
        row = truth[result.patient_id]
        variables = result.record.variables
        assert variables.age_years.value == _completed_years(row["birth_date"], row["index_date"])
        for name in CHECKED:
            got = variables.get(name).value
            if not _matches(row[name], got):
                wrong.append((result.patient_id, name, row[name], got))
    assert wrong == []
    # the truth holds every kind of value, so the comparison above could fail in every direction
    for name in CHECKED[4:]:
        kinds = {type(row[name]).__name__ for row in truth.values()} | {
            str(row[name]) for row in truth.values() if isinstance(row[name], bool)
        }
        expected = {"float", "NoneType"} if name == "dxa_t_score_min" else {"bool", "True", "False", "NoneType"}
        assert expected <= kinds, (name, kinds)


def test_one_index_date_for_all_and_unknown_ids(export: Path) -> None:
    truth = read_truth(export / "truth.csv")
    first = sorted(truth)[0]
    results = list(iter_cohort_records(export, {first: date(2026, 1, 1), "not-in-export": date(2026, 1, 1)}, workers=1))
    assert [(r.patient_id, r.ok, r.reason) for r in results] == [
        (first, True, None),
        ("not-in-export", False, "PATIENT_NOT_FOUND"),
    ]
    records = list(iter_clinical_records(export, date(2026, 6, 30), workers=1, resource_types=["Condition"]))
    assert len(records) == 400 and all(r.index_date == date(2026, 6, 30) for r in records)
    assert all(r.variables.weight_kg.is_missing for r in records)  # Observations were not read


def test_a_patient_who_died_before_the_index_date_is_an_error_not_a_crash(tmp_path: Path) -> None:
    patients = [
        {"resourceType": "Patient", "id": "alive", "birthDate": "1950-01-01", "gender": "female"},
        {"resourceType": "Patient", "id": "dead", "birthDate": "1940-01-01", "deceasedDateTime": "2020-02-02"},
    ]
    (tmp_path / "Patient.ndjson").write_text("".join(json.dumps(p) + "\n" for p in patients))
    results = {r.patient_id: r for r in iter_cohort_records(tmp_path, date(2024, 1, 1), workers=1)}
    assert results["alive"].ok
    dead: CohortRecord = results["dead"]
    assert dead.record is None and dead.reason == "PATIENT_DECEASED" and dead.error_type == "PatientDeceasedError"
    with pytest.raises(PatientDeceasedError, match="patient dead"):
        list(iter_clinical_records(tmp_path, date(2024, 1, 1), workers=1))
