"""How a FHIR REST source authenticates: no auth, a static bearer token, or SMART Backend Services.

SMART Backend Services (HL7 SMART App Launch 2.x, "Backend Services",
https://hl7.org/fhir/smart-app-launch/backend-services.html) is the OAuth 2.0 client-credentials flow with a
private-key JWT client assertion (RFC 7523): the client

1. discovers the token endpoint from `{fhir base}/.well-known/smart-configuration` (`token_endpoint`;
   servers of SMART 1.0 publish it only in the CapabilityStatement's `oauth-uris` extension, used as a
   fallback),
2. signs a short-lived JWT with its private key: header `alg` RS384 or ES384, `kid`, `typ: JWT`
   (and `jku` if the client registered a JWKS URL); claims `iss` = `sub` = client_id, `aud` = the token
   endpoint URL, `exp` no more than five minutes ahead, a unique `jti`,
3. POSTs `grant_type=client_credentials`, `scope`, `client_assertion_type=
   urn:ietf:params:oauth:client-assertion-type:jwt-bearer` and `client_assertion` as a form,
4. uses the `access_token` as a bearer token until `expires_in` (minus a safety margin), then repeats.

Errors: anything that stops us from authenticating (an unreadable key, a key that does not fit the
algorithm, a refused assertion, a token endpoint that cannot be found) raises `FhirAuthError`, which is a
`FhirSourceUnavailableError` (the server cannot be used) with its own reason code; the message names the
OAuth `error`/`error_description` the server gave. Tokens and keys never appear in messages or logs.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, Protocol, runtime_checkable

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from clinical.errors import FhirSourceUnavailableError

#: The OAuth client assertion type of RFC 7523 section 2.2, required by SMART Backend Services.
CLIENT_ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Signing algorithms SMART Backend Services requires servers to support (SMART App Launch 2.x).
SMART_ALGORITHMS: Final = ("RS384", "ES384")
#: Scopes asked for by default: read access to every resource type (SMART v1 syntax, accepted by v2 servers).
DEFAULT_SMART_SCOPE: Final = "system/*.read"
#: SMART's ceiling on the lifetime of a client assertion (`exp` at most five minutes after signing).
MAX_ASSERTION_LIFETIME_S: Final = 300
#: CapabilityStatement extension carrying OAuth endpoints in SMART 1.0 servers.
OAUTH_URIS_EXTENSION: Final = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"

SmartAlgorithm = Literal["RS384", "ES384"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class FhirAuthError(FhirSourceUnavailableError):
    """We could not authenticate to the FHIR server: bad credentials, a refused assertion, no token endpoint."""

    reason = "FHIR_AUTH_FAILED"


@runtime_checkable
class FhirAuth(Protocol):
    """Supplies the Authorization header of each request to one FHIR server."""

    def authorization(self, client: httpx.Client, base_url: str) -> str | None:
        """The `Authorization` header value for a request to `base_url`, or None for none."""
        ...

    def invalidate(self) -> None:
        """Forget any cached credential (called once after the server answers 401)."""
        ...

    def describe(self) -> str:
        """A short description without secrets, e.g. "SMART Backend Services (client osteorisk, RS384)"."""
        ...


class NoAuth:
    """No Authorization header (open servers, e.g. a local test server)."""

    def authorization(self, client: httpx.Client, base_url: str) -> str | None:
        return None

    def invalidate(self) -> None:
        """Nothing is cached."""

    def describe(self) -> str:
        return "no auth"


class BearerTokenAuth:
    """A static bearer token (e.g. issued out of band). Read it from a file with `from_file`."""

    def __init__(self, token: str) -> None:
        token = token.strip()
        if not token or any(ch.isspace() for ch in token):
            raise FhirAuthError("a bearer token must be a non-empty string without spaces", reason="FHIR_AUTH_CONFIG")
        self._token = token

    @classmethod
    def from_file(cls, path: str | Path) -> BearerTokenAuth:
        """The token on the first line of a file (keeps it out of command lines and shell history)."""
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            message = f"cannot read the bearer token file {path}: {exc.strerror}"
            raise FhirAuthError(message, reason="FHIR_AUTH_CONFIG") from None
        return cls(lines[0] if lines else "")

    def authorization(self, client: httpx.Client, base_url: str) -> str | None:
        return f"Bearer {self._token}"

    def invalidate(self) -> None:
        """A static token cannot be refreshed: a 401 is final."""

    def describe(self) -> str:
        return "static bearer token"


def load_private_key(key: str | bytes | Path) -> PrivateKey:
    """An RSA or EC private key from PEM (PKCS#8 or traditional) text/bytes, a PEM file, or a private JWK file.

    A JWK file may hold one key or a JWKS (`{"keys": [...]}`; the first private key is used). Encrypted PEM
    keys are not supported (decrypt them into a file readable only by the service account).
    """
    data: bytes
    if isinstance(key, Path):
        try:
            data = key.read_bytes()
        except OSError as exc:
            message = f"cannot read the private key file {key}: {exc.strerror}"
            raise FhirAuthError(message, reason="FHIR_AUTH_CONFIG") from None
    else:
        data = key.encode() if isinstance(key, str) else key
    text = data.strip()
    if text.startswith(b"{"):
        return _key_from_jwk(text)
    try:
        loaded = serialization.load_pem_private_key(text, password=None)
    except (ValueError, TypeError) as exc:
        raise FhirAuthError(
            f"the SMART private key is not an unencrypted PEM private key or a private JWK ({exc})",
            reason="FHIR_AUTH_CONFIG",
        ) from None
    if not isinstance(loaded, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise FhirAuthError(
            f"the SMART private key is a {type(loaded).__name__}; SMART Backend Services needs RSA or EC P-384",
            reason="FHIR_AUTH_CONFIG",
        )
    return loaded


def _key_from_jwk(text: bytes) -> PrivateKey:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FhirAuthError(f"the SMART private JWK is not JSON ({exc.msg})", reason="FHIR_AUTH_CONFIG") from None
    keys = document.get("keys", [document]) if isinstance(document, dict) else []
    for jwk in keys:
        if not isinstance(jwk, dict) or "d" not in jwk:
            continue
        try:
            if jwk.get("kty") == "RSA":
                key: Any = RSAAlgorithm.from_jwk(json.dumps(jwk))
            elif jwk.get("kty") == "EC":
                key = ECAlgorithm.from_jwk(json.dumps(jwk))
            else:
                continue
        except (jwt.InvalidKeyError, ValueError, KeyError) as exc:
            raise FhirAuthError(f"the SMART private JWK is invalid ({exc})", reason="FHIR_AUTH_CONFIG") from None
        if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            return key
    raise FhirAuthError("the JWK file holds no RSA or EC private key (no 'd' member)", reason="FHIR_AUTH_CONFIG")


def public_jwk(private_key: PrivateKey, *, alg: SmartAlgorithm, kid: str | None = None) -> dict[str, Any]:
    """The public JWK to register with the FHIR server for this key (`kid` defaults to the RFC 7638 thumbprint)."""
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(public))
    else:
        jwk = json.loads(ECAlgorithm.to_jwk(public))
    jwk.update({"alg": alg, "use": "sig", "key_ops": ["verify"]})
    jwk["kid"] = kid or _thumbprint(jwk)
    return jwk


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256 over the required members in lexicographic order)."""
    import base64
    import hashlib

    names = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({name: jwk[name] for name in names}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def _check_key_fits(key: PrivateKey, alg: str) -> None:
    if alg not in SMART_ALGORITHMS:
        raise FhirAuthError(
            f"SMART Backend Services signs with {' or '.join(SMART_ALGORITHMS)}, not {alg!r}", reason="FHIR_AUTH_CONFIG"
        )
    if alg == "RS384":
        if not isinstance(key, rsa.RSAPrivateKey):
            message = "alg RS384 needs an RSA private key; give ES384 for an EC key"
            raise FhirAuthError(message, reason="FHIR_AUTH_CONFIG")
        if key.key_size < 2048:
            raise FhirAuthError(
                f"RSA key of {key.key_size} bits is too short: SMART requires at least 2048", reason="FHIR_AUTH_CONFIG"
            )
    elif not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp384r1":
        raise FhirAuthError("alg ES384 needs an EC private key on curve P-384", reason="FHIR_AUTH_CONFIG")


class SmartBackendAuth:
    """SMART Backend Services: a private-key JWT client assertion exchanged for cached access tokens.

    `private_key`: PEM text/bytes, or a Path to a PEM or private-JWK file. `kid` defaults to the key's
    RFC 7638 thumbprint (what `public_jwk` registers). `token_url` skips discovery. Tokens are reused until
    `expires_in - expiry_margin_s` seconds after they were issued. Thread-safe.
    """

    def __init__(
        self,
        *,
        client_id: str,
        private_key: str | bytes | Path,
        alg: SmartAlgorithm = "RS384",
        kid: str | None = None,
        scope: str = DEFAULT_SMART_SCOPE,
        token_url: str | None = None,
        jku: str | None = None,
        assertion_lifetime_s: int = MAX_ASSERTION_LIFETIME_S,
        expiry_margin_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not client_id or not client_id.strip():
            raise FhirAuthError("SMART client_id must not be empty", reason="FHIR_AUTH_CONFIG")
        if not scope.strip():
            raise FhirAuthError("SMART scope must not be empty (e.g. 'system/*.read')", reason="FHIR_AUTH_CONFIG")
        if not 0 < assertion_lifetime_s <= MAX_ASSERTION_LIFETIME_S:
            raise FhirAuthError(
                f"assertion_lifetime_s must be in (0, {MAX_ASSERTION_LIFETIME_S}] seconds, got {assertion_lifetime_s}",
                reason="FHIR_AUTH_CONFIG",
            )
        if expiry_margin_s < 0:
            raise FhirAuthError(f"expiry_margin_s must be >= 0, got {expiry_margin_s}", reason="FHIR_AUTH_CONFIG")
        self._key = load_private_key(private_key)
        _check_key_fits(self._key, alg)
        self.client_id = client_id
        self.alg: SmartAlgorithm = alg
        self.kid = kid or public_jwk(self._key, alg=alg)["kid"]
        self.scope = scope
        self.jku = jku
        self._token_url = token_url
        self._assertion_lifetime_s = assertion_lifetime_s
        self._expiry_margin_s = expiry_margin_s
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        #: How many access tokens this object has obtained (observability; tokens are cached in between).
        self.tokens_issued = 0

    def public_jwks(self) -> dict[str, Any]:
        """The JWKS to register with the authorisation server for this client."""
        return {"keys": [public_jwk(self._key, alg=self.alg, kid=self.kid)]}

    def describe(self) -> str:
        return f"SMART Backend Services (client {self.client_id}, {self.alg})"

    def invalidate(self) -> None:
        with self._lock:
            self._token = None
            self._expires_at = 0.0

    def authorization(self, client: httpx.Client, base_url: str) -> str | None:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                self._token, lifetime = self._request_token(client, base_url)
                self._expires_at = self._clock() + max(0.0, lifetime - self._expiry_margin_s)
                self.tokens_issued += 1
            return f"Bearer {self._token}"

    # token endpoint ------------------------------------------------------------------------------------
    def token_endpoint(self, client: httpx.Client, base_url: str) -> str:
        """The configured token URL, else discovered (`.well-known/smart-configuration`, then `metadata`)."""
        if self._token_url is None:
            self._token_url = _discover_token_endpoint(client, base_url.rstrip("/"))
        return self._token_url

    def client_assertion(self, token_url: str) -> str:
        """A freshly signed client assertion JWT for `token_url`."""
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "exp": now + self._assertion_lifetime_s,
            "iat": now,
            "jti": uuid.uuid4().hex,
        }
        headers: dict[str, Any] = {"kid": self.kid, "typ": "JWT"}
        if self.jku:
            headers["jku"] = self.jku
        return jwt.encode(claims, self._key, algorithm=self.alg, headers=headers)

    def _request_token(self, client: httpx.Client, base_url: str) -> tuple[str, float]:
        token_url = self.token_endpoint(client, base_url)
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": self.client_assertion(token_url),
        }
        try:
            response = client.post(token_url, data=form, headers={"Accept": "application/json"})
        except httpx.TimeoutException as exc:
            raise FhirAuthError(f"the SMART token endpoint {token_url} timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise FhirAuthError(f"cannot reach the SMART token endpoint {token_url}: {exc}") from None
        body = _json_or_none(response)
        if response.status_code != 200:
            detail = ""
            if isinstance(body, dict) and body.get("error"):
                detail = f": {body.get('error')}"
                if body.get("error_description"):
                    detail += f" ({body['error_description']})"
            raise FhirAuthError(
                f"the SMART token endpoint {token_url} refused client {self.client_id!r} "
                f"(HTTP {response.status_code}{detail})"
            )
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str) or not body["access_token"]:
            raise FhirAuthError(f"the SMART token endpoint {token_url} answered without an access_token")
        token_type = str(body.get("token_type", "bearer"))
        if token_type.lower() != "bearer":
            raise FhirAuthError(f"the SMART token endpoint issued a {token_type!r} token; only bearer is supported")
        expires_in = body.get("expires_in", 300)
        if not isinstance(expires_in, int | float) or expires_in <= 0:
            raise FhirAuthError(f"the SMART token endpoint gave an invalid expires_in {expires_in!r}")
        return body["access_token"], float(expires_in)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _discover_token_endpoint(client: httpx.Client, base_url: str) -> str:
    url = f"{base_url}/.well-known/smart-configuration"
    try:
        response = client.get(url, headers={"Accept": "application/json"})
        config = _json_or_none(response) if response.status_code == 200 else None
        if isinstance(config, dict) and isinstance(config.get("token_endpoint"), str):
            return str(config["token_endpoint"])
        metadata = client.get(f"{base_url}/metadata", headers={"Accept": "application/fhir+json"})
        statement = _json_or_none(metadata) if metadata.status_code == 200 else None
    except httpx.HTTPError as exc:
        raise FhirAuthError(f"SMART discovery at {url} failed: {exc}") from None
    token_url = _token_url_from_capabilities(statement)
    if token_url is None:
        raise FhirAuthError(
            f"no SMART token endpoint: {url} has no token_endpoint and the CapabilityStatement no oauth-uris "
            "extension; give token_url explicitly"
        )
    return token_url


def _token_url_from_capabilities(statement: Any) -> str | None:
    if not isinstance(statement, dict):
        return None
    for rest in statement.get("rest") or []:
        security = (rest or {}).get("security") or {}
        for extension in security.get("extension") or []:
            if extension.get("url") != OAUTH_URIS_EXTENSION:
                continue
            for inner in extension.get("extension") or []:
                if inner.get("url") == "token" and isinstance(inner.get("valueUri"), str):
                    return str(inner["valueUri"])
    return None


#: Environment variables read by `auth_from_env` (for the CLI and the server's `[fhir]` settings).
AUTH_ENVIRONMENT: Final = {
    "token_file": "OSTEORISK_FHIR_TOKEN_FILE",
    "smart_client_id": "OSTEORISK_FHIR_SMART_CLIENT_ID",
    "smart_private_key": "OSTEORISK_FHIR_SMART_KEY_FILE",
    "smart_alg": "OSTEORISK_FHIR_SMART_ALG",
    "smart_scope": "OSTEORISK_FHIR_SMART_SCOPE",
    "smart_token_url": "OSTEORISK_FHIR_SMART_TOKEN_URL",
    "smart_kid": "OSTEORISK_FHIR_SMART_KID",
}


def make_auth(
    *,
    token_file: str | Path | None = None,
    smart_client_id: str | None = None,
    smart_private_key: str | Path | None = None,
    smart_alg: str = SMART_ALGORITHMS[0],
    smart_scope: str = DEFAULT_SMART_SCOPE,
    smart_token_url: str | None = None,
    smart_kid: str | None = None,
) -> FhirAuth:
    """The auth that settings describe: SMART when a client id is given, a bearer token file, or none.

    Secrets are read from files (a token file, a private key file), never taken from command lines.
    """
    if smart_client_id:
        if smart_private_key is None:
            raise FhirAuthError(
                "SMART Backend Services needs the client's private key file as well as its client id",
                reason="FHIR_AUTH_CONFIG",
            )
        if token_file is not None:
            message = "give either a bearer token file or SMART client settings, not both"
            raise FhirAuthError(message, reason="FHIR_AUTH_CONFIG")
        if smart_alg not in SMART_ALGORITHMS:
            raise FhirAuthError(
                f"SMART Backend Services signs with {' or '.join(SMART_ALGORITHMS)}, not {smart_alg!r}",
                reason="FHIR_AUTH_CONFIG",
            )
        alg: SmartAlgorithm = "ES384" if smart_alg == "ES384" else "RS384"
        return SmartBackendAuth(
            client_id=smart_client_id,
            private_key=Path(smart_private_key),
            alg=alg,
            scope=smart_scope,
            token_url=smart_token_url,
            kid=smart_kid,
        )
    if smart_private_key is not None:
        raise FhirAuthError("a SMART private key was given without a SMART client id", reason="FHIR_AUTH_CONFIG")
    stray = [
        name
        for name, given in (
            ("token URL", smart_token_url is not None),
            ("kid", smart_kid is not None),
            ("alg", smart_alg != SMART_ALGORITHMS[0]),
            ("scope", smart_scope != DEFAULT_SMART_SCOPE),
        )
        if given
    ]
    if stray:
        raise FhirAuthError(
            f"SMART settings ({', '.join(stray)}) were given without a SMART client id", reason="FHIR_AUTH_CONFIG"
        )
    if token_file is not None:
        return BearerTokenAuth.from_file(token_file)
    return NoAuth()


def auth_from_env(environ: Mapping[str, str]) -> FhirAuth:
    """`make_auth` from the `OSTEORISK_FHIR_*` variables of `AUTH_ENVIRONMENT` (unset or empty: not given)."""
    settings: dict[str, Any] = {}
    for option, variable in AUTH_ENVIRONMENT.items():
        value = environ.get(variable, "").strip()
        if value:
            settings[option] = value
    return make_auth(**settings)
