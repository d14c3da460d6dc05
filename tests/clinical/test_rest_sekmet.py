"""RestSource against a real FHIR server (sekmet-fhir on 127.0.0.1) loaded with the shared Synthea bundles.

The server reassigns every id on load; resources are compared after mapping the bundle's references onto
the server's (`LoadedBundle.server_reference`). sekmet-fhir cannot search FamilyMemberHistory by patient
(it has no search parameters for it): the source says so in `source_warnings` rather than guessing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from clinical.errors import FhirSourceUnavailableError, PatientNotFoundError
from clinical.sources.base import CLINICAL_RESOURCE_TYPES
from clinical.sources.bundle import BundleSource
from clinical.sources.rest import RestSource
from tests.fhir_server import LoadedBundle, SekmetServer

pytestmark = pytest.mark.integration

BUNDLES = {
    "lonnie": "fhir/synthea/Lonnie_Von_28fbf0c8-5a9c-4781-b79f-f6118c3e2816.json",
    "keira": "fhir/synthea/Keira_Huel_279e1ce8-1a84-492b-bb78-b1d13a0d564c.json",
}


@pytest.fixture(scope="module")
def loaded(sekmet_fhir: SekmetServer, shared_data: Callable[[str], Path]) -> dict[str, tuple[Path, LoadedBundle]]:
    out = {}
    for name, relative in BUNDLES.items():
        path = shared_data(relative)
        out[name] = (path, sekmet_fhir.load_bundle(path))
    return out


def _on_server(resource: dict[str, Any], loaded: LoadedBundle) -> dict[str, Any]:
    """A bundle resource as the server should hold it: ids and references mapped, no meta (server-managed)."""
    out = copy.deepcopy(_without_meta(resource))
    out["id"] = loaded.server_reference(f"{out['resourceType']}/{out['id']}").split("/")[1]
    _map_references(out, loaded)
    return out


def _map_references(node: Any, loaded: LoadedBundle) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                node[key] = loaded.server_reference(value)
            else:
                _map_references(value, loaded)
    elif isinstance(node, list):
        for item in node:
            _map_references(item, loaded)


def _without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


def _by_key(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{r['resourceType']}/{r['id']}": r for r in resources}


@pytest.mark.parametrize("name", sorted(BUNDLES))
@pytest.mark.parametrize("mode", ["everything", "searches"])
def test_the_server_gives_back_the_bundles_clinical_resources(
    name: str, mode: str, sekmet_fhir: SekmetServer, loaded: dict[str, tuple[Path, LoadedBundle]]
) -> None:
    path, ids = loaded[name]
    bundle = BundleSource.from_path(path)
    old_patient = next(bundle.patient_ids())
    types = [t for t in CLINICAL_RESOURCE_TYPES if t != "FamilyMemberHistory"]
    expected = _by_key([_on_server(r, ids) for r in bundle.resources(old_patient, types)])
    # small pages force the searches through several `next` links
    options: dict[str, Any] = {"use_everything": mode == "everything", "page_size": 7}
    with RestSource(sekmet_fhir.base_url, **options) as source:
        patient = source.patient(ids.patient_id)
        got = _by_key([_without_meta(r) for r in source.resources(ids.patient_id, types)])
        assert set(got) == set(expected)
        assert got == expected
        assert _without_meta(patient) == _on_server(bundle.patient(old_patient), ids)
        list(source.resources(ids.patient_id, ["FamilyMemberHistory"]))
        warnings = source.source_warnings(ids.patient_id)
    assert len(expected) > 20
    assert any("FamilyMemberHistory" in w for w in warnings), warnings


def test_the_capability_statement_is_read(sekmet_fhir: SekmetServer) -> None:
    with RestSource(sekmet_fhir.base_url) as source:
        capabilities = source.capabilities()
    assert capabilities.known and capabilities.everything
    assert {"Observation", "Condition", "MedicationRequest"} <= capabilities.patient_search
    assert "FamilyMemberHistory" not in capabilities.types
    assert "MedicationRequest:medication" in capabilities.includes


def test_an_unknown_patient_on_a_real_server_is_not_found(sekmet_fhir: SekmetServer) -> None:
    with RestSource(sekmet_fhir.base_url) as source, pytest.raises(PatientNotFoundError, match="no Patient/absent-1"):
        source.patient("absent-1")


def test_patient_ids_pages_through_the_server(
    sekmet_fhir: SekmetServer, loaded: dict[str, tuple[Path, LoadedBundle]]
) -> None:
    with RestSource(sekmet_fhir.base_url, page_size=1) as source:
        ids = set(source.patient_ids())
    assert {ids_.patient_id for _, ids_ in loaded.values()} <= ids


def test_references_resolve_on_the_server(
    sekmet_fhir: SekmetServer, loaded: dict[str, tuple[Path, LoadedBundle]]
) -> None:
    _, ids = loaded["lonnie"]
    with RestSource(sekmet_fhir.base_url, use_everything=False) as source:
        observation = next(source.resources(ids.patient_id, ["Observation"]))
        encounter = source.resolve(observation["encounter"]["reference"])
        assert encounter is not None and encounter["resourceType"] == "Encounter"
        assert source.resolve(f"{sekmet_fhir.base_url}/Encounter/{encounter['id']}") == encounter
        assert source.resolve("Encounter/not-there") is None


def test_a_refused_search_surfaces_the_servers_diagnostics(sekmet_fhir: SekmetServer) -> None:
    # The server's own strict-handling answer to a parameter it does not know, through the same code path.
    with RestSource(sekmet_fhir.base_url) as source, pytest.raises(FhirSourceUnavailableError) as error:
        list(source._pages(f"{sekmet_fhir.base_url}/Observation", {"no-such-param": "1"}, what="probe", strict=True))
    assert "Unknown search parameter 'no-such-param'" in str(error.value)
    assert error.value.reason == "FHIR_REQUEST_REFUSED"


def test_the_server_is_really_there(sekmet_fhir: SekmetServer) -> None:
    assert httpx.get(f"{sekmet_fhir.base_url}/metadata", timeout=5).json()["fhirVersion"] == "4.0.1"
