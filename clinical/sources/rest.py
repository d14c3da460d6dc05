"""A FHIR R4 REST server as a `FhirSource` (httpx; auth from `clinical.sources.auth`).

What it asks the server for, per patient:

- `GET [base]/Patient/{id}` (404/410 -> `PatientNotFoundError`);
- the patient's resources: `GET [base]/Patient/{id}/$everything` when the server's CapabilityStatement
  declares the operation (or `use_everything=True`), falling back to searches when the server refuses it;
  otherwise one search per resource type, `GET [base]/{type}?patient={id}&_count={page_size}` (plus
  `_include={type}:medication` for medication requests/statements when the server supports it), sent with
  `Prefer: handling=strict` so that a server which does not know a parameter says so instead of ignoring
  it (FHIR R4 search, section 3.1.1.4). Types the CapabilityStatement does not list are not searched,
  and `source_warnings()` says so;
- `next` links are followed (FHIR R4 search 3.1.1.6) while they stay on the server's origin (no credentials
  are ever sent elsewhere), are not repeated (a loop), and stay within `max_pages`;
- every resource is checked: the requested type, and a patient reference that points at the requested
  patient (a lenient server that ignored `patient=` cannot leak other patients into the record).

Transient failures (HTTP 429, 502, 503, 504, refused connections) are retried `retries` times with
exponential backoff and jitter, honouring `Retry-After` (seconds or an HTTP date) up to
`retry_after_max_s`. A read timeout is not retried (a slow server stays slow); each request has an
overall deadline of `timeout_s`.

Errors, one each: server down / 5xx / timeout / paging faults -> `FhirSourceUnavailableError` (the
timeout named); credentials refused -> `FhirAuthError` (a `FhirSourceUnavailableError`); unknown patient
-> `PatientNotFoundError`; not JSON, a wrong resourceType, an OperationOutcome instead of data, a
response over `max_response_bytes` -> `FhirInputError`. Every message carries the server's
OperationOutcome diagnostics when it sent one, and never a token.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import orjson

from clinical.errors import FhirInputError, FhirSourceUnavailableError, PatientNotFoundError
from clinical.sources.auth import FhirAuth, FhirAuthError, NoAuth
from clinical.sources.base import (
    CLINICAL_RESOURCE_TYPES,
    PATIENT_REFERENCE_FIELDS,
    FhirResource,
    SourceBase,
    patient_reference,
    reference_target,
)

log = logging.getLogger(__name__)

#: HTTP statuses worth retrying: rate limited, bad gateway, unavailable, gateway timeout.
RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
#: FHIR id syntax (R4 datatypes, "id": [A-Za-z0-9\-\.]{1,64}) and resource type names.
_ID_RE: Final = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_TYPE_RE: Final = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
#: Types whose medication may be a reference; included in the same search where supported.
_MEDICATION_INCLUDES: Final = {
    "MedicationRequest": "MedicationRequest:medication",
    "MedicationStatement": "MedicationStatement:medication",
}
_FHIR_JSON: Final = "application/fhir+json"
DEFAULT_MAX_RESPONSE_BYTES: Final = 64 * 1024 * 1024


def _checked_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise FhirInputError(f"{what} {value!r} is not a FHIR id (1-64 characters of A-Z a-z 0-9 - .)")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def operation_outcome_text(body: Any, *, limit: int = 600) -> str:
    """The diagnostics of an OperationOutcome ("error: not-found: Patient/x not found; ..."), or ""."""
    if not isinstance(body, Mapping) or body.get("resourceType") != "OperationOutcome":
        return ""
    parts = []
    for issue in body.get("issue") or []:
        if not isinstance(issue, Mapping):
            continue
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or ""
        parts.append(": ".join(str(p) for p in (issue.get("severity"), issue.get("code"), text) if p))
    return "; ".join(parts)[:limit]


@dataclass(frozen=True)
class ServerCapabilities:
    """What a CapabilityStatement says about the searches and operations this source uses."""

    known: bool
    types: frozenset[str] = frozenset()
    patient_search: frozenset[str] = frozenset()  # types with a `patient` search parameter (or none listed)
    includes: frozenset[str] = frozenset()
    everything: bool = False

    @classmethod
    def unknown(cls) -> ServerCapabilities:
        return cls(known=False)

    @classmethod
    def from_statement(cls, statement: Mapping[str, Any]) -> ServerCapabilities:
        types: set[str] = set()
        patient_search: set[str] = set()
        includes: set[str] = set()
        everything = False
        for rest in statement.get("rest") or []:
            if not isinstance(rest, Mapping) or rest.get("mode", "server") != "server":
                continue
            for resource in rest.get("resource") or []:
                if not isinstance(resource, Mapping) or not isinstance(resource.get("type"), str):
                    continue
                rtype = resource["type"]
                types.add(rtype)
                params = {p.get("name") for p in resource.get("searchParam") or [] if isinstance(p, Mapping)}
                if not params or "patient" in params:
                    patient_search.add(rtype)
                includes.update(str(i) for i in resource.get("searchInclude") or [])
                for operation in resource.get("operation") or []:
                    if not isinstance(operation, Mapping):
                        continue
                    name = str(operation.get("name", "")).lstrip("$")
                    definition = str(operation.get("definition", ""))
                    if rtype == "Patient" and (
                        name in ("everything", "patient-everything") or definition.endswith("Patient-everything")
                    ):
                        everything = True
        return cls(
            known=True,
            types=frozenset(types),
            patient_search=frozenset(patient_search),
            includes=frozenset(includes),
            everything=everything,
        )

    def searchable_by_patient(self, resource_type: str) -> bool:
        return not self.known or resource_type in self.patient_search


@dataclass
class _PatientCache:
    patient_id: str
    by_type: dict[str, list[FhirResource]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class RestSource(SourceBase):
    """The resources of patients on a FHIR R4 REST server; close it (or use `with`).

    Thread-safe, but a shared source serialises its requests and caches one patient at a time: give each
    worker thread its own source for parallel extraction.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: FhirAuth | None = None,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        retry_after_max_s: float = 120.0,
        page_size: int = 200,
        max_pages: int = 100,
        use_everything: bool | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        verify_tls: bool = True,
        allow_insecure_http: bool = False,
        user_agent: str = "osteorisk-fhir-client",
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FhirInputError(f"FHIR base URL {base_url!r} must be an http(s) URL with a host")
        if parts.query or parts.fragment:
            raise FhirInputError(f"FHIR base URL {base_url!r} must not carry a query or fragment")
        for name, value, low in (
            ("timeout_s", timeout_s, 0.0),
            ("backoff_base_s", backoff_base_s, 0.0),
            ("backoff_max_s", backoff_max_s, 0.0),
            ("retry_after_max_s", retry_after_max_s, 0.0),
        ):
            if not value >= low or (name == "timeout_s" and value == 0):
                raise ValueError(f"{name} must be positive, got {value!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
        if not 1 <= page_size <= 1000:
            raise ValueError(f"page_size (_count) must be in 1..1000, got {page_size}")
        if max_pages < 1:
            raise ValueError(f"max_pages must be >= 1, got {max_pages}")
        if max_response_bytes < 1024:
            raise ValueError(f"max_response_bytes must be >= 1024, got {max_response_bytes}")
        self.auth: FhirAuth = auth or NoAuth()
        if (
            parts.scheme == "http"
            and not isinstance(self.auth, NoAuth)
            and not _is_loopback(parts.hostname)
            and not allow_insecure_http
        ):
            raise FhirAuthError(
                f"refusing to send credentials over plain http to {parts.hostname}: use https "
                "(or allow_insecure_http=True inside a trusted network)",
                reason="FHIR_AUTH_CONFIG",
            )
        self.base_url = base_url.rstrip("/")
        self._origin = (parts.scheme, parts.hostname, parts.port)
        self.timeout_s = float(timeout_s)
        self.retries = retries
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.retry_after_max_s = float(retry_after_max_s)
        self.page_size = page_size
        self.max_pages = max_pages
        self.use_everything = use_everything
        self.max_response_bytes = max_response_bytes
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.timeout_s),
            verify=verify_tls,
            follow_redirects=False,
            headers={"Accept": _FHIR_JSON, "User-Agent": user_agent},
        )
        self._lock = threading.RLock()
        self._capabilities: ServerCapabilities | None = None
        self._everything_refused = False
        self._cache: _PatientCache | None = None
        self._resolved: dict[str, FhirResource | None] = {}

    # FhirSource -------------------------------------------------------------------------------------
    def describe(self) -> str:
        parts = urlsplit(self.base_url)
        return f"FHIR server {parts.scheme}://{parts.netloc}{parts.path}"

    def close(self) -> None:
        self._client.close()

    def patient(self, patient_id: str) -> FhirResource:
        _checked_id(patient_id, "patient id")
        body = self._get_resource("Patient", patient_id)
        if body is None:
            raise PatientNotFoundError(f"{self.describe()} has no Patient/{patient_id} (HTTP 404)")
        return body

    def resources(self, patient_id: str, resource_types: Sequence[str]) -> Iterator[FhirResource]:
        _checked_id(patient_id, "patient id")
        for rtype in resource_types:
            if not _TYPE_RE.match(rtype):
                raise ValueError(f"{rtype!r} is not a FHIR resource type name")
        with self._lock:
            cache = self._patient_cache(patient_id)
            missing = [t for t in resource_types if t not in cache.by_type]
            if missing:
                self._fetch(cache, missing)
            collected = [r for t in resource_types for r in cache.by_type.get(t, [])]
        yield from collected

    def source_warnings(self, patient_id: str) -> list[str]:
        """What this server could not provide for the patient (e.g. a type it cannot search by patient)."""
        with self._lock:
            if self._cache is None or self._cache.patient_id != patient_id:
                return []
            return list(self._cache.warnings)

    def resolve(self, reference: str) -> FhirResource | None:
        if reference.startswith(("#", "urn:")):
            return None
        if "://" in reference:
            if not reference.startswith(self.base_url + "/"):
                return None  # never follow a reference to another server
            reference = reference[len(self.base_url) + 1 :]
        target = reference_target(reference)
        if target is None or not _TYPE_RE.match(target[0]) or not _ID_RE.match(target[1]):
            return None
        key = f"{target[0]}/{target[1]}"
        with self._lock:
            if key not in self._resolved:
                self._resolved[key] = self._get_resource(target[0], target[1])
            return self._resolved[key]

    def patient_ids(self) -> Iterator[str]:
        url = f"{self.base_url}/Patient"
        params = {"_elements": "id", "_count": str(self.page_size)}
        for bundle in self._pages(url, params, what="Patient search"):
            for resource, _mode in _entries(bundle, where="Patient search"):
                if resource.get("resourceType") == "Patient" and isinstance(resource.get("id"), str):
                    yield resource["id"]

    # capabilities -----------------------------------------------------------------------------------
    def capabilities(self) -> ServerCapabilities:
        """The server's CapabilityStatement, read once; `unknown` when the server does not serve one."""
        with self._lock:
            if self._capabilities is None:
                try:
                    statement = self._get_json(f"{self.base_url}/metadata", {}, what="CapabilityStatement")
                except (FhirInputError, FhirSourceUnavailableError) as exc:
                    if isinstance(exc, FhirSourceUnavailableError) and exc.reason != "FHIR_REQUEST_REFUSED":
                        raise  # down, timed out, 5xx or credentials refused: not a missing statement
                    log.warning("%s: no usable CapabilityStatement (%s); searching every type", self.describe(), exc)
                    self._capabilities = ServerCapabilities.unknown()
                else:
                    if statement.get("resourceType") != "CapabilityStatement":
                        self._capabilities = ServerCapabilities.unknown()
                    else:
                        self._capabilities = ServerCapabilities.from_statement(statement)
            return self._capabilities

    # fetching ---------------------------------------------------------------------------------------
    def _patient_cache(self, patient_id: str) -> _PatientCache:
        if self._cache is None or self._cache.patient_id != patient_id:
            self._cache = _PatientCache(patient_id)
        return self._cache

    def _wants_everything(self) -> bool:
        if self._everything_refused or self.use_everything is False:
            return False
        return self.use_everything is True or self.capabilities().everything

    def _fetch(self, cache: _PatientCache, resource_types: list[str]) -> None:
        if self._wants_everything():
            fetched = self._everything(cache.patient_id)
            if fetched is not None:
                types = set(CLINICAL_RESOURCE_TYPES) | set(resource_types) | set(fetched)
                for rtype in types:
                    cache.by_type.setdefault(rtype, fetched.get(rtype, []))
                capabilities = self.capabilities()
                for rtype in sorted(set(CLINICAL_RESOURCE_TYPES) | set(resource_types)):
                    if capabilities.known and rtype not in capabilities.types and not fetched.get(rtype):
                        cache.warnings.append(
                            f"{self.describe()} does not list {rtype} in its CapabilityStatement: "
                            f"Patient/$everything may not include {rtype} resources"
                        )
                return
        capabilities = self.capabilities()
        for rtype in resource_types:
            if not capabilities.searchable_by_patient(rtype):
                cache.by_type[rtype] = []
                cache.warnings.append(
                    f"{self.describe()} cannot search {rtype} by patient (not in its CapabilityStatement): "
                    f"{rtype} resources were not read"
                )
                continue
            cache.by_type[rtype] = self._search(cache.patient_id, rtype, capabilities)

    def _everything(self, patient_id: str) -> dict[str, list[FhirResource]] | None:
        url = f"{self.base_url}/Patient/{patient_id}/$everything"
        params = {"_count": str(self.page_size)}
        by_type: dict[str, list[FhirResource]] = {}
        seen: set[str] = set()
        try:
            for bundle in self._pages(url, params, what="Patient/$everything"):
                for resource, _mode in _entries(bundle, where="Patient/$everything"):
                    self._keep(resource, patient_id, resource["resourceType"], by_type, seen, "$everything")
        except _OperationRefusedError:
            # the server's text may quote patient data: the log gets only the fact (no PHI in application logs)
            log.info("%s refused $everything; using searches", self.describe())
            self._everything_refused = True
            return None
        return by_type

    def _search(self, patient_id: str, rtype: str, capabilities: ServerCapabilities) -> list[FhirResource]:
        url = f"{self.base_url}/{rtype}"
        params = {"patient": patient_id, "_count": str(self.page_size)}
        include = _MEDICATION_INCLUDES.get(rtype)
        if include and include in capabilities.includes:
            params["_include"] = include
        by_type: dict[str, list[FhirResource]] = {}
        seen: set[str] = set()
        what = f"{rtype} search"
        for bundle in self._pages(url, params, what=what, strict=True):
            for resource, mode in _entries(bundle, where=what):
                if mode == "include":
                    if isinstance(resource.get("id"), str):
                        self._resolved[f"{resource['resourceType']}/{resource['id']}"] = resource
                    continue
                self._keep(resource, patient_id, rtype, by_type, seen, what)
        return by_type.get(rtype, [])

    def _keep(
        self,
        resource: FhirResource,
        patient_id: str,
        expected_type: str,
        by_type: dict[str, list[FhirResource]],
        seen: set[str],
        what: str,
    ) -> None:
        rtype = resource["resourceType"]
        if rtype != expected_type:
            raise FhirInputError(f"{self.describe()}: {what} returned a {rtype} resource, expected {expected_type}")
        if rtype == "Patient":
            return
        if rtype not in PATIENT_REFERENCE_FIELDS:  # e.g. Medication, Organization: kept for `resolve`
            if isinstance(resource.get("id"), str):
                self._resolved[f"{rtype}/{resource['id']}"] = resource
            return
        key = f"{rtype}/{resource.get('id')}"
        if resource.get("id") is not None and key in seen:
            return  # the same resource on two pages (data changed while paging)
        reference = patient_reference(resource)
        target = reference_target(reference) if reference else None
        if target is None or target != ("Patient", patient_id):
            log.warning("%s: %s returned a %s of another patient; dropped", self.describe(), what, rtype)
            return
        seen.add(key)
        by_type.setdefault(rtype, []).append(resource)

    def _get_resource(self, rtype: str, rid: str) -> FhirResource | None:
        url = f"{self.base_url}/{rtype}/{rid}"
        try:
            body = self._get_json(url, {}, what=f"{rtype} read", not_found_ok=True)
        except _NotFoundError:
            return None
        found = body.get("resourceType")
        if found != rtype:
            diagnostics = operation_outcome_text(body)
            detail = f": {diagnostics}" if diagnostics else ""
            raise FhirInputError(f"{self.describe()} answered a {found} to a read of {rtype}/{rid}{detail}")
        if body.get("id") != rid:
            raise FhirInputError(f"{self.describe()} answered {rtype}/{body.get('id')} to a read of {rtype}/{rid}")
        return body

    def _pages(
        self, url: str, params: Mapping[str, str], *, what: str, strict: bool = False
    ) -> Iterator[dict[str, Any]]:
        seen_urls: set[str] = set()
        next_url: str | None = url
        next_params: Mapping[str, str] = params
        pages = 0
        while next_url is not None:
            pages += 1
            if pages > self.max_pages:
                raise FhirSourceUnavailableError(
                    f"{self.describe()}: {what} has more than max_pages={self.max_pages} pages of "
                    f"{self.page_size}; raise max_pages (or page_size) to read it all",
                    reason="FHIR_TOO_MANY_PAGES",
                )
            headers = {"Prefer": "handling=strict"} if strict else {}
            bundle = self._get_json(next_url, next_params, what=what, headers=headers)
            if bundle.get("resourceType") != "Bundle":
                diagnostics = operation_outcome_text(bundle)
                detail = f": {diagnostics}" if diagnostics else ""
                raise FhirInputError(
                    f"{self.describe()}: {what} answered a {bundle.get('resourceType')}, expected a Bundle{detail}"
                )
            yield bundle
            seen_urls.add(str(httpx.URL(next_url, params=dict(next_params)) if next_params else httpx.URL(next_url)))
            next_url = _next_link(bundle)
            next_params = {}
            if next_url is None:
                break
            if not self._same_origin(next_url):
                raise FhirSourceUnavailableError(
                    f"{self.describe()}: {what} gave a next link to another origin "
                    f"({urlsplit(next_url).scheme}://{urlsplit(next_url).netloc}); not followed",
                    reason="FHIR_PAGING_FOREIGN_LINK",
                )
            if str(httpx.URL(next_url)) in seen_urls:
                raise FhirSourceUnavailableError(
                    f"{self.describe()}: {what} paging loops (a next link repeats an earlier page)",
                    reason="FHIR_PAGING_LOOP",
                )

    def _same_origin(self, url: str) -> bool:
        parts = urlsplit(url)
        return (parts.scheme, parts.hostname, parts.port) == self._origin

    # HTTP -------------------------------------------------------------------------------------------
    def _get_json(
        self,
        url: str,
        params: Mapping[str, str],
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        not_found_ok: bool = False,
    ) -> dict[str, Any]:
        status, content_type, content = self._get(url, params, what=what, headers=headers)
        body = _parse_json(content)
        if status == 200:
            if body is _NOT_JSON:
                snippet = content[:80].decode("utf-8", "replace").replace("\n", " ")
                raise FhirInputError(
                    f"{self.describe()}: {what} answered {content_type or 'no Content-Type'}, not FHIR JSON "
                    f"(starts {snippet!r})"
                )
            if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
                raise FhirInputError(f"{self.describe()}: {what} answered JSON that is not a FHIR resource")
            return body
        diagnostics = operation_outcome_text(body)
        detail = f": {diagnostics}" if diagnostics else ""
        if status in (404, 410) and not_found_ok:
            raise _NotFoundError()
        if "$everything" in url and status in (400, 404, 405, 501):
            raise _OperationRefusedError(f"HTTP {status}{detail}")
        if status in (401, 403):
            raise FhirAuthError(
                f"{self.describe()} refused our credentials ({self.auth.describe()}) for {what}: HTTP {status}{detail}"
            )
        if status >= 500 or status == 429:
            raise FhirSourceUnavailableError(
                f"{self.describe()}: {what} failed with HTTP {status} after {self.retries + 1} attempt(s){detail}"
            )
        raise FhirSourceUnavailableError(
            f"{self.describe()}: {what} was refused with HTTP {status}{detail}", reason="FHIR_REQUEST_REFUSED"
        )

    def _get(
        self, url: str, params: Mapping[str, str], *, what: str, headers: Mapping[str, str] | None = None
    ) -> tuple[int, str, bytes]:
        """GET with retries, backoff, Retry-After, one token refresh on 401, a deadline and a size cap."""
        attempt = 0
        refreshed = False
        while True:
            request_headers = dict(headers or {})
            authorization = self.auth.authorization(self._client, self.base_url)
            if authorization:
                request_headers["Authorization"] = authorization
            try:
                status, response_headers, content = self._send(url, params, request_headers, what=what)
            except httpx.TimeoutException as exc:
                raise FhirSourceUnavailableError(
                    f"{self.describe()} did not answer {what} within timeout_s={self.timeout_s:g} s "
                    f"({type(exc).__name__}); raise timeout_s or check the server",
                    reason="FHIR_TIMEOUT",
                ) from None
            except httpx.TransportError as exc:
                if attempt < self.retries:
                    self._sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                raise FhirSourceUnavailableError(
                    f"cannot reach {self.describe()} for {what} after {attempt + 1} attempt(s): "
                    f"{type(exc).__name__}: {exc}"
                ) from None
            if status == 401 and not refreshed and not isinstance(self.auth, NoAuth):
                self.auth.invalidate()
                refreshed = True
                continue
            if status in RETRY_STATUSES and attempt < self.retries:
                delay = self._retry_delay(response_headers.get("retry-after"), attempt, what=what)
                self._sleep(delay)
                attempt += 1
                continue
            return status, response_headers.get("content-type", ""), content

    def _send(
        self, url: str, params: Mapping[str, str], headers: Mapping[str, str], *, what: str
    ) -> tuple[int, httpx.Headers, bytes]:
        deadline = time.monotonic() + self.timeout_s
        with self._client.stream("GET", url, params=dict(params) or None, headers=dict(headers)) as response:
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.max_response_bytes:
                raise self._too_large(what)
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise self._too_large(what)
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("the response took longer than timeout_s to arrive")
                chunks.append(chunk)
            return response.status_code, response.headers, b"".join(chunks)

    def _too_large(self, what: str) -> FhirInputError:
        return FhirInputError(
            f"{self.describe()}: {what} answered more than max_response_bytes={self.max_response_bytes} bytes; "
            "lower page_size or raise max_response_bytes",
            reason="PAYLOAD_TOO_LARGE",
        )

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: base * 2^attempt, scaled by a random factor in [0.5, 1], capped."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        return ceiling * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not cryptography

    def _retry_delay(self, retry_after: str | None, attempt: int, *, what: str) -> float:
        wait = _parse_retry_after(retry_after)
        if wait is None:
            return self._backoff(attempt)
        if wait > self.retry_after_max_s:
            raise FhirSourceUnavailableError(
                f"{self.describe()} asked to retry {what} after {wait:.0f} s (Retry-After), more than "
                f"retry_after_max_s={self.retry_after_max_s:g} s",
                reason="FHIR_RATE_LIMITED",
            )
        return wait

    @staticmethod
    def _sleep(seconds: float) -> None:
        time.sleep(max(0.0, seconds))


