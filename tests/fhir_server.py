"""A real FHIR R4 server for integration tests: sekmet-fhir (PyPI 0.1.1) on 127.0.0.1.

sekmet-fhir is a small FHIR R4 server over SQLite. It lives in its own virtual environment (`.venv-fhir`,
built by `make fhir-venv`, which `make test` runs first) because it pins python-dateutil differently; the
tests talk to it over HTTP only, never import it.

Reuse from any test module:

    from tests.fhir_server import SekmetServer

    def test_something(sekmet_fhir: SekmetServer) -> None:       # session-scoped, no auth
        loaded = sekmet_fhir.load_bundle(path_or_dict)            # POST a transaction; ids are reassigned
        new_id = loaded.patient_id                                # the server's id of the bundle's Patient
        loaded.server_reference("Observation/<old id>")           # -> "Observation/<new id>"
        httpx.get(f"{sekmet_fhir.base_url}/Patient/{new_id}")

or start one with its own configuration (e.g. auth) for a module:

    with start_sekmet(tmp_dir, auth=SekmetAuth(bearer_tokens=("t0k3n",), smart_clients=(...,))) as server:
        ...

What the server does (read from its source, `sekmet/fhir/*.py`): transactions with `urn:uuid:` rewriting
and *new* server-assigned ids for POST entries; searches by `patient=` with `_count`/`_offset` paging and
`next` links; `Patient/{id}/$everything` (one unpaged searchset; only resources whose references it indexes:
not FamilyMemberHistory, for which it has no search parameters); SMART Backend Services (private-key JWT
client assertions verified against registered JWKS, `/auth/token`, `.well-known/smart-configuration`) and
static bearer tokens. Inbound validation and its workflow simulator (which answers MedicationRequests with
new resources) are switched off here: the tests load data, they do not exercise hospital workflows.

Environment: `OSTEORISK_SEKMET` overrides the path of the `sekmet` executable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.net import free_port, stop_process

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SEKMET = REPO_ROOT / ".venv-fhir" / "bin" / "sekmet"
STARTUP_TIMEOUT_S = 60.0


class SekmetUnavailableError(RuntimeError):
    """sekmet-fhir is not installed or did not start; the message says why and how to fix it."""


@dataclass(frozen=True)
class SekmetSmartClient:
    """A SMART Backend Services client registered with the server: its id, public JWKS and allowed scopes."""

    client_id: str
    jwks: Mapping[str, Any]
    scopes: str = "system/*.read"


@dataclass(frozen=True)
class SekmetAuth:
    """Inbound auth of a started server. Empty (the default) = no auth."""

    bearer_tokens: Sequence[str] = ()
    smart_clients: Sequence[SekmetSmartClient] = ()
    token_lifetime_s: int = 3600

    @property
    def enabled(self) -> bool:
        return bool(self.bearer_tokens or self.smart_clients)


@dataclass(frozen=True)
class LoadedBundle:
    """What a transaction did: old reference ("Type/id" or fullUrl) -> the server's "Type/new id"."""

    references: Mapping[str, str]
    patient_ids: tuple[str, ...]

    @property
    def patient_id(self) -> str:
        """The server id of the bundle's only Patient."""
        if len(self.patient_ids) != 1:
            raise ValueError(f"the bundle held {len(self.patient_ids)} Patients, not one")
        return self.patient_ids[0]

    def server_reference(self, reference: str) -> str:
        """The server's reference for a reference used in the bundle (unchanged when it was not reassigned)."""
        return self.references.get(reference, reference)

    def bundle_reference(self, server_reference: str) -> str:
        """The inverse: the bundle's "Type/id" for a server reference."""
        inverse = {new: old for old, new in self.references.items() if not old.startswith(("urn:", "http"))}
        return inverse.get(server_reference, server_reference)


