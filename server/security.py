"""Authentication and authorisation of RPCs: bearer tokens (a static token file or JWTs verified against a
local JWKS), a scope per method, and the caller's identity for the audit log.

Token file format, one token per line (blank lines and `#` comments ignored):
    <token or sha256:HEX-DIGEST-OF-TOKEN>  <caller id>  <scope>[,<scope>...]
Store `sha256:` digests rather than tokens where you can (`printf %s TOKEN | sha256sum`).

JWTs: signature checked against the keys of a local JWKS file (never fetched from a URL taken from the
token), `exp`/`nbf` enforced, `aud`/`iss` when configured; scopes from the `scope` claim (space separated,
RFC 8693 / SMART) or `scp` (list); caller id from `sub`.

Health checking and reflection stay open (orchestrators probe them without credentials); every
`osteorisk.v1` method needs a token with its scope.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import jwt

from server.config import AuthConfig, ConfigError

#: The scope each method needs. Anything not listed under /osteorisk.v1. is open.
METHOD_SCOPES: Mapping[str, str] = {
    "/osteorisk.v1.FractureRiskService/Assess": "osteorisk.assess",
    "/osteorisk.v1.FractureRiskService/AssessStream": "osteorisk.assess",
    "/osteorisk.v1.FractureRiskService/ExtractBoneFeatures": "osteorisk.features",
    "/osteorisk.v1.FractureRiskService/GetModelInfo": "osteorisk.model.read",
}
ALL_SCOPES = frozenset(METHOD_SCOPES.values())
_PROTECTED_PREFIX = "/osteorisk.v1."
_JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "PS384", "EdDSA")


@dataclass(frozen=True)
class Caller:
    """Who made the request: an id for the audit log (never logged with PHI elsewhere) and the scopes granted."""

    id: str
    scopes: frozenset[str]
    method: str = "anonymous"


ANONYMOUS = Caller(id="anonymous", scopes=ALL_SCOPES)
_current_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("osteorisk_caller", default=ANONYMOUS)


def current_caller() -> Caller:
    """The caller of the RPC being served on this thread."""
    return _current_caller.get()


class AuthError(Exception):
    """Credentials missing or invalid (UNAUTHENTICATED)."""


@dataclass(frozen=True)
class _TokenEntry:
    digest: bytes
    caller: Caller


class Authenticator:
    """Checks a bearer token against the configured token file and/or JWKS; thread-safe, immutable."""

    def __init__(self, config: AuthConfig) -> None:
        self._tokens = _read_token_file(config.token_file) if config.token_file else ()
        self._jwks = _read_jwks(config.jwks_file) if config.jwks_file else None
        self._audience = config.jwt_audience
        self._issuer = config.jwt_issuer
        self.enabled = config.enabled
        if self.enabled and not self._tokens and (self._jwks is None or not self._jwks.keys):
            # e.g. every token commented out: refuse to start rather than serve without authentication
            raise ConfigError("authentication is configured but the token file and JWKS hold no usable key")

    def authenticate(self, token: str) -> Caller:
        digest = hashlib.sha256(token.encode()).digest()
        for entry in self._tokens:
            if hmac.compare_digest(entry.digest, digest):
                return entry.caller
        if self._jwks is not None and token.count(".") == 2:
            return self._verify_jwt(token, self._jwks)
        raise AuthError("invalid bearer token")

    def _verify_jwt(self, token: str, jwks: jwt.PyJWKSet) -> Caller:
        try:
            header = jwt.get_unverified_header(token)
            key = jwks[header["kid"]] if "kid" in header else _single_key(jwks)
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=list(_JWT_ALGORITHMS),
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except (jwt.PyJWTError, KeyError) as exc:
            raise AuthError(f"invalid JWT: {type(exc).__name__}") from exc
        scopes = claims.get("scope", "")
        granted = set(scopes.split()) if isinstance(scopes, str) else set()
        if isinstance(claims.get("scp"), list):
            granted.update(str(s) for s in claims["scp"])
        return Caller(id=str(claims["sub"]), scopes=frozenset(granted))


def _single_key(jwks: jwt.PyJWKSet) -> jwt.PyJWK:
    if len(jwks.keys) != 1:
        raise KeyError("kid")
    return jwks.keys[0]


def _read_token_file(path: Path) -> tuple[_TokenEntry, ...]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read auth token file {path}: {exc.strerror}") from exc
    entries = []
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3:
            raise ConfigError(f"{path}:{number}: expected '<token> <caller id> <scope,scope>'")
        secret, caller_id, scopes = parts
        if secret.startswith("sha256:"):
            try:
                digest = bytes.fromhex(secret.removeprefix("sha256:"))
            except ValueError:
                raise ConfigError(f"{path}:{number}: sha256 digest is not hex") from None
            if len(digest) != 32:
                raise ConfigError(f"{path}:{number}: sha256 digest must be 64 hex digits")
        else:
            digest = hashlib.sha256(secret.encode()).digest()
        granted = frozenset(s for s in scopes.split(",") if s)
        unknown = granted - ALL_SCOPES - {"*"}
        if unknown:
            raise ConfigError(f"{path}:{number}: unknown scopes {sorted(unknown)}; known: {sorted(ALL_SCOPES)}")
        entries.append(_TokenEntry(digest, Caller(id=caller_id, scopes=ALL_SCOPES if "*" in granted else granted)))
    return tuple(entries)


def _read_jwks(path: Path) -> jwt.PyJWKSet:
    try:
        return jwt.PyJWKSet.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, jwt.PyJWTError) as exc:
        raise ConfigError(f"cannot read JWKS file {path}: {exc}") from exc


Behaviour = Callable[[Any, grpc.ServicerContext], Any]


def wrap_handler(
    handler: grpc.RpcMethodHandler, around: Callable[[Behaviour], Behaviour], *, raw_requests: bool = False
) -> grpc.RpcMethodHandler:
    """A copy of `handler` whose behaviour runs inside `around` (in the thread that serves the RPC); with
    `raw_requests`, the copy receives the request bytes undecoded."""
    factories = (
        (handler.unary_unary, grpc.unary_unary_rpc_method_handler),
        (handler.unary_stream, grpc.unary_stream_rpc_method_handler),
        (handler.stream_unary, grpc.stream_unary_rpc_method_handler),
        (handler.stream_stream, grpc.stream_stream_rpc_method_handler),
    )
    deserializer = None if raw_requests else handler.request_deserializer
    for behaviour, factory in factories:
        if behaviour is not None:
            wrapped: Any = around(behaviour)
            return factory(wrapped, deserializer, handler.response_serializer)
    raise ValueError("RPC method handler without behaviour")


def run_as(caller: Caller, behaviour: Behaviour, request: Any, context: grpc.ServicerContext) -> Any:
    """Call `behaviour` with `caller` as the current caller, also while a streamed response is iterated."""
    token = _current_caller.set(caller)
    try:
        result = behaviour(request, context)
    finally:
        _current_caller.reset(token)
    if isinstance(result, Iterator):
        return _iterate_as(caller, result)
    return result


def _iterate_as(caller: Caller, responses: Iterator[Any]) -> Iterator[Any]:
    token = _current_caller.set(caller)
    try:
        yield from responses
    finally:
        _current_caller.reset(token)


class AuthInterceptor(grpc.ServerInterceptor):
    """UNAUTHENTICATED without a valid bearer token, PERMISSION_DENIED without the method's scope.

    Outermost interceptor: the token is checked from the call's metadata before any request byte is read,
    so callers without a token cannot hold the server's threads by sending a slow or huge body. A method
    under /osteorisk.v1. that has no scope in METHOD_SCOPES is denied (fail closed).
    """

    def __init__(self, authenticator: Authenticator, on_denied: Callable[[str, grpc.StatusCode], None]) -> None:
        self._authenticator = authenticator
        self._on_denied = on_denied

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if not method.startswith(_PROTECTED_PREFIX):
            return continuation(handler_call_details)
        metadata: Iterable[tuple[str, str | bytes]] = handler_call_details.invocation_metadata or ()
        authorization = next((str(v) for k, v in metadata if k == "authorization"), None)
        try:
            caller = self._check(authorization, method)
        except _DeniedError as denied:
            self._on_denied(method, denied.code)
            handler = continuation(handler_call_details)
            return _deny(denied, streaming_response=bool(handler is not None and handler.response_streaming))
        handler = continuation(handler_call_details)
        if handler is None:
            return None

        def around(behaviour: Behaviour) -> Behaviour:
            def run(request: Any, context: grpc.ServicerContext) -> Any:
                return run_as(caller, behaviour, request, context)

            return run

        return wrap_handler(handler, around)

    def _check(self, authorization: str | None, method: str) -> Caller:
        if authorization is None or not authorization.lower().startswith("bearer "):
            raise _DeniedError(grpc.StatusCode.UNAUTHENTICATED, "missing bearer token (metadata 'authorization')")
        try:
            caller = self._authenticator.authenticate(authorization[7:].strip())
        except AuthError as exc:
            raise _DeniedError(grpc.StatusCode.UNAUTHENTICATED, str(exc)) from None
        needed = METHOD_SCOPES.get(method)
        if needed is None or needed not in caller.scopes:
            scope = needed or "(none defined)"
            raise _DeniedError(grpc.StatusCode.PERMISSION_DENIED, f"token lacks scope {scope!r} for {method}")
        return Caller(id=caller.id, scopes=caller.scopes, method=method)


class _DeniedError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _deny(denied: _DeniedError, *, streaming_response: bool) -> grpc.RpcMethodHandler:
    """A handler that answers at once without reading the request (a stream-request handler is never made to
    wait for a body); it works for unary and streaming calls alike."""

    def refuse(request_iterator: Any, context: grpc.ServicerContext) -> Any:
        context.abort(denied.code, str(denied))

    if streaming_response:
        return grpc.stream_stream_rpc_method_handler(refuse)
    return grpc.stream_unary_rpc_method_handler(refuse)


def server_credentials(cert_file: Path, key_file: Path, client_ca_file: Path | None) -> grpc.ServerCredentials:
    """TLS credentials; with a client CA, clients must present a certificate it signed (mutual TLS)."""
    try:
        key, cert = key_file.read_bytes(), cert_file.read_bytes()
        client_ca = client_ca_file.read_bytes() if client_ca_file else None
    except OSError as exc:
        raise ConfigError(f"cannot read TLS file {exc.filename}: {exc.strerror}") from exc
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
