"""NdjsonSource: a Bulk Data export directory read through per-file line indexes, never loaded whole."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clinical.bulk import iter_patient_resources
from clinical.bulk_generator import generate_bulk_export, read_truth
from clinical.errors import FhirInputError, PatientNotFoundError
from clinical.sources.base import CLINICAL_RESOURCE_TYPES, open_source
from clinical.sources.bundle import BundleSource
from clinical.sources.ndjson import INDEX_CACHE, NdjsonSource, resource_type_from_name

ALL_TYPES = ("Observation", "Condition", "MedicationRequest", "FamilyMemberHistory")


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 150 patients as one plain file per type, as gzip, and split over 3 files per type."""
    root = tmp_path_factory.mktemp("exports")
    out = {}
    for name, options in {
        "plain": {},
        "gzip": {"compress": True},
        "split": {"files_per_type": 3},
    }.items():
        out[name] = generate_bulk_export(root / name, patients=150, seed=11, **options).directory
    return out


def _write(directory: Path, name: str, lines: list[Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def _patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "birthDate": "1950-01-01", "gender": "female"}


def _observation(oid: str, pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "valueQuantity": {"value": 70, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    }


@pytest.mark.parametrize("layout", ["plain", "gzip", "split"])
def test_every_patient_and_resource_of_the_export_is_found(exports: dict[str, Path], layout: str) -> None:
    truth = read_truth(exports["plain"] / "truth.csv")
    with NdjsonSource(exports[layout]) as source:
        assert sorted(source.patient_ids()) == sorted(truth)
        for patient_id, row in list(truth.items())[::7]:
            assert source.patient(patient_id)["birthDate"] == row["birth_date"].isoformat()
            found = list(source.resources(patient_id, ALL_TYPES))
            assert len(found) + 1 == row["n_resources"]
            assert {r["resourceType"] for r in found} <= set(ALL_TYPES)
            assert all(r.get("subject", r.get("patient"))["reference"] == f"Patient/{patient_id}" for r in found)


def test_layouts_give_identical_resources(exports: dict[str, Path]) -> None:
    sources = [NdjsonSource(exports[name]) for name in ("plain", "gzip", "split")]
    try:
        for patient_id in list(sources[0].patient_ids())[:40]:
            views = [sorted(json.dumps(r, sort_keys=True) for r in s.resources(patient_id, ALL_TYPES)) for s in sources]
            assert views[0] == views[1] == views[2]
    finally:
        for source in sources:
            source.close()


def test_medication_references_resolve(exports: dict[str, Path]) -> None:
    with NdjsonSource(exports["gzip"]) as source:
        medication = source.resolve("Medication/alendronate-70mg-tablet")
        assert medication is not None and medication["code"]["coding"][0]["code"] == "46041"
        assert source.resolve("Medication/absent") is None
        assert source.resolve("Practitioner/nobody") is None


def test_an_unknown_patient_is_not_found(exports: dict[str, Path]) -> None:
    with NdjsonSource(exports["plain"]) as source, pytest.raises(PatientNotFoundError, match="no Patient with id"):
        source.patient("no-such-patient")


def test_open_source_dispatches_directories(exports: dict[str, Path]) -> None:
    with open_source(exports["split"]) as source:  # type: ignore[attr-defined]
        assert isinstance(source, NdjsonSource)
        assert source.describe() == "Bulk Data export split (16 NDJSON files)"  # 5 types x 3 + Medication


def test_indexes_are_reused_and_refreshed_when_a_file_changes(tmp_path: Path) -> None:
    path = _write(tmp_path, "Patient.ndjson", [_patient("a"), _patient("b")])
    first = NdjsonSource(tmp_path)
    second = NdjsonSource(tmp_path)
    assert list(first.patient_ids()) == ["a", "b"]
    assert second._indexes_for("Patient")[0] is first._indexes_for("Patient")[0]
    with path.open("a") as handle:
        handle.write(json.dumps(_patient("c")) + "\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert list(NdjsonSource(tmp_path).patient_ids()) == ["a", "b", "c"]


def test_a_synthea_bundle_as_an_export_gives_the_same_resources(
    shared_data: Callable[[str], Path], tmp_path: Path
) -> None:
    """A real Synthea bundle written out as a Bulk Data export (urn:uuid references made Type/id, as a
    server's export would write them) gives the bundle's resources back."""
    bundle_path = shared_data("fhir/synthea/Willia_Runolfsdottir_074c3873-c476-40e3-8046-f67372eb5e05.json")
    bundle = json.loads(bundle_path.read_bytes())
    by_url = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle["entry"]}
    text = json.dumps(bundle)
    for url, reference in by_url.items():
        text = text.replace(f'"{url}"', f'"{reference}"')
    rewritten = json.loads(text)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for entry in rewritten["entry"]:
        by_type.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    for resource_type, items in by_type.items():
        with gzip.open(tmp_path / f"{resource_type}.ndjson.gz", "wt") as handle:
            handle.writelines(json.dumps(item) + "\n" for item in items)
    reference = BundleSource(rewritten)
    with NdjsonSource(tmp_path) as source:
        (patient_id,) = source.patient_ids()
        assert source.patient(patient_id) == reference.patient(patient_id)
        for resource_type in CLINICAL_RESOURCE_TYPES:
            got = list(source.resources(patient_id, [resource_type]))
            assert got == list(reference.resources(patient_id, [resource_type])), resource_type
        assert len(list(source.resources(patient_id, ["Observation"]))) == 95


# file names -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Patient.ndjson", "Patient"),
        ("Observation.000.ndjson.gz", "Observation"),
        ("1.Observation.ndjson", "Observation"),
        ("Observation_2.ndjson", "Observation"),
        ("MedicationRequest-3.ndjson", "MedicationRequest"),
        ("export.ndjson", None),
        ("part-a.ndjson", None),
    ],
)
def test_resource_types_come_from_bulk_file_names(name: str, expected: str | None) -> None:
    assert resource_type_from_name(Path(name)) == expected


