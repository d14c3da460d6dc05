"""The interface every FHIR source implements, and `open_source`, which picks one from a path or URL.

A source hands out raw FHIR R4 resources as JSON dicts (`dict[str, Any]`), exactly as they were stored or
served: parsing and validation happen in `clinical.extract`, which validates the resources it uses. A
source is responsible for:

- finding the Patient by its logical id (`patient`), raising `PatientNotFoundError` when there is none;
- yielding every resource of the requested types whose patient reference (`PATIENT_REFERENCE_FIELDS`)
  points at that patient (`resources`), in any order; the extraction filters by date and status itself;
- resolving a reference to another resource, e.g. `MedicationRequest.medicationReference` ->
  `Medication/abc` (`resolve`), returning None when the source cannot;
- listing its patients (`patient_ids`), for `--patient` defaults and cohort runs;
- releasing what it holds (`close`; sources are context managers);
- optionally, saying what it could not provide for a patient (`source_warnings(patient_id) -> list[str]`,
  the `SourceWarnings` protocol; `SourceBase` answers none): e.g. a server that cannot search
  FamilyMemberHistory by patient, or malformed NDJSON lines skipped. `build_record` asks after reading the
  patient's resources and puts these warnings first in `ClinicalRecord.warnings`, so that a record built
  from incomplete data says so. Warnings are PHI-free, like every message of a source.

Implementations: `clinical.sources.bundle.BundleSource` (one Bundle JSON file or inline bytes),
`clinical.sources.ndjson` (a Bulk Data export directory: it must define
`open_ndjson(directory: Path, **options) -> FhirSource`) and `clinical.sources.rest` (a FHIR REST server:
`open_rest(base_url: str, **options) -> FhirSource`). `open_source` dispatches to them lazily.

Errors: malformed input -> `FhirInputError`; no such patient -> `PatientNotFoundError`; a server that is
down, times out or answers 5xx -> `FhirSourceUnavailableError` (all in `clinical.errors`).
"""

from __future__ import annotations

import gc
import importlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, runtime_checkable

import orjson

from clinical.errors import FhirInputError, PatientNotFoundError

FhirResource = dict[str, Any]

#: Resource types the ClinicalRecord extraction reads (sources may prefetch exactly these).
CLINICAL_RESOURCE_TYPES: Final[tuple[str, ...]] = (
    "Observation",
    "Condition",
    "MedicationRequest",
    "MedicationStatement",
    "FamilyMemberHistory",
    "Procedure",
)

#: The element that points at the patient, per resource type (FHIR R4 compartment definition "Patient",
#: http://hl7.org/fhir/R4/compartmentdefinition-patient.html, restricted to the subject/patient element).
PATIENT_REFERENCE_FIELDS: Final[Mapping[str, str]] = {
    "Observation": "subject",
    "Condition": "subject",
    "MedicationRequest": "subject",
    "MedicationStatement": "subject",
    "MedicationAdministration": "subject",
    "MedicationDispense": "subject",
    "Procedure": "subject",
    "DiagnosticReport": "subject",
    "Encounter": "subject",
    "CarePlan": "subject",
    "Goal": "subject",
    "ImagingStudy": "subject",
    "FamilyMemberHistory": "patient",
    "AllergyIntolerance": "patient",
    "Immunization": "patient",
    "Claim": "patient",
    "ExplanationOfBenefit": "patient",
    "RiskAssessment": "subject",
}

#: The UTF-8 byte order mark: not JSON, but written at the start of files by some Windows tools.
UTF8_BOM: Final = b"\xef\xbb\xbf"

#: Largest Bundle accepted from bytes (inline gRPC payloads) or from a file, in bytes.
DEFAULT_MAX_BUNDLE_BYTES: Final = 64 * 1024 * 1024


@runtime_checkable
class FhirSource(Protocol):
    """A read-only view of the FHIR resources of one or more patients."""

    def patient(self, patient_id: str) -> FhirResource:
        """The Patient resource with this logical id; `PatientNotFoundError` when the source has none."""
        ...

    def resources(self, patient_id: str, resource_types: Sequence[str]) -> Iterator[FhirResource]:
        """Every resource of these types whose patient reference points at the patient (any order)."""
        ...

    def resolve(self, reference: str) -> FhirResource | None:
        """The resource a reference ("Type/id", an absolute URL or "urn:uuid:...") points at, or None."""
        ...

    def patient_ids(self) -> Iterator[str]:
        """The logical ids of every Patient in the source."""
        ...

    def describe(self) -> str:
        """A short, PHI-free description for messages and provenance, e.g. "bundle file Keira.json"."""
        ...

    def close(self) -> None:
        """Release files, connections and caches."""
        ...


@runtime_checkable
class SourceWarnings(Protocol):
    """The optional part of a `FhirSource`: what it could not provide for a patient."""

    def source_warnings(self, patient_id: str) -> list[str]:
        """Warnings about the patient's data as this source delivered it, asked after `resources`."""
        ...


def source_warnings(source: FhirSource, patient_id: str) -> list[str]:
    """The source's warnings for a patient; none when the source does not implement `SourceWarnings`."""
    if isinstance(source, (SourceBase, SourceWarnings)):  # the concrete class first: cheap
        return list(source.source_warnings(patient_id))
    return []


