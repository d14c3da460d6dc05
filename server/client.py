"""A client of the osteorisk gRPC service (used by `osteorisk assess --server` and `make run`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_status import rpc_status

from fusion.types import RiskReport
from server import convert
from server.generated.osteorisk.v1 import fracture_risk_service_pb2 as pb
from server.generated.osteorisk.v1 import fracture_risk_service_pb2_grpc as pb_grpc

TOKEN_ENV = "OSTEORISK_TOKEN"  # noqa: S105 - the name of the variable, not a secret


class RemoteError(Exception):
    """The server answered with an error status; the message has the code and the server's explanation."""

    def __init__(self, code: grpc.StatusCode, message: str, field_violations: list[str]) -> None:
        details = f" [{'; '.join(field_violations)}]" if field_violations else ""
        super().__init__(f"server answered {code.name}: {message}{details}")
        self.code = code


@dataclass(frozen=True)
class ClientOptions:
    target: str
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    token: str | None = None
    timeout_s: float = 120.0
    max_message_bytes: int = 512 * 1024 * 1024

    @staticmethod
    def token_from(token_file: Path | None) -> str | None:
        if token_file is not None:
            return token_file.read_text().strip()
        return os.environ.get(TOKEN_ENV)


def open_channel(options: ClientOptions) -> grpc.Channel:
    channel_options = [
        ("grpc.max_send_message_length", options.max_message_bytes),
        ("grpc.max_receive_message_length", options.max_message_bytes),
    ]
    if options.tls_ca is None and options.tls_cert is None:
        return grpc.insecure_channel(options.target, options=channel_options)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=options.tls_ca.read_bytes() if options.tls_ca else None,
        private_key=options.tls_key.read_bytes() if options.tls_key else None,
        certificate_chain=options.tls_cert.read_bytes() if options.tls_cert else None,
    )
    return grpc.secure_channel(options.target, credentials, options=channel_options)


def _remote_error(error: grpc.RpcError) -> RemoteError:
    violations: list[str] = []
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is not None:
        from google.rpc import error_details_pb2

        for detail in status.details:
            bad_request = error_details_pb2.BadRequest()
            if detail.Unpack(bad_request):
                violations += [f"{v.field}: {v.reason}" for v in bad_request.field_violations]
    return RemoteError(error.code(), error.details() or "", violations)  # type: ignore[attr-defined]


def assess_remote(options: ClientOptions, request: pb.AssessRequest) -> RiskReport:
    metadata = (("authorization", f"Bearer {options.token}"),) if options.token else None
    with open_channel(options) as channel:
        stub = pb_grpc.FractureRiskServiceStub(channel)
        try:
            reply = stub.Assess(request, timeout=options.timeout_s, metadata=metadata)
        except grpc.RpcError as error:
            raise _remote_error(error) from None
    return convert.risk_report_from_proto(reply)
