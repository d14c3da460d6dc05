"""Server configuration: a TOML file plus `OSTEORISK_*` environment variables (environment wins).

Nothing in a request can change where the server reads or connects: FHIR and DICOMweb base URLs and
the data roots are configuration only.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

MIB = 1024 * 1024


class ConfigError(Exception):
    """The configuration file or environment is invalid; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TlsConfig(_Section):
    """Server TLS. With `client_ca_file`, clients must present a certificate signed by it (mutual TLS)."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


class AuthConfig(_Section):
    """Bearer-token authentication, on as soon as a token file or a JWKS is configured.

    With neither, authentication is off, which the server accepts only on a loopback address unless
    `allow_unauthenticated` says otherwise (e.g. behind an authenticating proxy on a private network).
    """

    token_file: Path | None = Field(default=None, description="static tokens: '<token> <caller> <scope,...>' lines")
    jwks_file: Path | None = Field(default=None, description="local JWKS to verify JWT bearer tokens")
    jwt_audience: str | None = Field(default=None, description="required with jwks_file: this service's audience")
    jwt_issuer: str | None = None
    allow_unauthenticated: bool = False

    @property
    def enabled(self) -> bool:
        return self.token_file is not None or self.jwks_file is not None

    @model_validator(mode="after")
    def _audience_with_jwks(self) -> AuthConfig:
        if self.jwks_file is not None and not self.jwt_audience:
            raise ValueError("jwt_audience is required with jwks_file (tokens issued for other services must fail)")
        return self


class FhirSourceConfig(_Section):
    """The one FHIR source the server reads patients from: a base URL, a bundle file or an NDJSON directory.

    For a URL: a static bearer token (`bearer_token_file`) or SMART Backend Services client credentials
    (`smart_client_id` + `smart_private_key_file`, private-key JWT), and a per-request timeout.
    """

    source: str
    bearer_token_file: Path | None = None
    smart_client_id: str | None = None
    smart_private_key_file: Path | None = None
    smart_token_url: str | None = None
    smart_scope: str = "system/*.read"
    timeout_s: float = Field(default=10.0, gt=0)

    @property
    def is_url(self) -> bool:
        return self.source.startswith(("http://", "https://"))


class DicomWebConfig(_Section):
    """The one PACS the server fetches series from over DICOMweb."""

    base_url: str
    bearer_token_file: Path | None = None
    timeout_s: float = Field(default=60.0, gt=0)


class MonaiConfig(_Section):
    """A MONAI segmentation network of the site's own (never downloaded); requests may then ask for "monai"."""

    model_dir: Path
    label_mapping: Path | None = None


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=50051, ge=0, le=65535, description="0 picks a free port")
    max_workers: int = Field(
        default=4,
        ge=1,
        le=256,
        description="RPC threads per process that run at once (server/rpc_executor.py): Python runs one thread at "
        "a time, so a few keep fast assessments in arrival order",
    )
    max_threads: int = Field(
        default=64,
        ge=1,
        le=1024,
        description="RPC threads per process in all: the extra ones stand in for RPCs waiting on the PACS, the "
        "FHIR server, a CT slot or a stream's client (64: room for dozens of such waits; a thread costs little "
        "while it waits)",
    )
    max_concurrent_rpcs: int = Field(
        default=128,
        ge=1,
        description="RPCs accepted per process at once, running or queued, then RESOURCE_EXHAUSTED (128: the bound "
        "16 threads x 8 gave before; about 0.1 s of fast assessments at 1,000 a second)",
    )
    processes: int = Field(
        default=1, ge=1, le=64, description="server processes sharing the port (SO_REUSEPORT): one per core"
    )
    model_dir: Path | None = Field(default=None, description="model directory; default: the bundled model")
    max_message_bytes: int = Field(default=512 * MIB, ge=MIB, description="largest request or response")
    max_inline_image_bytes: int = Field(default=512 * MIB, ge=0, description="largest inline CT payload")
    feature_cache_entries: int = Field(default=256, ge=0, description="BoneFeatures kept by series (0: no cache)")
    max_ct_voxels: int = Field(
        default=512 * 512 * 1500, ge=1, description="largest CT volume read (memory guard: 4 bytes a voxel)"
    )
    max_concurrent_ct: int = Field(default=2, ge=1, description="CT studies processed at once (memory bound)")
    max_fhir_bundle_bytes: int = Field(default=32 * MIB, ge=1, description="largest inline FHIR Bundle")
    grace_period_s: float = Field(default=10.0, ge=0, description="graceful shutdown wait for running RPCs")
    data_roots: list[Path] = Field(default_factory=list, description="server-side folders CT/FHIR may be read from")
    metrics_port: int | None = Field(default=None, ge=0, le=65535, description="Prometheus /metrics port")
    audit_log: Path | None = None
    tls: TlsConfig | None = None
    auth: AuthConfig = Field(default_factory=AuthConfig)
    fhir: FhirSourceConfig | None = None
    dicomweb: DicomWebConfig | None = None
    monai: MonaiConfig | None = None

    @model_validator(mode="after")
    def _room_for_every_thread(self) -> ServerConfig:
        if self.max_threads < self.max_workers:
            raise ValueError(f"max_threads ({self.max_threads}) must be at least max_workers ({self.max_workers})")
        if self.max_concurrent_rpcs < self.max_workers:
            raise ValueError(
                f"max_concurrent_rpcs ({self.max_concurrent_rpcs}) must be at least max_workers ({self.max_workers})"
            )
        return self

    @model_validator(mode="after")
    def _authentication_off_only_on_loopback(self) -> ServerConfig:
        loopback = self.host in ("127.0.0.1", "localhost", "::1")
        if not self.auth.enabled and not loopback and not self.auth.allow_unauthenticated:
            raise ValueError(
                f"host {self.host} is not loopback and no [auth] token_file or jwks_file is configured "
                "(set auth.allow_unauthenticated = true only behind an authenticating proxy)"
            )
        return self

    @model_validator(mode="after")
    def _server_side_paths_within_data_roots(self) -> ServerConfig:
        """With data roots configured, every server-side data path must lie inside one of them."""
        if not self.data_roots:
            return self
        roots = [root.resolve() for root in self.data_roots]
        paths = {"model_dir": self.model_dir, "monai.model_dir": self.monai.model_dir if self.monai else None}
        if self.fhir is not None and not self.fhir.is_url:
            paths["fhir.source"] = Path(self.fhir.source)
        for name, path in paths.items():
            if path is not None and not any(path.resolve().is_relative_to(root) for root in roots):
                raise ValueError(f"{name} {path} lies outside the data roots {[str(r) for r in roots]}")
        return self


