"""Auth against a real FHIR server that requires it: sekmet-fhir with static bearer tokens and SMART Backend
Services (its token endpoint verifies our RS384/ES384 client assertions against the JWKS registered here).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from clinical.sources.auth import (
    CLIENT_ASSERTION_TYPE,
    BearerTokenAuth,
    FhirAuthError,
    SmartBackendAuth,
    load_private_key,
    public_jwk,
)
from clinical.sources.rest import RestSource
from tests.fhir_server import SekmetAuth, SekmetServer, SekmetSmartClient, start_sekmet

pytestmark = pytest.mark.integration

STATIC_TOKEN = "static-t0ken-for-tests"
TOKEN_LIFETIME_S = 60


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP384R1()),
        "other_rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }


@pytest.fixture(scope="module")
def protected(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Any]) -> Iterator[SekmetServer]:
    def jwks(key: Any, alg: Any) -> dict[str, Any]:
        return {"keys": [public_jwk(key, alg=alg)]}

    auth = SekmetAuth(
        bearer_tokens=(STATIC_TOKEN,),
        smart_clients=(
            SekmetSmartClient("osteorisk-rs", jwks(keys["rsa"], "RS384")),
            SekmetSmartClient("osteorisk-es", jwks(keys["ec"], "ES384")),
            SekmetSmartClient("observations-only", jwks(keys["rsa"], "RS384"), scopes="system/Observation.read"),
        ),
        token_lifetime_s=TOKEN_LIFETIME_S,
    )
    server = start_sekmet(tmp_path_factory.mktemp("sekmet-auth"), auth=auth)
    try:
        yield server
    finally:
        server.stop()


def _weighed_patient(pid: str, kg: float, *, effective: str | None = None, **patient: str) -> dict[str, Any]:
    """A collection Bundle of one Patient and one body weight Observation (dated when `effective` is given)."""
    weight: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"{pid}-weight",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": f"urn:uuid:{pid}"},
        "valueQuantity": {"value": kg, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    }
    if effective:
        weight["effectiveDateTime"] = effective
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": f"urn:uuid:{pid}", "resource": {"resourceType": "Patient", "id": pid, **patient}},
            {"fullUrl": f"urn:uuid:{pid}-weight", "resource": weight},
        ],
    }


@pytest.fixture(scope="module")
def patient_id(protected: SekmetServer) -> str:
    return protected.load_bundle(_weighed_patient("p", 61.5, gender="female")).patient_id


def _read_everything(source: RestSource, patient_id: str) -> list[dict[str, Any]]:
    assert source.patient(patient_id)["gender"] == "female"
    return list(source.resources(patient_id, ["Observation"]))


@pytest.mark.parametrize(
    ("client_id", "key_name", "alg"), [("osteorisk-rs", "rsa", "RS384"), ("osteorisk-es", "ec", "ES384")]
)
def test_smart_backend_services_reads_and_caches_its_token(
    protected: SekmetServer, patient_id: str, keys: dict[str, Any], client_id: str, key_name: str, alg: Any
) -> None:
    auth = SmartBackendAuth(client_id=client_id, private_key=_pem(keys[key_name]), alg=alg)
    with RestSource(protected.base_url, auth=auth) as source:
        observations = _read_everything(source, patient_id)
        source.resolve(f"Observation/{observations[0]['id']}")
        assert source.patient(patient_id)["id"] == patient_id
    assert [o["valueQuantity"]["value"] for o in observations] == [61.5]
    assert auth.tokens_issued == 1  # discovery once, one token for every request
    assert auth.token_endpoint(source._client, protected.base_url) == protected.token_url


def test_an_expired_token_is_replaced(protected: SekmetServer, patient_id: str, keys: dict[str, Any]) -> None:
    auth = SmartBackendAuth(
        client_id="osteorisk-rs", private_key=_pem(keys["rsa"]), expiry_margin_s=TOKEN_LIFETIME_S - 0.3
    )
    with RestSource(protected.base_url, auth=auth) as source:
        source.patient(patient_id)
        time.sleep(0.4)
        source.patient(patient_id)
    assert auth.tokens_issued == 2


def test_the_client_assertion_follows_smart_backend_services(keys: dict[str, Any]) -> None:
    auth = SmartBackendAuth(client_id="osteorisk-rs", private_key=_pem(keys["rsa"]), token_url="https://as/token")
    assertion = auth.client_assertion("https://as/token")
    header = jwt.get_unverified_header(assertion)
    claims = jwt.decode(assertion, keys["rsa"].public_key(), algorithms=["RS384"], audience="https://as/token")
    assert header["alg"] == "RS384" and header["typ"] == "JWT"
    assert header["kid"] == public_jwk(keys["rsa"], alg="RS384")["kid"]
    assert claims["iss"] == claims["sub"] == "osteorisk-rs"
    assert 0 < claims["exp"] - time.time() <= 300
    assert (
        claims["jti"]
        != jwt.decode(auth.client_assertion("https://as/token"), options={"verify_signature": False})["jti"]
    )
    assert CLIENT_ASSERTION_TYPE == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def test_an_unknown_client_is_refused_with_the_oauth_error(protected: SekmetServer, keys: dict[str, Any]) -> None:
    auth = SmartBackendAuth(client_id="nobody", private_key=_pem(keys["rsa"]))
    with RestSource(protected.base_url, auth=auth) as source, pytest.raises(FhirAuthError, match="invalid_client"):
        source.patient("p")


def test_an_unregistered_key_is_refused(protected: SekmetServer, keys: dict[str, Any]) -> None:
    auth = SmartBackendAuth(client_id="osteorisk-rs", private_key=_pem(keys["other_rsa"]))
    with (
        RestSource(protected.base_url, auth=auth) as source,
        pytest.raises(FhirAuthError, match=r"refused client 'osteorisk-rs' \(HTTP 401: invalid_client"),
    ):
        source.patient("p")


def test_a_scope_without_patient_access_is_forbidden(
    protected: SekmetServer, patient_id: str, keys: dict[str, Any]
) -> None:
    auth = SmartBackendAuth(
        client_id="observations-only", private_key=_pem(keys["rsa"]), scope="system/Observation.read"
    )
    with (
        RestSource(protected.base_url, auth=auth) as source,
        pytest.raises(FhirAuthError, match=r"HTTP 403.*do not permit"),
    ):
        source.patient(patient_id)


def test_static_bearer_tokens(protected: SekmetServer, patient_id: str, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(STATIC_TOKEN + "\n")
    with RestSource(protected.base_url, auth=BearerTokenAuth.from_file(token_file)) as source:
        assert len(_read_everything(source, patient_id)) == 1
    with (
        RestSource(protected.base_url, auth=BearerTokenAuth("wrong-token")) as source,
        pytest.raises(FhirAuthError, match="HTTP 401") as error,
    ):
        source.patient(patient_id)
    assert "wrong-token" not in str(error.value)


def test_no_credentials_on_a_protected_server(protected: SekmetServer, patient_id: str) -> None:
    with (
        RestSource(protected.base_url) as source,
        pytest.raises(FhirAuthError, match="Authentication required"),
    ):
        source.patient(patient_id)


# configuration checked at construction ---------------------------------------------------------------------
def test_the_key_must_fit_the_algorithm(keys: dict[str, Any]) -> None:
    with pytest.raises(FhirAuthError, match="RS384 needs an RSA"):
        SmartBackendAuth(client_id="c", private_key=_pem(keys["ec"]), alg="RS384")
    with pytest.raises(FhirAuthError, match="ES384 needs an EC private key on curve P-384"):
        SmartBackendAuth(client_id="c", private_key=_pem(keys["rsa"]), alg="ES384")
    with pytest.raises(FhirAuthError, match="ES384 needs an EC"):
        SmartBackendAuth(client_id="c", private_key=_pem(ec.generate_private_key(ec.SECP256R1())), alg="ES384")
    with pytest.raises(FhirAuthError, match="RS384 or ES384, not 'HS256'"):
        SmartBackendAuth(client_id="c", private_key=_pem(keys["rsa"]), alg="HS256")  # type: ignore[arg-type]


def test_short_rsa_keys_and_non_keys_are_refused(tmp_path: Path) -> None:
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(FhirAuthError, match="1024 bits is too short"):
        SmartBackendAuth(client_id="c", private_key=_pem(short))
    with pytest.raises(FhirAuthError, match="not an unencrypted PEM private key"):
        SmartBackendAuth(client_id="c", private_key=b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    with pytest.raises(FhirAuthError, match="cannot read the private key file"):
        SmartBackendAuth(client_id="c", private_key=tmp_path / "absent.pem")
    with pytest.raises(FhirAuthError, match="client_id must not be empty"):
        SmartBackendAuth(client_id=" ", private_key=b"")
    with pytest.raises(FhirAuthError, match="assertion_lifetime_s"):
        SmartBackendAuth(client_id="c", private_key=b"", assertion_lifetime_s=600)


def test_a_private_jwk_file_is_a_key(tmp_path: Path, keys: dict[str, Any]) -> None:
    from jwt.algorithms import ECAlgorithm

    private_jwk = json.loads(ECAlgorithm.to_jwk(keys["ec"]))
    path = tmp_path / "client.jwks.json"
    path.write_text(json.dumps({"keys": [{**private_jwk, "alg": "ES384"}]}))
    loaded = load_private_key(path)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    assert public_jwk(loaded, alg="ES384") == public_jwk(keys["ec"], alg="ES384")
    public_only = tmp_path / "public.json"
    public_only.write_text(json.dumps({"keys": [public_jwk(keys["ec"], alg="ES384")]}))
    with pytest.raises(FhirAuthError, match="no RSA or EC private key"):
        load_private_key(public_only)


def test_discovery_failure_names_the_fix(keys: dict[str, Any]) -> None:
    from tests.clinical.test_rest_faults import FaultyServer, Reply

    server = FaultyServer()
    server.thread.start()
    try:
        server.route("/.well-known/smart-configuration", Reply(404, {}))
        server.route("/metadata", Reply(200, {"resourceType": "CapabilityStatement", "rest": [{"mode": "server"}]}))
        auth = SmartBackendAuth(client_id="c", private_key=_pem(keys["rsa"]))
        with (
            RestSource(server.base_url, auth=auth) as source,
            pytest.raises(FhirAuthError, match=r"no SMART token endpoint.*give token_url"),
        ):
            source.patient("p")
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def test_auth_from_settings_and_environment(
    protected: SekmetServer, patient_id: str, keys: dict[str, Any], tmp_path: Path
) -> None:
    from clinical.sources.auth import AUTH_ENVIRONMENT, NoAuth, auth_from_env, make_auth

    key_file = tmp_path / "client.pem"
    key_file.write_bytes(_pem(keys["ec"]))
    environ = {
        AUTH_ENVIRONMENT["smart_client_id"]: "osteorisk-es",
        AUTH_ENVIRONMENT["smart_private_key"]: str(key_file),
        AUTH_ENVIRONMENT["smart_alg"]: "ES384",
    }
    auth = auth_from_env(environ)
    assert isinstance(auth, SmartBackendAuth) and auth.alg == "ES384"
    with RestSource(protected.base_url, auth=auth) as source:
        assert source.patient(patient_id)["id"] == patient_id
    assert isinstance(auth_from_env({}), NoAuth)
    token_file = tmp_path / "token"
    token_file.write_text(STATIC_TOKEN)
    assert isinstance(make_auth(token_file=token_file), BearerTokenAuth)
    with pytest.raises(FhirAuthError, match="private key file as well"):
        make_auth(smart_client_id="c")
    with pytest.raises(FhirAuthError, match="not both"):
        make_auth(smart_client_id="c", smart_private_key=key_file, token_file=token_file)
    with pytest.raises(FhirAuthError, match="without a SMART client id"):
        make_auth(smart_private_key=key_file)
    with pytest.raises(FhirAuthError, match="not 'PS256'"):
        make_auth(smart_client_id="c", smart_private_key=key_file, smart_alg="PS256")


# the command line ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dated_patient(protected: SekmetServer) -> str:
    """A patient with a dated weight, so that the CLI's record has an observed value to check."""
    bundle = _weighed_patient("cli-p", 80.5, effective="2023-03-01", gender="male", birthDate="1950-05-05")
    return protected.load_bundle(bundle).patient_id


