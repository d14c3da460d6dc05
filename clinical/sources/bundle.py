"""A FHIR R4 Bundle (collection, transaction, batch, searchset or document) as a `FhirSource`.

The whole Bundle is read once and indexed: by `fullUrl` (e.g. `urn:uuid:...` in Synthea transaction bundles,
absolute URLs in searchsets) and by `Type/id`, and per patient by resource type. Patient references are
resolved through both indexes, so `Patient/123`, `http://server/fhir/Patient/123` and the `urn:uuid:` of the
Patient's entry all reach the same patient (FHIR R4 "Resolving references in Bundles",
http://hl7.org/fhir/R4/bundle.html#references).

Entries without a resource (transaction DELETEs), searchset entries of mode "outcome" (OperationOutcome)
and nested Bundles are skipped. A history, message or *-response Bundle is refused: it does not hold the
current state of a record. Duplicate entries for the same resource with different content are refused
rather than guessed between.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from clinical.errors import FhirInputError, PatientNotFoundError
from clinical.fhir_values import is_known_resource_type
from clinical.sources.base import (
    DEFAULT_MAX_BUNDLE_BYTES,
    FhirResource,
    SourceBase,
    check_resource,
    gc_paused,
    parse_json,
    patient_reference,
    reference_target,
)

#: Bundle.type values whose entries are a snapshot of resources (http://hl7.org/fhir/R4/valueset-bundle-type.html).
ACCEPTED_BUNDLE_TYPES: Final = frozenset({"collection", "transaction", "batch", "searchset", "document"})
_REFUSED_BUNDLE_TYPES: Final = {
    "history": "a history Bundle holds past versions and deletions, not the current record",
    "message": "a message Bundle is an event notification, not a patient record",
    "transaction-response": "a transaction-response Bundle holds outcomes, not resources",
    "batch-response": "a batch-response Bundle holds outcomes, not resources",
}
_SKIPPED_TYPES: Final = frozenset({"Bundle", "OperationOutcome"})


class BundleSource(SourceBase):
    """The resources of one Bundle, indexed by reference and by patient. Build with `from_path`/`from_bytes`."""

    def __init__(self, bundle: object, *, name: str = "inline Bundle") -> None:
        self._name = name
        self._by_ref: dict[str, FhirResource] = {}
        self._patients: dict[str, FhirResource] = {}
        self._by_patient: dict[str, dict[str, list[FhirResource]]] = defaultdict(lambda: defaultdict(list))
        self._index(self._check_bundle(bundle))

    # construction -----------------------------------------------------------------------------------
    @classmethod
    def from_bytes(
        cls, data: bytes, *, name: str = "inline Bundle", max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES
    ) -> BundleSource:
        """A Bundle sent as JSON bytes (e.g. inline in a gRPC request); refused above `max_bytes`."""
        with gc_paused():  # a Bundle is many acyclic objects: no cycle collections while they are built
            return cls(parse_json(data, where=name, max_bytes=max_bytes), name=name)

    @classmethod
    def from_path(cls, path: str | Path, *, max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES) -> BundleSource:
        """A Bundle JSON file; refused above `max_bytes` before it is read."""
        path = Path(path)
        name = f"Bundle file {path.name}"
        size = path.stat().st_size
        if size > max_bytes:
            raise FhirInputError(
                f"{name}: {size} bytes is over the {max_bytes}-byte limit for a Bundle; "
                "use a Bulk Data NDJSON export for large data (or raise max_bytes)",
                reason="PAYLOAD_TOO_LARGE",
            )
        with gc_paused():
            return cls(parse_json(path.read_bytes(), where=name, max_bytes=max_bytes), name=name)

    # FhirSource -------------------------------------------------------------------------------------
    def describe(self) -> str:
        return self._name

    def patient(self, patient_id: str) -> FhirResource:
        try:
            return self._patients[patient_id]
        except KeyError:
            known = ", ".join(sorted(self._patients)[:3]) or "none"
            raise PatientNotFoundError(
                f"{self._name} holds no Patient with id {patient_id!r} (Patient ids in it: {known})"
            ) from None

    def resources(self, patient_id: str, resource_types: Sequence[str]) -> Iterator[FhirResource]:
        by_type = self._by_patient.get(patient_id)
        if by_type is None:
            return
        for resource_type in resource_types:
            yield from by_type.get(resource_type, ())

    def resolve(self, reference: str) -> FhirResource | None:
        found = self._by_ref.get(reference)
        if found is not None:
            return found
        target = reference_target(reference)
        return self._by_ref.get(f"{target[0]}/{target[1]}") if target else None

    def patient_ids(self) -> Iterator[str]:
        yield from self._patients

    # indexing ---------------------------------------------------------------------------------------
    def _check_bundle(self, bundle: object) -> list[Any]:
        if isinstance(bundle, list):
            raise FhirInputError(
                f"{self._name}: expected a FHIR Bundle (a JSON object with resourceType 'Bundle'), got a JSON array"
            )
        resource = check_resource(bundle, where=self._name)
        resource_type = resource["resourceType"]
        if resource_type != "Bundle":
            raise FhirInputError(
                f"{self._name}: expected a FHIR Bundle, got a single {resource_type} resource; "
                "wrap resources in a Bundle of type collection"
            )
        bundle_type = resource.get("type")
        if bundle_type in _REFUSED_BUNDLE_TYPES:
            raise FhirInputError(
                f"{self._name}: Bundle type {bundle_type!r} refused: {_REFUSED_BUNDLE_TYPES[bundle_type]}"
            )
        if bundle_type not in ACCEPTED_BUNDLE_TYPES:
            raise FhirInputError(
                f"{self._name}: Bundle.type {bundle_type!r} is not one of {', '.join(sorted(ACCEPTED_BUNDLE_TYPES))}"
            )
        entries = resource.get("entry", [])
        if not isinstance(entries, list):
            raise FhirInputError(f"{self._name}: Bundle.entry must be a JSON array, got {type(entries).__name__}")
        return entries

    def _index(self, entries: list[Any]) -> None:
        full_urls: dict[str, FhirResource] = {}
        kept: list[FhirResource] = []
        for number, entry in enumerate(entries):
            where = f"{self._name}: Bundle.entry[{number}]"
            if not isinstance(entry, dict):
                raise FhirInputError(f"{where} must be a JSON object, got {type(entry).__name__}")
            if "resource" not in entry:
                continue  # e.g. a DELETE in a transaction
            if (entry.get("search") or {}).get("mode") == "outcome":
                continue
            resource = check_resource(entry["resource"], where=f"{where}.resource")
            if not is_known_resource_type(resource["resourceType"]):
                raise FhirInputError(
                    f"{where}.resource: unknown resourceType {resource['resourceType']!r} (not a FHIR R4 resource)"
                )
            if resource["resourceType"] in _SKIPPED_TYPES:
                continue
            resource_id = resource.get("id")
            if resource_id is not None and (not isinstance(resource_id, str) or not resource_id):
                raise FhirInputError(f"{where}.resource.id must be a non-empty string, got {resource_id!r}")
            full_url = entry.get("fullUrl")
            if full_url is not None and not isinstance(full_url, str):
                raise FhirInputError(f"{where}.fullUrl must be a string, got {type(full_url).__name__}")
            keys = self._keys(resource, full_url)
            for key in keys:
                previous = self._by_ref.get(key)
                if previous is not None and previous is not resource and previous != resource:
                    raise FhirInputError(
                        f"{where}: {key} appears twice in the Bundle with different content; "
                        "a Bundle must hold one version of each resource"
                    )
                self._by_ref[key] = resource
            if full_url:
                full_urls[full_url] = resource
            if resource["resourceType"] == "Patient":
                patient_id = self._own_id(resource, full_url)
                if patient_id is None:
                    raise FhirInputError(f"{where}: a Patient without an id or a fullUrl cannot be referenced")
                self._patients.setdefault(patient_id, resource)
            else:
                kept.append(resource)
        for resource in kept:
            reference = patient_reference(resource)
            if reference is None:
                continue
            patient_id = self._patient_id_of(reference)
            if patient_id is not None:
                self._by_patient[patient_id][resource["resourceType"]].append(resource)

    @staticmethod
    def _own_id(resource: FhirResource, full_url: str | None) -> str | None:
        if resource.get("id"):
            return str(resource["id"])
        if full_url:
            if full_url.startswith("urn:uuid:"):
                return full_url[len("urn:uuid:") :]
            target = reference_target(full_url)
            if target is not None:
                return target[1]
        return None

    def _keys(self, resource: FhirResource, full_url: str | None) -> list[str]:
        keys: list[str] = []
        if full_url:
            keys.append(full_url)
        own_id = self._own_id(resource, full_url)
        if own_id is not None:
            keys.append(f"{resource['resourceType']}/{own_id}")
        return keys

    def _patient_id_of(self, reference: str) -> str | None:
        target = self._by_ref.get(reference)
        if target is not None:
            if target.get("resourceType") != "Patient":
                return None
            for patient_id, patient in self._patients.items():
                if patient is target:
                    return patient_id
            return None
        parsed = reference_target(reference)
        if parsed is None or parsed[0] != "Patient":
            return None
        return parsed[1]
