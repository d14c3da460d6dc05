"""RestSource against real HTTP servers that misbehave on purpose (faults sekmet-fhir cannot produce).

Each test starts a stdlib `http.server` on 127.0.0.1 in a thread whose routes answer 500s, 503s, 429s,
stall, drip, send HTML, the wrong resourceType, OperationOutcomes, paging loops or links to other hosts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from clinical.errors import FhirInputError, FhirSourceUnavailableError, PatientNotFoundError
from clinical.sources.auth import BearerTokenAuth, FhirAuthError
from clinical.sources.base import open_source
from clinical.sources.rest import RestSource


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drip_s: float = 0.0  # seconds between 1-byte chunks of the body
    raw: bytes | None = None


Route = Callable[["Request"], Reply]


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


class FaultyServer:
    """A real HTTP server on 127.0.0.1 whose answers are given per path by the test; it records requests."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                request = Request(parts.path, parse_qs(parts.query), {k.lower(): v for k, v in self.headers.items()})
                server.requests.append(request)
                route = server.routes.get(parts.path)
                reply = route(request) if route else Reply(404, _outcome("not-found", f"no route {parts.path}"))
                time.sleep(reply.delay_s)
                payload = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                headers = {"Content-Type": "application/fhir+json", **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    if reply.drip_s:
                        for byte in payload:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(reply.drip_s)
                    else:
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"

    def route(self, path: str, reply: Reply | Route) -> None:
        self.routes[f"/fhir{path}"] = reply if callable(reply) else (lambda _request: reply)

    def count(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path == f"/fhir{path}")


def _outcome(code: str, text: str, severity: str = "error") -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": code, "diagnostics": text}]}


def _patient(pid: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1950-02-03"}


def _observation(oid: str, pid: str = "p1") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "valueQuantity": {"value": 60, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    }


def _searchset(resources: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    links = [{"relation": "next", "url": next_url}] if next_url else []
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }


@pytest.fixture()
def faulty() -> Iterator[FaultyServer]:
    server = FaultyServer()
    server.thread.start()
    server.route("/metadata", Reply(404, _outcome("not-supported", "no metadata here")))
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def _source(server: FaultyServer, **options: Any) -> RestSource:
    defaults: dict[str, Any] = {"timeout_s": 5.0, "retries": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.05}
    return RestSource(server.base_url, **{**defaults, **options})


# server errors -------------------------------------------------------------------------------------------
def test_500_is_unavailable_with_the_server_diagnostics_and_not_retried(faulty: FaultyServer) -> None:
    faulty.route("/Patient/p1", Reply(500, _outcome("exception", "database is locked")))
    with _source(faulty) as source, pytest.raises(FhirSourceUnavailableError, match=r"HTTP 500.*database is locked"):
        source.patient("p1")
    assert faulty.count("/Patient/p1") == 1


def test_503_is_retried_then_succeeds(faulty: FaultyServer) -> None:
    answers = iter([Reply(503, _outcome("transient", "busy")), Reply(503), Reply(200, _patient())])
    faulty.route("/Patient/p1", lambda _r: next(answers))
    with _source(faulty) as source:
        assert source.patient("p1")["id"] == "p1"
    assert faulty.count("/Patient/p1") == 3


def test_503_forever_gives_up_after_the_retries(faulty: FaultyServer) -> None:
    faulty.route("/Patient/p1", Reply(503, _outcome("transient", "maintenance window")))
    with (
        _source(faulty, retries=3) as source,
        pytest.raises(FhirSourceUnavailableError, match=r"HTTP 503 after 4 attempt.*maintenance window"),
    ):
        source.patient("p1")
    assert faulty.count("/Patient/p1") == 4


def test_429_honours_retry_after_seconds(faulty: FaultyServer) -> None:
    answers = iter([Reply(429, headers={"Retry-After": "1"}), Reply(200, _patient())])
    faulty.route("/Patient/p1", lambda _r: next(answers))
    started = time.monotonic()
    with _source(faulty, backoff_base_s=0.0) as source:
        assert source.patient("p1")["id"] == "p1"
    assert time.monotonic() - started >= 0.9


def test_429_honours_retry_after_as_an_http_date(faulty: FaultyServer) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    answers = iter([Reply(429, headers={"Retry-After": when}), Reply(200, _patient())])
    faulty.route("/Patient/p1", lambda _r: next(answers))
    started = time.monotonic()
    with _source(faulty) as source:
        assert source.patient("p1")["id"] == "p1"
    assert time.monotonic() - started >= 0.5


def test_retry_after_beyond_the_bound_fails_at_once(faulty: FaultyServer) -> None:
    faulty.route("/Patient/p1", Reply(429, _outcome("throttled", "quota"), headers={"Retry-After": "3600"}))
    started = time.monotonic()
    with (
        _source(faulty, retry_after_max_s=5) as source,
        pytest.raises(FhirSourceUnavailableError, match=r"after 3600 s.*retry_after_max_s=5") as error,
    ):
        source.patient("p1")
    assert error.value.reason == "FHIR_RATE_LIMITED"
    assert time.monotonic() - started < 3


def test_a_slow_server_times_out_naming_the_timeout(faulty: FaultyServer) -> None:
    faulty.route("/Patient/p1", Reply(200, _patient(), delay_s=2.0))
    with (
        _source(faulty, timeout_s=0.3) as source,
        pytest.raises(FhirSourceUnavailableError, match=r"within timeout_s=0\.3 s") as error,
    ):
        source.patient("p1")
    assert error.value.reason == "FHIR_TIMEOUT"


def test_a_dripping_response_hits_the_overall_deadline(faulty: FaultyServer) -> None:
    faulty.route("/Patient/p1", Reply(200, _patient(), drip_s=0.05))  # ~80 bytes -> ~4 s, each byte fast
    started = time.monotonic()
    with _source(faulty, timeout_s=0.5) as source, pytest.raises(FhirSourceUnavailableError, match="timeout_s"):
        source.patient("p1")
    assert time.monotonic() - started < 2.5


def test_nothing_listening_is_unavailable_after_retries() -> None:
    server = FaultyServer()  # bound, never started, then closed: the port refuses connections
    base = server.base_url
    server.httpd.server_close()
    with (
        RestSource(base, retries=1, backoff_base_s=0.01) as source,
        pytest.raises(FhirSourceUnavailableError, match=r"cannot reach .* after 2 attempt"),
    ):
        source.patient("p1")


# malformed answers ---------------------------------------------------------------------------------------
def test_html_instead_of_json_is_an_input_error(faulty: FaultyServer) -> None:
    faulty.route(
        "/Patient/p1", Reply(200, raw=b"<html><body>Login</body></html>", headers={"Content-Type": "text/html"})
    )
    with _source(faulty) as source, pytest.raises(FhirInputError, match="text/html, not FHIR JSON"):
        source.patient("p1")


def test_a_wrong_resource_type_is_an_input_error(faulty: FaultyServer) -> None:
    faulty.route("/Patient/p1", Reply(200, _observation("o1")))
    with _source(faulty) as source, pytest.raises(FhirInputError, match="answered a Observation to a read of Patient"):
        source.patient("p1")


def test_another_patient_than_asked_for_is_an_input_error(faulty: FaultyServer) -> None:
    faulty.route("/Patient/p1", Reply(200, _patient("p2")))
    with _source(faulty) as source, pytest.raises(FhirInputError, match="Patient/p2 to a read of Patient/p1"):
        source.patient("p1")


def test_an_operation_outcome_instead_of_a_resource_surfaces_its_diagnostics(faulty: FaultyServer) -> None:
    faulty.route("/Patient/p1", Reply(200, _outcome("processing", "consent withheld for this record")))
    with _source(faulty) as source, pytest.raises(FhirInputError, match="consent withheld for this record"):
        source.patient("p1")


def test_an_error_outcome_inside_a_searchset_surfaces_its_diagnostics(faulty: FaultyServer) -> None:
    bundle = _searchset([_observation("o1")])
    bundle["entry"].append({"resource": _outcome("too-costly", "search too costly"), "search": {"mode": "outcome"}})
    faulty.route("/Observation", Reply(200, bundle))
    with (
        _source(faulty, use_everything=False) as source,
        pytest.raises(FhirSourceUnavailableError, match="search too costly"),
    ):
        list(source.resources("p1", ["Observation"]))


def test_a_search_answering_another_type_is_an_input_error(faulty: FaultyServer) -> None:
    faulty.route("/Condition", Reply(200, _searchset([_observation("o1")])))
    with _source(faulty) as source, pytest.raises(FhirInputError, match="returned a Observation resource, expected"):
        list(source.resources("p1", ["Condition"]))


def test_a_response_over_the_size_cap_is_refused(faulty: FaultyServer) -> None:
    faulty.route("/Observation", Reply(200, _searchset([_observation(f"o{i}") for i in range(200)])))
    with (
        _source(faulty, max_response_bytes=10_000) as source,
        pytest.raises(FhirInputError, match="max_response_bytes=10000") as error,
    ):
        list(source.resources("p1", ["Observation"]))
    assert error.value.reason == "PAYLOAD_TOO_LARGE"


# patients and auth ---------------------------------------------------------------------------------------
def test_an_unknown_patient_is_not_found(faulty: FaultyServer) -> None:
    with _source(faulty) as source, pytest.raises(PatientNotFoundError, match="no Patient/nobody"):
        source.patient("nobody")


def test_a_gone_patient_is_not_found(faulty: FaultyServer) -> None:
    faulty.route("/Patient/p9", Reply(410, _outcome("deleted", "Patient/p9 was deleted")))
    with _source(faulty) as source, pytest.raises(PatientNotFoundError):
        source.patient("p9")


def test_an_id_that_is_not_a_fhir_id_is_refused_before_any_request(faulty: FaultyServer) -> None:
    with _source(faulty) as source, pytest.raises(FhirInputError, match="not a FHIR id"):
        source.patient("../metadata")
    assert faulty.requests == []


def test_401_is_an_auth_error_with_the_diagnostics(faulty: FaultyServer) -> None:
    faulty.route("/Patient/p1", Reply(401, _outcome("login", "token expired"), headers={"WWW-Authenticate": "Bearer"}))
    with (
        _source(faulty, auth=BearerTokenAuth("s3cret-token")) as source,
        pytest.raises(FhirAuthError, match=r"refused our credentials.*token expired") as error,
    ):
        source.patient("p1")
    assert "s3cret-token" not in str(error.value)
    assert faulty.requests[0].headers["authorization"] == "Bearer s3cret-token"
    assert faulty.count("/Patient/p1") == 2  # one retry after invalidating the credential, then give up


def test_credentials_are_not_sent_over_plain_http_to_a_remote_host() -> None:
    with pytest.raises(FhirAuthError, match="plain http"):
        RestSource("http://fhir.example.org/r4", auth=BearerTokenAuth("t"))


@pytest.mark.parametrize("url", ["ftp://host/fhir", "http:///fhir", "https://host/fhir?x=1"])
def test_bad_base_urls_are_refused(url: str) -> None:
    with pytest.raises(FhirInputError, match="FHIR base URL"):
        RestSource(url)


def test_open_source_dispatches_urls_to_rest(faulty: FaultyServer) -> None:
    faulty.route("/Patient/p1", Reply(200, _patient()))
    with open_source(faulty.base_url, timeout_s=2.0) as source:  # type: ignore[attr-defined]
        assert isinstance(source, RestSource)
        assert source.patient("p1")["gender"] == "female"


# paging --------------------------------------------------------------------------------------------------
def test_paging_follows_next_links_and_drops_duplicates(faulty: FaultyServer) -> None:
    base = faulty.base_url

    def pages(request: Request) -> Reply:
        page = int(request.query.get("page", ["0"])[0])
        assert request.query.get("patient", ["p1"]) == ["p1"]
        items = [_observation(f"o{page * 2}"), _observation(f"o{page * 2 + 1}"), _observation("o0")]
        return Reply(200, _searchset(items, f"{base}/Observation?page={page + 1}" if page < 4 else None))

    faulty.route("/Observation", pages)
    with _source(faulty) as source:
        ids = [r["id"] for r in source.resources("p1", ["Observation"])]
    assert sorted(ids) == sorted(f"o{i}" for i in range(10))
    assert faulty.count("/Observation") == 5
    first = next(r for r in faulty.requests if r.path == "/fhir/Observation")
    assert first.query["_count"] == ["200"]
    assert first.headers["prefer"] == "handling=strict"


def test_a_paging_loop_is_detected(faulty: FaultyServer) -> None:
    base = faulty.base_url
    faulty.route("/Observation", lambda r: Reply(200, _searchset([_observation("o1")], f"{base}/Observation?page=1")))
    with (
        _source(faulty) as source,
        pytest.raises(FhirSourceUnavailableError, match="paging loops") as error,
    ):
        list(source.resources("p1", ["Observation"]))
    assert error.value.reason == "FHIR_PAGING_LOOP"
    assert faulty.count("/Observation") == 2


def test_paging_stops_at_max_pages(faulty: FaultyServer) -> None:
    base = faulty.base_url

    def endless(request: Request) -> Reply:
        page = int(request.query.get("page", ["0"])[0])
        return Reply(200, _searchset([_observation(f"o{page}")], f"{base}/Observation?page={page + 1}"))

    faulty.route("/Observation", endless)
    with (
        _source(faulty, max_pages=5) as source,
        pytest.raises(FhirSourceUnavailableError, match="more than max_pages=5") as error,
    ):
        list(source.resources("p1", ["Observation"]))
    assert error.value.reason == "FHIR_TOO_MANY_PAGES"
    assert faulty.count("/Observation") == 5


def test_a_next_link_to_another_host_is_not_followed(faulty: FaultyServer) -> None:
    answer = _searchset([_observation("o1")], "http://collector.example.net/steal?page=2")
    faulty.route("/Observation", Reply(200, answer))
    with (
        _source(faulty, auth=BearerTokenAuth("t0k")) as source,
        pytest.raises(FhirSourceUnavailableError, match=r"another origin.*collector.example.net") as error,
    ):
        list(source.resources("p1", ["Observation"]))
    assert error.value.reason == "FHIR_PAGING_FOREIGN_LINK"


def test_resources_of_other_patients_from_a_lenient_server_are_dropped(faulty: FaultyServer) -> None:
    mixed = [_observation("mine"), _observation("theirs", pid="p2"), {**_observation("nobody"), "subject": {}}]
    faulty.route("/Observation", Reply(200, _searchset(mixed)))
    with _source(faulty) as source:
        assert [r["id"] for r in source.resources("p1", ["Observation"])] == ["mine"]


# capabilities and $everything ----------------------------------------------------------------------------
def _capabilities(*, everything: bool, types: tuple[str, ...]) -> dict[str, Any]:
    resources: list[dict[str, Any]] = [
        {"type": t, "searchParam": [{"name": "patient", "type": "reference"}]} for t in types
    ]
    for resource in resources:
        if resource["type"] == "Patient" and everything:
            resource["operation"] = [
                {"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}
            ]
    return {"resourceType": "CapabilityStatement", "rest": [{"mode": "server", "resource": resources}]}


def test_everything_is_used_when_declared_and_paged(faulty: FaultyServer) -> None:
    base = faulty.base_url
    faulty.route("/metadata", Reply(200, _capabilities(everything=True, types=("Patient", "Observation"))))
    medication = {"resourceType": "Medication", "id": "m1", "code": {"text": "prednisolone 5 mg"}}
    page2 = {"resourceType": "MedicationRequest", "id": "mr1", "subject": {"reference": "Patient/p1"}}

    def everything(request: Request) -> Reply:
        if request.query.get("page"):
            return Reply(200, _searchset([page2, medication]))
        return Reply(200, _searchset([_patient(), _observation("o1")], f"{base}/Patient/p1/$everything?page=2"))

    faulty.route("/Patient/p1/$everything", everything)
    with _source(faulty) as source:
        observations = list(source.resources("p1", ["Observation"]))
        requests = list(source.resources("p1", ["MedicationRequest", "Condition"]))
        assert [r["id"] for r in observations] == ["o1"]
        assert [r["id"] for r in requests] == ["mr1"]
        assert source.resolve("Medication/m1") == medication  # came with $everything: no extra request
        warnings = source.source_warnings("p1")
    assert faulty.count("/Patient/p1/$everything") == 2  # two pages, once: the patient's resources are cached
    assert faulty.count("/Medication/m1") == 0
    assert any("Condition" in w for w in warnings)


def test_searches_are_the_fallback_when_everything_is_refused(faulty: FaultyServer) -> None:
    faulty.route("/metadata", Reply(200, _capabilities(everything=True, types=("Patient", "Observation"))))
    faulty.route("/Patient/p1/$everything", Reply(404, _outcome("not-supported", "Operation $everything unknown")))
    faulty.route("/Observation", Reply(200, _searchset([_observation("o1")])))
    with _source(faulty) as source:
        assert [r["id"] for r in source.resources("p1", ["Observation", "FamilyMemberHistory"])] == ["o1"]
        warnings = source.source_warnings("p1")
    assert faulty.count("/FamilyMemberHistory") == 0
    assert warnings == [
        f"FHIR server {faulty.base_url} cannot search FamilyMemberHistory by patient "
        "(not in its CapabilityStatement): FamilyMemberHistory resources were not read"
    ]


def test_resolve_never_fetches_another_server(faulty: FaultyServer) -> None:
    faulty.route("/Medication/m1", Reply(200, {"resourceType": "Medication", "id": "m1"}))
    with _source(faulty) as source:
        assert source.resolve("http://elsewhere.example.org/fhir/Medication/m1") is None
        assert source.resolve("#contained") is None
        assert source.resolve("Medication/m1") == {"resourceType": "Medication", "id": "m1"}
        assert source.resolve(f"{faulty.base_url}/Medication/m1") == {"resourceType": "Medication", "id": "m1"}
        assert source.resolve("Medication/absent") is None
    assert faulty.count("/Medication/m1") == 1


def test_the_cli_timeout_bounds_each_request(faulty: FaultyServer, capsys: pytest.CaptureFixture[str]) -> None:
    from server.cli.main import main

    faulty.route("/Patient/p1", Reply(200, _patient(), delay_s=2.0))
    started = time.monotonic()
    argv = ["clinical", faulty.base_url, "--patient", "p1", "--index-date", "2024-01-01", "--timeout", "0.3"]
    assert main(argv) == 1
    assert "timeout_s=0.3 s" in capsys.readouterr().err
    assert time.monotonic() - started < 1.9