_ENV_PREFIX = "OSTEORISK_"
_ENV_KEYS = {
    "HOST": ("host",),
    "PORT": ("port",),
    "MAX_WORKERS": ("max_workers",),
    "MAX_THREADS": ("max_threads",),
    "MAX_CONCURRENT_RPCS": ("max_concurrent_rpcs",),
    "PROCESSES": ("processes",),
    "MODEL_DIR": ("model_dir",),
    "MAX_MESSAGE_BYTES": ("max_message_bytes",),
    "MAX_INLINE_IMAGE_BYTES": ("max_inline_image_bytes",),
    "FEATURE_CACHE_ENTRIES": ("feature_cache_entries",),
    "MAX_CT_VOXELS": ("max_ct_voxels",),
    "MAX_CONCURRENT_CT": ("max_concurrent_ct",),
    "METRICS_PORT": ("metrics_port",),
    "AUDIT_LOG": ("audit_log",),
    "FHIR_SOURCE": ("fhir", "source"),
    "DICOMWEB_BASE_URL": ("dicomweb", "base_url"),
    "AUTH_TOKEN_FILE": ("auth", "token_file"),
    "AUTH_JWKS_FILE": ("auth", "jwks_file"),
    "TLS_CERT_FILE": ("tls", "cert_file"),
    "TLS_KEY_FILE": ("tls", "key_file"),
    "TLS_CLIENT_CA_FILE": ("tls", "client_ca_file"),
}


def load_config(path: Path | None = None, *, environ: dict[str, str] | None = None) -> ServerConfig:
    """Read `path` (TOML; optional), overlay `OSTEORISK_*` variables, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    env = os.environ if environ is None else environ
    for suffix, keys in _ENV_KEYS.items():
        value = env.get(_ENV_PREFIX + suffix)
        if value is None:
            continue
        section = data
        for key in keys[:-1]:
            section = section.setdefault(key, {})
        section[keys[-1]] = value
    if roots := env.get(_ENV_PREFIX + "DATA_ROOTS"):
        data["data_roots"] = [r for r in roots.split(os.pathsep) if r]
    try:
        return ServerConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
        raise ConfigError(f"invalid server configuration: {problems}") from exc