class _NotFoundError(Exception):
    """Internal: a read answered 404/410."""


class _OperationRefusedError(Exception):
    """Internal: the server does not support an operation ($everything)."""


_NOT_JSON: Final = object()


def _parse_json(content: bytes) -> Any:
    if not content.strip():
        return _NOT_JSON
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return _NOT_JSON


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (RFC 9110 10.2.3: delay-seconds or an HTTP-date); None when absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, Mapping) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def _entries(bundle: Mapping[str, Any], *, where: str) -> Iterator[tuple[FhirResource, str]]:
    """(resource, search mode) of a searchset; an error OperationOutcome entry raises with its diagnostics."""
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise FhirInputError(f"{where}: Bundle.entry is not a JSON array")
    for number, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise FhirInputError(f"{where}: Bundle.entry[{number}] is not a JSON object")
        resource = entry.get("resource")
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise FhirInputError(f"{where}: Bundle.entry[{number}] has no resource with a resourceType")
        mode = str((entry.get("search") or {}).get("mode", "match"))
        if resource["resourceType"] == "OperationOutcome":
            issues = [i for i in resource.get("issue") or [] if isinstance(i, Mapping)]
            if any(i.get("severity") in ("error", "fatal") for i in issues):
                raise FhirSourceUnavailableError(f"{where} failed on the server: {operation_outcome_text(resource)}")
            if issues:  # informational notes; their text may quote patient data, so only their count is logged
                log.info("%s: the server added %d informational note(s)", where.split("/")[0], len(issues))
            continue
        yield resource, mode


def open_rest(base_url: str, **options: Any) -> RestSource:
    """The `open_source` entry point for http(s) URLs; `options` are `RestSource`'s keyword arguments."""
    return RestSource(base_url, **options)