@dataclass
class SekmetServer:
    """A running sekmet-fhir process. `base_url` is the FHIR base (".../fhir"), `root_url` the server root."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    auth: SekmetAuth = field(default_factory=SekmetAuth)
    log_path: Path = field(default_factory=lambda: Path(os.devnull))

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/fhir"

    @property
    def token_url(self) -> str:
        return f"{self.root_url}/auth/token"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
        if self.auth.bearer_tokens:
            headers["Authorization"] = f"Bearer {self.auth.bearer_tokens[0]}"
        return headers

    def load_bundle(self, bundle: Mapping[str, Any] | Path) -> LoadedBundle:
        """POST a Bundle as a transaction (a collection is turned into one) and map its ids to the new ones."""
        data: dict[str, Any] = json.loads(bundle.read_bytes()) if isinstance(bundle, Path) else dict(bundle)
        transaction = as_transaction(data)
        response = httpx.post(self.base_url, json=transaction, headers=self._headers(), timeout=120)
        if response.status_code != 200:
            raise SekmetUnavailableError(f"transaction refused ({response.status_code}): {response.text[:1000]}")
        answer = response.json()
        return _map_ids(transaction["entry"], answer.get("entry", []))

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        stop_process(self.process)


def as_transaction(bundle: Mapping[str, Any]) -> dict[str, Any]:
    """A transaction Bundle with the same resources: POST entries for a collection/searchset."""
    if bundle.get("resourceType") != "Bundle":
        raise ValueError(f"expected a Bundle, got {bundle.get('resourceType')!r}")
    if bundle.get("type") == "transaction":
        return dict(bundle)
    entries = []
    for entry in bundle.get("entry", []):
        resource = entry.get("resource")
        if not isinstance(resource, dict) or resource.get("resourceType") == "OperationOutcome":
            continue
        full_url = entry.get("fullUrl") or f"{resource['resourceType']}/{resource.get('id')}"
        entries.append(
            {"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _map_ids(requests: list[dict[str, Any]], responses: list[dict[str, Any]]) -> LoadedBundle:
    if len(requests) != len(responses):
        raise SekmetUnavailableError(f"transaction answered {len(responses)} entries for {len(requests)} requests")
    references: dict[str, str] = {}
    patients: list[str] = []
    for request, response in zip(requests, responses, strict=True):
        resource = request.get("resource") or {}
        created = response.get("resource") or {}
        resource_type, new_id = created.get("resourceType"), created.get("id")
        if not resource_type or not new_id:
            location = (response.get("response") or {}).get("location", "")
            parts = location.split("/_history")[0].rstrip("/").split("/")
            resource_type, new_id = parts[-2], parts[-1]
        new_reference = f"{resource_type}/{new_id}"
        if request.get("fullUrl"):
            references[request["fullUrl"]] = new_reference
        if resource.get("id"):
            references[f"{resource['resourceType']}/{resource['id']}"] = new_reference
        if resource_type == "Patient":
            patients.append(new_id)
    return LoadedBundle(references=references, patient_ids=tuple(patients))


def sekmet_executable() -> Path:
    """The `sekmet` command of the FHIR venv; `SekmetUnavailableError` naming the fix when it is missing."""
    path = Path(os.environ.get("OSTEORISK_SEKMET", DEFAULT_SEKMET))
    if not path.is_file() or not os.access(path, os.X_OK):
        raise SekmetUnavailableError(
            f"sekmet-fhir is not installed at {path}: run `make fhir-venv` (or set OSTEORISK_SEKMET to its `sekmet`)"
        )
    return path


def _settings(workdir: Path, port: int, auth: SekmetAuth) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "base_url": f"http://127.0.0.1:{port}/fhir",
        "data_dir": str(workdir / "data"),
        "db_path": str(workdir / "data" / "sekmet.db"),
        "own_private_key_path": str(workdir / "keys" / "sekmet_private.pem"),
        "validation": {"inbound": "off"},
        "simulator": {"enabled": False},
        "log_inbound": False,
    }
    if auth.enabled:
        types = [*(["bearer"] if auth.bearer_tokens else []), *(["smart"] if auth.smart_clients else [])]
        settings["server_auth"] = {
            "types": types,
            "tokens": list(auth.bearer_tokens),
            "smart_clients": [
                {"client_id": c.client_id, "jwks": dict(c.jwks), "scopes": c.scopes} for c in auth.smart_clients
            ],
            "token_lifetime": auth.token_lifetime_s,
        }
    return settings


def _wait_ready(server: SekmetServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    url = f"{server.base_url}/metadata"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            code = server.process.returncode
            raise SekmetUnavailableError(f"sekmet-fhir exited with code {code}:\n{server.log_tail()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SekmetUnavailableError(f"sekmet-fhir did not answer {url} within {timeout_s:.0f} s:\n{server.log_tail()}")


def start_sekmet(
    workdir: Path, *, auth: SekmetAuth | None = None, timeout_s: float = STARTUP_TIMEOUT_S, attempts: int = 3
) -> SekmetServer:
    """Start sekmet-fhir on a free 127.0.0.1 port with a fresh SQLite database under `workdir`; wait until ready.

    The caller stops it (`server.stop()`), or use `running_sekmet`. Raises `SekmetUnavailableError` with the
    server's log when it does not come up.
    """
    executable = sekmet_executable()
    auth = auth or SekmetAuth()
    last_error: SekmetUnavailableError | None = None
    for attempt in range(attempts):
        run_dir = workdir / f"sekmet-{attempt}"
        run_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        config = run_dir / "settings.yaml"
        config.write_text(json.dumps(_settings(run_dir, port, auth), indent=2))  # JSON is valid YAML
        log_path = run_dir / "sekmet.log"
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env["SEKMET_CONFIG"] = str(config)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(executable), "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
                cwd=run_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        server = SekmetServer(process=process, port=port, workdir=run_dir, auth=auth, log_path=log_path)
        try:
            _wait_ready(server, timeout_s)
            return server
        except SekmetUnavailableError as exc:
            server.stop()
            last_error = exc
            if "address already in use" not in server.log_tail().lower():
                break
    assert last_error is not None
    raise last_error


@contextmanager
def running_sekmet(workdir: Path | None = None, *, auth: SekmetAuth | None = None) -> Iterator[SekmetServer]:
    """`start_sekmet` as a context manager; a temporary working directory unless one is given."""
    own = workdir is None
    directory = Path(tempfile.mkdtemp(prefix="sekmet-")) if workdir is None else workdir
    server = start_sekmet(directory, auth=auth)
    try:
        yield server
    finally:
        server.stop()
        if own:
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def sekmet_fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SekmetServer]:
    """One sekmet-fhir server (no auth) for the whole test session. Load data with `load_bundle`."""
    try:
        server = start_sekmet(tmp_path_factory.mktemp("sekmet"))
    except SekmetUnavailableError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()
