"""Cohort streaming over Bulk Data exports (`clinical.bulk`) and the synthetic export generator."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from clinical.bulk import PatientStream, iter_patient_resources, partition_of
from clinical.bulk_generator import TRUTH_COLUMNS, generate_bulk_export, main, read_truth
from clinical.errors import FhirInputError
from clinical.sources.ndjson import NdjsonSource

REPO_ROOT = Path(__file__).resolve().parents[2]
TYPES = ("Observation", "Condition", "MedicationRequest", "FamilyMemberHistory")


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_bulk_export(tmp_path_factory.mktemp("bulk"), patients=300, seed=23, files_per_type=2).directory


def _signature(groups: list[tuple[str, list[dict[str, Any]]]]) -> list[tuple[str, list[str]]]:
    return [(pid, [json.dumps(r, sort_keys=True) for r in resources]) for pid, resources in groups]


def test_every_patient_comes_once_with_all_its_resources(export: Path) -> None:
    truth = read_truth(export / "truth.csv")
    stream = PatientStream(export, workers=1, partition_bytes=64 * 1024)
    groups = list(stream)
    assert stream.stats.partitions > 4
    assert sorted(pid for pid, _ in groups) == sorted(truth)
    assert stream.stats.patients == len(truth)
    with NdjsonSource(export) as source:
        for patient_id, resources in groups:
            assert resources[0]["resourceType"] == "Patient" and resources[0]["id"] == patient_id
            assert len(resources) == truth[patient_id]["n_resources"]
            expected = sorted(json.dumps(r, sort_keys=True) for r in source.resources(patient_id, TYPES))
            assert sorted(json.dumps(r, sort_keys=True) for r in resources[1:]) == expected


def test_the_result_does_not_depend_on_workers_partitions_or_chunks(export: Path) -> None:
    baseline = _signature(list(PatientStream(export, workers=1)))
    by_patient = dict(baseline)
    for options in (
        {"workers": 2, "partition_bytes": 100_000},
        {"workers": 2, "chunk_bytes": 8192, "partition_bytes": 1_000_000},
    ):
        other = _signature(list(PatientStream(export, **options)))
        assert dict(other) == by_patient  # same resources per patient, in the same order


def test_partitions_are_stable_across_processes() -> None:
    code = "from clinical.bulk import partition_of; print(partition_of('patient-123', 97))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert int(other.stdout) == partition_of("patient-123", 97)


def test_resource_types_select_what_is_read(export: Path) -> None:
    for patient_id, resources in iter_patient_resources(export, resource_types=["Condition"], workers=1):
        assert resources[0]["id"] == patient_id
        assert {r["resourceType"] for r in resources[1:]} <= {"Condition"}


def test_orphans_are_counted_not_yielded(tmp_path: Path) -> None:
    (tmp_path / "Patient.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": "a"}) + "\n")
    observations = [
        {"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/a"}},
        {"resourceType": "Observation", "id": "o2", "subject": {"reference": "Patient/ghost"}},
        {"resourceType": "Observation", "id": "o3", "subject": {"reference": "Group/g1"}},
    ]
    (tmp_path / "Observation.ndjson").write_text("".join(json.dumps(o) + "\n" for o in observations))
    stream = PatientStream(tmp_path, workers=1)
    assert [(pid, [r["id"] for r in rs]) for pid, rs in stream] == [("a", ["a", "o1"])]
    assert stream.stats.orphan_resources == 1
    assert stream.stats.unattributed_resources == 1


def test_a_malformed_line_in_a_later_chunk_names_its_true_line_number(tmp_path: Path) -> None:
    (tmp_path / "Patient.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": "a"}) + "\n")
    lines = [
        json.dumps({"resourceType": "Observation", "id": f"o{i}", "subject": {"reference": "Patient/a"}})
        for i in range(2000)
    ]
    lines[1733] = '{"resourceType": "Observation", "id": '
    (tmp_path / "Observation.ndjson").write_text("\n".join(lines) + "\n")
    for workers in (1, 2):
        stream = PatientStream(tmp_path, workers=workers, chunk_bytes=8192)
        with pytest.raises(FhirInputError, match=r"Observation\.ndjson line 1734: not JSON") as error:
            list(stream)
        assert error.value.reason == "INVALID_NDJSON"
    skipping = PatientStream(tmp_path, workers=2, chunk_bytes=8192, on_malformed="skip")
    ((_, resources),) = list(skipping)
    assert len(resources) == 2000 and skipping.stats.skipped_lines == 1


def test_temporary_files_go_when_iteration_is_abandoned(export: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    stream = iter_patient_resources(export, workers=1, tmp_dir=scratch, partition_bytes=64 * 1024)
    next(stream)
    assert any(scratch.iterdir())
    stream.close()
    assert not any(scratch.iterdir())


def test_an_export_without_patients_is_refused(tmp_path: Path) -> None:
    (tmp_path / "Observation.ndjson").write_text(json.dumps({"resourceType": "Observation", "id": "o"}) + "\n")
    with pytest.raises(FhirInputError, match="no Patient NDJSON file"):
        list(iter_patient_resources(tmp_path))


# the generator --------------------------------------------------------------------------------------------
def test_the_generator_is_deterministic_and_writes_its_truth(tmp_path: Path) -> None:
    def digest(directory: Path) -> str:
        return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(directory.iterdir()))).hexdigest()

    first = generate_bulk_export(tmp_path / "a", patients=50, seed=5)
    second = generate_bulk_export(tmp_path / "b", patients=50, seed=5)
    third = generate_bulk_export(tmp_path / "c", patients=50, seed=6)
    assert digest(first.directory) == digest(second.directory) != digest(third.directory)
    truth = read_truth(first.truth_path)
    assert len(truth) == 50
    assert set(next(iter(truth.values()))) == set(TRUTH_COLUMNS)
    assert sum(row["n_resources"] for row in truth.values()) + 1 == first.resources  # + the shared Medication


def test_the_generator_truth_holds_against_its_own_resources(export: Path) -> None:
    """Spot checks of the truth file against the raw resources (independent of the extraction)."""
    truth = read_truth(export / "truth.csv")
    with NdjsonSource(export) as source:
        for patient_id, row in truth.items():
            observations = list(source.resources(patient_id, ["Observation"]))
            weights = [
                o
                for o in observations
                if o["code"]["coding"][0]["code"] == "29463-7"
                and o["effectiveDateTime"][:10] <= row["index_date"].isoformat()
                and (row["index_date"] - _day(o["effectiveDateTime"])).days <= 730
            ]
            if row["weight_kg"] is None:
                assert not weights
                continue
            latest = max(weights, key=lambda o: o["effectiveDateTime"])["valueQuantity"]
            factor = {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237}[latest["code"]]
            assert latest["value"] * factor == pytest.approx(row["weight_kg"], abs=0.001)


def _day(text: str) -> Any:
    from datetime import date

    return date.fromisoformat(text[:10])


def test_the_generator_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--patients", "20", "--out", str(tmp_path / "x"), "--seed", "3", "--gzip"]) == 0
    assert "wrote 20 patients" in capsys.readouterr().out
    assert (tmp_path / "x" / "Observation.ndjson.gz").exists()
    assert main(["--patients", "0", "--out", str(tmp_path / "y")]) == 2


# bounded memory -------------------------------------------------------------------------------------------
def test_a_10000_patient_export_streams_in_bounded_memory(tmp_path: Path) -> None:
    """Peak RSS growth of a fresh process while streaming 10,000 patients (about 75 MB of NDJSON, several
    hundred MB as Python objects if loaded whole); every group is checked against the truth file."""
    export = generate_bulk_export(tmp_path / "big", patients=10_000, seed=101, files_per_type=2)
    script = textwrap.dedent(
        f"""
        import json, resource
        from clinical.bulk import PatientStream
        from clinical.bulk_generator import read_truth

        def main():
            truth = {{pid: row["n_resources"] for pid, row in read_truth({str(export.truth_path)!r}).items()}}
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            stream = PatientStream({str(export.directory)!r}, workers=2)
            seen, wrong = 0, 0
            for patient_id, resources in stream:
                seen += 1
                wrong += truth.pop(patient_id) != len(resources)
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(json.dumps({{"seen": seen, "wrong": wrong, "left": len(truth), "growth_mb": (after - before) / 1024,
                              "partitions": stream.stats.partitions}}))

        if __name__ == "__main__":
            main()
        """
    )
    (tmp_path / "run.py").write_text(script)
    done = subprocess.run(
        [sys.executable, str(tmp_path / "run.py")], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["seen"] == 10_000 and result["wrong"] == 0 and result["left"] == 0
    assert result["partitions"] >= 8
    assert result["growth_mb"] < 150, result  # loading the same export whole: ~380 MB
