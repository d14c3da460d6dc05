"""Building and running the gRPC server: `start(config) -> RunningServer` (tests, the demo) and `serve(config)`.

The server carries the osteorisk.v1 service, grpc.health.v1 health checking (NOT_SERVING until the model
is loaded, and again during shutdown), server reflection, optional TLS / mutual TLS, bearer-token
authentication with a scope per method, Prometheus metrics and structured logs.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass
from types import FrameType
from typing import cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server.config import ServerConfig
from server.generated.osteorisk.v1 import fracture_risk_service_pb2_grpc
from server.observability import AuditLog, Metrics, ObservabilityInterceptor, configure_json_logging
from server.rpc_executor import RpcExecutor
from server.security import Authenticator, AuthInterceptor, server_credentials
from server.service import SERVICE_NAME, FractureRiskService
from server.wire import DecodeGuardInterceptor

log = logging.getLogger(__name__)


@dataclass
class RunningServer:
    """A started server with its parts, so that tests and shutdown can reach them."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    metrics: Metrics
    metrics_port: int | None
    servicer: FractureRiskService
    executor: RpcExecutor

    def stop(self, grace_s: float) -> None:
        """Graceful shutdown: report NOT_SERVING, refuse new RPCs, end streams at a request boundary, let
        running requests finish for `grace_s`; then close the metrics endpoint and the upstream connections."""
        self.health.enter_graceful_shutdown()
        self.servicer.begin_shutdown()
        self.server.stop(grace_s).wait()
        self.executor.shutdown(wait=False)  # its threads end once the queue is empty
        self.servicer.close()
        self.metrics.close()


def _build(config: ServerConfig) -> RunningServer:
    metrics = Metrics()
    authenticator = Authenticator(config.auth)
    # outermost first: credentials are checked before any request byte is read (refusals are counted too);
    # then every RPC is counted, timed and logged; then undecodable bytes become INVALID_ARGUMENT
    interceptors: list[grpc.ServerInterceptor] = []
    if authenticator.enabled:
        interceptors.append(AuthInterceptor(authenticator, on_denied=metrics.count_refused))
    elif config.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("authentication is off on a non-loopback address", extra={"host": config.host})
    interceptors += [ObservabilityInterceptor(metrics), DecodeGuardInterceptor()]
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        # several server processes may share the port only when asked to (config.processes > 1)
        ("grpc.so_reuseport", 1 if config.processes > 1 else 0),
    ]
    executor = RpcExecutor(active=config.max_workers, max_threads=config.max_threads)
    server = grpc.server(
        cast(futures.ThreadPoolExecutor, executor),  # grpc's stubs name ThreadPoolExecutor; grpc calls only submit()
        interceptors=interceptors,
        options=options,
        # RPCs beyond the threads wait in arrival order; past the bound, RESOURCE_EXHAUSTED, not unbounded waiting
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
    )
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)

    def ready() -> None:
        for service in ("", SERVICE_NAME):
            health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)

    servicer = FractureRiskService(config, metrics=metrics, audit=AuditLog(config.audit_log), on_ready=ready)
    fracture_risk_service_pb2_grpc.add_FractureRiskServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    address = f"{config.host}:{config.port}"
    if config.tls is not None:
        credentials = server_credentials(config.tls.cert_file, config.tls.key_file, config.tls.client_ca_file)
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {address}")
    metrics_port = metrics.serve_http(config.host, config.metrics_port) if config.metrics_port is not None else None
    servicer.start_loading()
    return RunningServer(server, port, health_servicer, metrics, metrics_port, servicer, executor)


def start(config: ServerConfig) -> RunningServer:
    """Build and start a server bound to `config.port` (0 picks a free one, see `.port`); the caller stops it."""
    running = _build(config)
    running.server.start()
    log.info("osteorisk gRPC server listening", extra={"port": running.port, "tls": config.tls is not None})
    return running


def serve(config: ServerConfig, *, ready: threading.Event | None = None) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully (several processes when config.processes > 1)."""
    configure_json_logging()
    if config.processes > 1:
        from server.multiprocess import serve_processes

        serve_processes(config)
        return
    running = start(config)
    stop_requested = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("shutting down on signal", extra={"signal": signum})
        stop_requested.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    print(f"osteorisk serving on {config.host}:{running.port}", flush=True)
    if running.metrics_port is not None:
        print(f"metrics on http://{config.host}:{running.metrics_port}/metrics", flush=True)
    if ready is not None:
        ready.set()
    stop_requested.wait()
    running.stop(config.grace_period_s)
    print("osteorisk server stopped", flush=True)