class SourceBase:
    """Shared plumbing for sources: context manager, `close` no-op, `resolve` -> None, no source warnings."""

    def close(self) -> None:
        """Nothing to release by default."""

    def source_warnings(self, patient_id: str) -> list[str]:
        """Sources without limits to report have no warnings."""
        return []

    def resolve(self, reference: str) -> FhirResource | None:
        """Sources that cannot resolve references return None."""
        return None

    def __enter__(self) -> SourceBase:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def single_patient_id(source: FhirSource) -> str:
    """The id of the only Patient in the source; `PatientNotFoundError` for none, `FhirInputError` for several."""
    ids: list[str] = []
    for patient_id in source.patient_ids():
        ids.append(patient_id)
        if len(ids) > 1:
            raise FhirInputError(
                f"{source.describe()} holds more than one Patient; choose one with --patient "
                f"(e.g. {ids[0]!r} or {ids[1]!r})",
                reason="PATIENT_AMBIGUOUS",
            )
    if not ids:
        raise PatientNotFoundError(f"{source.describe()} holds no Patient resource")
    return ids[0]


def reference_target(reference: str) -> tuple[str, str] | None:
    """("Type", "id") of a literal reference "Type/id", "Type/id/_history/n" or ".../Type/id"; None otherwise.

    Contained ("#x") and "urn:uuid:" references have no type in them: resolving those is the source's job.
    """
    if not reference or reference.startswith(("#", "urn:")):
        return None
    parts = reference.split("?", 1)[0].rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2:
        return None
    resource_type, resource_id = parts[-2], parts[-1]
    if not resource_type[:1].isupper() or not resource_id:
        return None
    return resource_type, resource_id


def patient_reference(resource: Mapping[str, Any]) -> str | None:
    """The raw patient reference string of a resource (per `PATIENT_REFERENCE_FIELDS`), or None."""
    field = PATIENT_REFERENCE_FIELDS.get(str(resource.get("resourceType")))
    if field is None:
        return None
    value = resource.get(field)
    if not isinstance(value, Mapping):
        return None
    reference = value.get("reference")
    return reference if isinstance(reference, str) else None


def check_resource(obj: object, *, where: str) -> FhirResource:
    """`obj` as a resource dict with a string resourceType, else `FhirInputError` naming `where`."""
    if not isinstance(obj, dict):
        raise FhirInputError(f"{where}: expected a FHIR resource (a JSON object), got {type(obj).__name__}")
    resource_type = obj.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise FhirInputError(f"{where}: a JSON object without a resourceType is not a FHIR resource")
    return obj


def parse_json(data: bytes | str, *, where: str, max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES) -> Any:
    """JSON text -> Python value, with a size guard; `FhirInputError` naming `where` when it is not JSON.

    Parsed with orjson (a ~2 MB Synthea bundle in a few ms, about 3x the standard library), which is also
    stricter where FHIR JSON is: UTF-8 only (FHIR R4 json.html), no NaN/Infinity, no number that overflows
    a double. A leading UTF-8 byte order mark, written by some Windows tools, is dropped.
    """
    size = len(data)
    if size > max_bytes:
        raise FhirInputError(
            f"{where}: {size} bytes is over the {max_bytes}-byte limit for a FHIR payload; "
            "send a Bulk Data export or a server URL for large data",
            reason="PAYLOAD_TOO_LARGE",
        )
    if not data.strip():
        raise FhirInputError(f"{where}: empty input, expected FHIR JSON")
    if isinstance(data, bytes) and data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    elif isinstance(data, str) and data.startswith("\ufeff"):
        data = data[1:]
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "UTF-8" in exc.msg or "surrogate" in exc.msg:
            raise FhirInputError(f"{where}: not UTF-8 text ({exc.msg}); FHIR JSON must be UTF-8") from None
        if "depth" in exc.msg or "recursion" in exc.msg:
            raise FhirInputError(f"{where}: JSON nested too deeply") from None
        raise FhirInputError(f"{where}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


_GC_LOCK: Final = threading.Lock()
_gc_pauses = 0  # nesting depth of `gc_paused` over all threads
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while many acyclic objects are built and held (a partition's
    JSON): otherwise each collection walks every live object again, which costs more than the parsing itself
    (measured: grouping a Bulk Data partition 0.5 ms a patient with collections, 0.1 ms without). Reference counting
    still frees everything; cycles made meanwhile are collected once the pause ends. Thread-safe and
    nestable: the collector is switched back on when the last pause ends, and only if it was on before.
    """
    global _gc_pauses, _gc_was_enabled
    with _GC_LOCK:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


def is_server_url(spec: str | Path) -> bool:
    """Whether a source spec is an http(s) FHIR base URL (rather than a file or a directory)."""
    return str(spec).startswith(("http://", "https://"))


def open_source(spec: str | Path, **options: Any) -> FhirSource:
    """A source for a Bundle JSON file, a Bulk Data NDJSON directory or an http(s) FHIR base URL.

    `options` go to the chosen source (e.g. `max_bytes` for bundles; auth and timeouts for REST).
    Errors: a path that does not exist -> `FhirInputError`; a URL with another scheme -> `FhirInputError`.
    """
    text = str(spec)
    if is_server_url(text):
        rest = importlib.import_module("clinical.sources.rest")
        source: FhirSource = rest.open_rest(text, **options)
        return source
    if "://" in text:
        raise FhirInputError(f"unsupported FHIR source {text!r}: give a file, a directory or an http(s) base URL")
    path = Path(text)
    if path.is_dir():
        ndjson = importlib.import_module("clinical.sources.ndjson")
        source = ndjson.open_ndjson(path, **options)
        return source
    if path.is_file():
        from clinical.sources.bundle import BundleSource

        return BundleSource.from_path(path, **options)
    raise FhirInputError(f"FHIR source {text!r} does not exist: give a Bundle file, an NDJSON directory or a URL")