def _cli(server: SekmetServer, patient: str, *options: str) -> list[str]:
    return ["clinical", server.base_url, "--patient", patient, "--index-date", "2024-01-01", "--json", *options]


def _weight_from(output: str) -> float:
    return float(json.loads(output)["variables"]["weight_kg"]["value"])


def test_cli_reads_a_protected_server_with_a_token_file(
    protected: SekmetServer, dated_patient: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from server.cli.main import main

    token_file = tmp_path / "token"
    token_file.write_text(STATIC_TOKEN + "\n")
    assert main(_cli(protected, dated_patient, "--token-file", str(token_file), "--timeout", "20")) == 0
    assert _weight_from(capsys.readouterr().out) == 80.5
    token_file.write_text("not-the-token\n")
    assert main(_cli(protected, dated_patient, "--token-file", str(token_file))) == 1
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "not-the-token" not in err and len(err.strip().splitlines()) == 1


def test_cli_reads_a_protected_server_with_smart_backend_services(
    protected: SekmetServer,
    dated_patient: str,
    keys: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from server.cli.main import main

    key_file = tmp_path / "client.pem"
    key_file.write_bytes(_pem(keys["ec"]))
    smart = ["--smart-client-id", "osteorisk-es", "--smart-private-key", str(key_file), "--smart-alg", "ES384"]
    assert main(_cli(protected, dated_patient, *smart)) == 0  # token endpoint discovered
    assert _weight_from(capsys.readouterr().out) == 80.5
    explicit = [*smart, "--smart-token-url", protected.token_url, "--smart-scope", "system/*.read"]
    assert main(_cli(protected, dated_patient, *explicit)) == 0
    assert _weight_from(capsys.readouterr().out) == 80.5
    assert main(_cli(protected, dated_patient, "--smart-client-id", "osteorisk-es")) == 1
    assert "private key file as well" in capsys.readouterr().err
    assert main(_cli(protected, dated_patient, "--smart-token-url", protected.token_url)) == 1
    assert "without a SMART client id" in capsys.readouterr().err


def test_cli_takes_credentials_from_the_environment_when_no_option_is_given(
    protected: SekmetServer,
    dated_patient: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from clinical.sources.auth import AUTH_ENVIRONMENT
    from server.cli.main import main

    assert main(_cli(protected, dated_patient)) == 1
    assert "Authentication required" in capsys.readouterr().err
    token_file = tmp_path / "token"
    token_file.write_text(STATIC_TOKEN)
    monkeypatch.setenv(AUTH_ENVIRONMENT["token_file"], str(token_file))
    assert main(_cli(protected, dated_patient)) == 0
    assert _weight_from(capsys.readouterr().out) == 80.5
