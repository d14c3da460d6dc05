"""TLS, mutual TLS, bearer tokens (token file and JWT/JWKS) with a scope per method, against a real server."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pydantic import ValidationError

from server.app import RunningServer, start
from server.config import AuthConfig, ConfigError, ServerConfig, TlsConfig, load_config
from server.generated.osteorisk.v1 import fracture_risk_service_pb2 as pb
from server.generated.osteorisk.v1 import fracture_risk_service_pb2_grpc as pb_grpc
from server.security import Authenticator
from tests.certs import make_pki
from tests.server.conftest import wait_serving


@pytest.fixture()
def token_file(tmp_path: Path) -> Path:
    digest = hashlib.sha256(b"hashed-secret").hexdigest()
    path = tmp_path / "tokens"
    path.write_text(
        "# token  caller  scopes\n"
        "reader-secret  dashboard  osteorisk.model.read\n"
        "assessor-secret  ehr-gateway  osteorisk.assess,osteorisk.model.read\n"
        f"sha256:{digest}  batch-job  *\n"
    )
    return path


def _serve(config: ServerConfig) -> Iterator[RunningServer]:
    running = start(config)
    try:
        yield running
    finally:
        running.stop(0)


def _model_info_code(channel: grpc.Channel, token: str | None) -> grpc.StatusCode:
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    try:
        pb_grpc.FractureRiskServiceStub(channel).GetModelInfo(pb.GetModelInfoRequest(), metadata=metadata, timeout=10)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def _past_auth(code: grpc.StatusCode) -> bool:
    return code not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def test_token_file_authentication_and_scopes(token_file: Path) -> None:
    for running in _serve(ServerConfig(port=0, auth=AuthConfig(token_file=token_file))):
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            assert _model_info_code(channel, None) == grpc.StatusCode.UNAUTHENTICATED
            assert _model_info_code(channel, "wrong") == grpc.StatusCode.UNAUTHENTICATED
            assert _past_auth(_model_info_code(channel, "reader-secret"))
            assert _past_auth(_model_info_code(channel, "hashed-secret"))
            stub = pb_grpc.FractureRiskServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.Assess(pb.AssessRequest(), metadata=(("authorization", "Bearer reader-secret"),), timeout=10)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "osteorisk.assess" in (err.value.details() or "")
            # health stays open for orchestrators
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_each_call_is_judged_by_its_own_token(token_file: Path) -> None:
    """Handlers are built once per method: a good token on one call must not let the next call through."""
    for running in _serve(ServerConfig(port=0, auth=AuthConfig(token_file=token_file))):
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            for token, allowed in [("reader-secret", True), ("wrong", False), (None, False), ("reader-secret", True)]:
                assert _past_auth(_model_info_code(channel, token)) is allowed, token


def test_streaming_method_needs_its_scope_too(token_file: Path) -> None:
    for running in _serve(ServerConfig(port=0, auth=AuthConfig(token_file=token_file))):
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.FractureRiskServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                list(stub.AssessStream(iter([pb.AssessRequest()]), timeout=10))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _jwks_and_key(tmp_path: Path) -> tuple[Path, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "use": "sig", "alg": "RS256"})
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return path, key


def _token(key: rsa.RSAPrivateKey, **claims: object) -> str:
    body = {"sub": "ehr-1", "aud": "osteorisk", "iss": "https://idp.example", "exp": int(time.time()) + 300, **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})


def test_jwt_verified_against_local_jwks(tmp_path: Path) -> None:
    jwks, key = _jwks_and_key(tmp_path)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # its key is not in the JWKS
    auth = AuthConfig(jwks_file=jwks, jwt_audience="osteorisk", jwt_issuer="https://idp.example")
    for running in _serve(ServerConfig(port=0, auth=auth)):
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            assert _past_auth(_model_info_code(channel, _token(key, scope="osteorisk.model.read")))
            assert _past_auth(_model_info_code(channel, _token(key, scp=["osteorisk.model.read"])))
            assert _model_info_code(channel, _token(key, scope="osteorisk.assess")) == grpc.StatusCode.PERMISSION_DENIED
            expired = _token(key, scope="osteorisk.model.read", exp=int(time.time()) - 60)
            assert _model_info_code(channel, expired) == grpc.StatusCode.UNAUTHENTICATED
            wrong_audience = _token(key, scope="osteorisk.model.read", aud="someone-else")
            assert _model_info_code(channel, wrong_audience) == grpc.StatusCode.UNAUTHENTICATED
            forged = _token(stranger, scope="osteorisk.model.read")
            assert _model_info_code(channel, forged) == grpc.StatusCode.UNAUTHENTICATED
            unsigned = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, "k" * 32, algorithm="HS256")
            assert _model_info_code(channel, unsigned) == grpc.StatusCode.UNAUTHENTICATED


def test_bad_token_files_are_refused_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "tokens"
    bad.write_text("only-two fields\n")
    with pytest.raises(ConfigError, match="tokens:1"):
        Authenticator(AuthConfig(token_file=bad))
    bad.write_text("secret caller osteorisk.everything\n")
    with pytest.raises(ConfigError, match="unknown scopes"):
        Authenticator(AuthConfig(token_file=bad))
    with pytest.raises(ConfigError, match="cannot read"):
        Authenticator(AuthConfig(token_file=tmp_path / "absent"))


def _health(channel: grpc.Channel) -> int:
    """SERVING once the model has loaded; an RpcError at once when the channel cannot connect."""
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    return wait_serving(channel, timeout_s=30) if status != health_pb2.HealthCheckResponse.SERVING else int(status)


def test_tls_and_mutual_tls(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    tls = TlsConfig(cert_file=pki.server_cert, key_file=pki.server_key)
    for running in _serve(ServerConfig(port=0, tls=tls)):
        target = f"localhost:{running.port}"
        trusted = grpc.ssl_channel_credentials(root_certificates=pki.ca_cert.read_bytes())
        with grpc.secure_channel(target, trusted) as channel:
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
        untrusted = grpc.ssl_channel_credentials(root_certificates=pki.other_ca_cert.read_bytes())
        with grpc.secure_channel(target, untrusted) as channel, pytest.raises(grpc.RpcError):
            _health(channel)
        with grpc.insecure_channel(target) as channel, pytest.raises(grpc.RpcError):
            _health(channel)

    mtls = TlsConfig(cert_file=pki.server_cert, key_file=pki.server_key, client_ca_file=pki.ca_cert)
    for running in _serve(ServerConfig(port=0, tls=mtls)):
        target = f"localhost:{running.port}"
        without_cert = grpc.ssl_channel_credentials(root_certificates=pki.ca_cert.read_bytes())
        with grpc.secure_channel(target, without_cert) as channel, pytest.raises(grpc.RpcError):
            _health(channel)
        with_cert = grpc.ssl_channel_credentials(
            root_certificates=pki.ca_cert.read_bytes(),
            private_key=pki.client_key.read_bytes(),
            certificate_chain=pki.client_cert.read_bytes(),
        )
        with grpc.secure_channel(target, with_cert) as channel:
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING


def test_cli_client_over_tls_with_a_token(tmp_path: Path, token_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from server.cli.main import main

    pki = make_pki(tmp_path / "pki")
    config = ServerConfig(
        port=0,
        tls=TlsConfig(cert_file=pki.server_cert, key_file=pki.server_key),
        auth=AuthConfig(token_file=token_file),
    )
    secret = tmp_path / "token"
    secret.write_text("assessor-secret\n")
    for running in _serve(config):
        wait_serving(
            grpc.secure_channel(f"localhost:{running.port}", grpc.ssl_channel_credentials(pki.ca_cert.read_bytes()))
        )
        base = [
            "assess",
            "--server",
            f"localhost:{running.port}",
            "--tls-ca",
            str(pki.ca_cert),
            "--patient",
            "p9",
            "--var",
            "age_years=70",
            "--var",
            "sex=female",
            "--index-date",
            "2024-01-01",
            "--json",
        ]
        assert main([*base, "--token-file", str(secret)]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["patient_id"] == "p9"
        assert main(base) == 1  # no token
        assert "UNAUTHENTICATED" in capsys.readouterr().err


def test_authentication_cannot_be_switched_off_by_accident(tmp_path: Path) -> None:
    revoked = tmp_path / "tokens"
    revoked.write_text("# old-secret  ehr  osteorisk.assess\n")
    with pytest.raises(ConfigError, match="no usable key"):
        Authenticator(AuthConfig(token_file=revoked))
    with pytest.raises(ConfigError, match="not loopback"):
        load_config(None, environ={"OSTEORISK_HOST": "0.0.0.0"})
    open_config = tmp_path / "open.toml"
    open_config.write_text('host = "0.0.0.0"\n[auth]\nallow_unauthenticated = true\n')
    assert load_config(open_config, environ={}).auth.allow_unauthenticated
    jwks, _ = _jwks_and_key(tmp_path)
    with pytest.raises(ValidationError, match="jwt_audience"):
        AuthConfig(jwks_file=jwks)


def test_callers_without_a_token_cannot_hold_the_threads(token_file: Path) -> None:
    """Calls that never send their request are refused from their metadata, before the body is awaited."""
    for running in _serve(ServerConfig(port=0, max_workers=2, auth=AuthConfig(token_file=token_file))):
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            assert wait_serving(channel) == health_pb2.HealthCheckResponse.SERVING
            hold = channel.stream_unary("/osteorisk.v1.FractureRiskService/Assess")
            never: threading.Event = threading.Event()

            def silent(never: threading.Event = never) -> Iterator[bytes]:
                never.wait(30)
                yield b""

            calls = [hold.future(silent(), timeout=30) for _ in range(4)]
            try:
                for call in calls:
                    with pytest.raises(grpc.RpcError) as err:
                        call.result(timeout=10)
                    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
                health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert health.status == health_pb2.HealthCheckResponse.SERVING
            finally:
                never.set()
