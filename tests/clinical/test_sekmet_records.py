"""The same Synthea patient from a Bundle file and from a real FHIR server gives the same ClinicalRecord.

Each shared Synthea bundle is loaded into sekmet-fhir (which assigns new ids); the record built over
`RestSource` ($everything, and per-type searches with small pages) must equal the record built over the
bundle once the server's references are mapped back to the bundle's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from clinical.errors import PatientDeceasedError
from clinical.extract import build_record
from clinical.sources.bundle import BundleSource
from clinical.sources.rest import RestSource
from clinical.types import ClinicalRecord
from tests.fhir_server import LoadedBundle, SekmetServer

pytestmark = pytest.mark.integration

CASES = {
    "lonnie": ("fhir/synthea/Lonnie_Von_28fbf0c8-5a9c-4781-b79f-f6118c3e2816.json", date(2020, 1, 1)),
    "keira": ("fhir/synthea/Keira_Huel_279e1ce8-1a84-492b-bb78-b1d13a0d564c.json", date(2003, 6, 1)),
    "willia": ("fhir/synthea/Willia_Runolfsdottir_074c3873-c476-40e3-8046-f67372eb5e05.json", date(2019, 6, 1)),
}
_REFERENCE = re.compile(r"\b([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})")


@pytest.fixture(scope="module")
def loaded(sekmet_fhir: SekmetServer, shared_data: Callable[[str], Path]) -> dict[str, tuple[Path, LoadedBundle]]:
    out = {}
    for name, (relative, _) in CASES.items():
        path = shared_data(relative)
        out[name] = (path, sekmet_fhir.load_bundle(path))
    return out


def _as_bundle_ids(record: ClinicalRecord, ids: LoadedBundle, bundle_patient: str) -> dict[str, Any]:
    """The record's JSON with every server reference (and the patient id) replaced by the bundle's."""
    data = record.model_dump(mode="json")
    data["patient_id"] = bundle_patient

    def back(text: str) -> str:
        return _REFERENCE.sub(lambda m: ids.bundle_reference(m.group(0)), text)

    for variable in data["variables"].values():
        variable["sources"] = sorted(back(s) for s in variable["sources"])
    data["warnings"] = [back(w) for w in data["warnings"]]
    return data


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("use_everything", [True, False], ids=["everything", "searches"])
def test_the_server_gives_the_same_record_as_the_bundle(
    name: str, use_everything: bool, sekmet_fhir: SekmetServer, loaded: dict[str, tuple[Path, LoadedBundle]]
) -> None:
    path, ids = loaded[name]
    index_date = CASES[name][1]
    bundle = BundleSource.from_path(path)
    bundle_patient = next(bundle.patient_ids())
    expected = build_record(bundle, bundle_patient, index_date)
    with RestSource(sekmet_fhir.base_url, use_everything=use_everything, page_size=10) as source:
        got = build_record(source, ids.patient_id, index_date)
        (warning,) = source.source_warnings(ids.patient_id)  # sekmet-fhir cannot search FamilyMemberHistory
        assert "FamilyMemberHistory" in warning
    assert got.patient_id == ids.patient_id
    # the same record, except that the server's record says first what the server could not provide
    assert got.warnings[0] == warning
    expected_json = expected.model_dump(mode="json")
    expected_json["warnings"] = [warning, *expected_json["warnings"]]
    assert _as_bundle_ids(got, ids, bundle_patient) == expected_json
    observed = [n for n, v in expected.variables if v.status == "observed"]
    assert len(observed) >= 6 and expected.sources()  # a record with substance, not an empty one


def test_death_before_the_index_date_is_refused_from_the_server_too(
    sekmet_fhir: SekmetServer, loaded: dict[str, tuple[Path, LoadedBundle]]
) -> None:
    _, ids = loaded["keira"]
    with RestSource(sekmet_fhir.base_url) as source, pytest.raises(PatientDeceasedError, match="died on 2003-07-03"):
        build_record(source, ids.patient_id, date(2010, 1, 1))