def test_a_file_without_a_type_in_its_name_is_typed_by_its_first_line(tmp_path: Path) -> None:
    _write(tmp_path, "Patient.ndjson", [_patient("a")])
    _write(tmp_path, "part-a.ndjson", ["", _observation("o1", "a"), _observation("o2", "a")])
    with NdjsonSource(tmp_path) as source:
        assert [r["id"] for r in source.resources("a", ["Observation"])] == ["o1", "o2"]


def test_a_byte_order_mark_and_crlf_line_ends_are_accepted(tmp_path: Path) -> None:
    lines = [json.dumps(_patient("a")), json.dumps(_observation("o1", "a"))]
    (tmp_path / "Patient.ndjson").write_bytes(b"\xef\xbb\xbf" + lines[0].encode() + b"\r\n")
    (tmp_path / "Observation.ndjson").write_bytes(b"\xef\xbb\xbf" + lines[1].encode() + b"\r\n")
    with NdjsonSource(tmp_path) as source:
        assert list(source.patient_ids()) == ["a"]
        assert [r["id"] for r in source.resources("a", ["Observation"])] == ["o1"]
    ((patient_id, resources),) = list(iter_patient_resources(tmp_path, workers=1))
    assert (patient_id, [r["id"] for r in resources]) == ("a", ["a", "o1"])


def test_a_directory_without_ndjson_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FhirInputError, match="no FHIR NDJSON files"):
        NdjsonSource(tmp_path)


# malformed input ------------------------------------------------------------------------------------------
def test_a_line_that_is_not_json_names_file_and_line(tmp_path: Path) -> None:
    _write(
        tmp_path, "Patient.ndjson", [_patient("a"), _patient("b"), '{"resourceType": "Patient", "id": ', _patient("d")]
    )
    with pytest.raises(FhirInputError, match=r"Patient\.ndjson line 3: not JSON") as error:
        list(NdjsonSource(tmp_path).patient_ids())
    assert error.value.reason == "INVALID_NDJSON"
    assert "on_malformed='skip'" in str(error.value)


def test_malformed_lines_can_be_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines = [_patient("a"), "not json", [1, 2], {"no": "type"}, _observation("o1", "a"), _patient("b")]
    _write(tmp_path, "Patient.ndjson", lines)
    source = NdjsonSource(tmp_path, on_malformed="skip")
    assert list(source.patient_ids()) == ["a", "b"]
    assert source.skipped_lines == 4
    assert source.patient("b")["id"] == "b"
    assert "skipped 4 malformed line(s) (lines 2, 3, 4, 5)" in caplog.text
    assert "not json" not in caplog.text  # content never logged


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ([1, 2], "line 2: not a FHIR resource"),
        ({"id": "x"}, "line 2: not a FHIR resource"),
        (_observation("o1", "a"), "line 2: a Observation in a file of Patient resources"),
    ],
)
def test_each_kind_of_malformed_line_is_named(tmp_path: Path, line: Any, message: str) -> None:
    _write(tmp_path, "Patient.ndjson", [_patient("a"), line])
    with pytest.raises(FhirInputError, match=message):
        NdjsonSource(tmp_path).patient("a")


def test_an_over_long_line_is_refused_and_skipping_it_keeps_offsets_right(tmp_path: Path) -> None:
    huge = {**_observation("big", "a"), "note": [{"text": "x" * 5000}]}
    _write(tmp_path, "Patient.ndjson", [_patient("a")])
    _write(tmp_path, "Observation.ndjson", [_observation("o1", "a"), huge, _observation("o3", "a")])
    with pytest.raises(FhirInputError, match=r"Observation\.ndjson line 2: line longer than max_line_bytes=2048"):
        list(NdjsonSource(tmp_path, max_line_bytes=2048).resources("a", ["Observation"]))
    skipping = NdjsonSource(tmp_path, max_line_bytes=2048, on_malformed="skip")
    assert [r["id"] for r in skipping.resources("a", ["Observation"])] == ["o1", "o3"]


def test_an_over_long_line_in_a_gzip_file_keeps_offsets_right(tmp_path: Path) -> None:
    huge = {**_observation("big", "a"), "note": [{"text": "x" * 5000}]}
    _write(tmp_path, "Patient.ndjson", [_patient("a")])
    with gzip.open(tmp_path / "Observation.ndjson.gz", "wt") as handle:
        for item in (_observation("o1", "a"), huge, _observation("o3", "a")):
            handle.write(json.dumps(item) + "\n")
    skipping = NdjsonSource(tmp_path, max_line_bytes=2048, on_malformed="skip")
    assert [r["id"] for r in skipping.resources("a", ["Observation"])] == ["o1", "o3"]


def test_a_corrupt_gzip_file_is_an_input_error(tmp_path: Path) -> None:
    _write(tmp_path, "Patient.ndjson", [_patient("a")])
    good = gzip.compress(b"".join(json.dumps(_observation(f"o{i}", "a")).encode() + b"\n" for i in range(50)))
    (tmp_path / "Observation.ndjson.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(FhirInputError, match=r"Observation\.ndjson\.gz: cannot be read"):
        list(NdjsonSource(tmp_path).resources("a", ["Observation"]))


def test_bad_options_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, "Patient.ndjson", [_patient("a")])
    with pytest.raises(ValueError, match="on_malformed"):
        NdjsonSource(tmp_path, on_malformed="ignore")  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _fresh_index_cache() -> None:
    INDEX_CACHE.clear()
