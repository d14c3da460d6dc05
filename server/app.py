"""Building and running the gRPC server: `create_server(config) -> (server, port)` and `serve(config)`."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server.config import ServerConfig
from server.generated.osteorisk.v1 import fracture_risk_service_pb2_grpc
from server.service import SERVICE_NAME, FractureRiskService

log = logging.getLogger(__name__)


class RunningServer:
    """A started server with its health servicer, so that shutdown can report NOT_SERVING first."""

    def __init__(self, server: grpc.Server, port: int, health_servicer: health.HealthServicer) -> None:
        self.server = server
        self.port = port
        self.health = health_servicer

    def stop(self, grace_s: float) -> None:
        """Graceful shutdown: report NOT_SERVING, refuse new RPCs, let running ones finish for `grace_s`."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()


def create_server(config: ServerConfig) -> tuple[grpc.Server, int]:
    """A configured, not yet started server and the port it bound (config.port 0 picks a free one)."""
    running = _build(config)
    return running.server, running.port


def _build(config: ServerConfig) -> RunningServer:
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=config.max_workers), options=options)
    fracture_risk_service_pb2_grpc.add_FractureRiskServiceServicer_to_server(FractureRiskService(), server)

    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    address = f"{config.host}:{config.port}"
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {address}")
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, port, health_servicer)


def start(config: ServerConfig) -> RunningServer:
    """Build and start a server (for tests and the demo); the caller stops it."""
    running = _build(config)
    running.server.start()
    log.info("osteorisk gRPC server listening", extra={"port": running.port})
    return running


def serve(config: ServerConfig, *, ready: threading.Event | None = None) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    running = start(config)
    stop_requested = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("shutting down on signal %d", signum)
        stop_requested.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    print(f"osteorisk serving on {config.host}:{running.port}", flush=True)
    if ready is not None:
        ready.set()
    stop_requested.wait()
    running.stop(config.grace_period_s)
    print("osteorisk server stopped", flush=True)
