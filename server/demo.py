"""`make run`: start the server on embedded defaults and talk to it over real gRPC.

Today it starts the service on 127.0.0.1, checks health and lists the services by reflection.
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from server.app import start
from server.config import ServerConfig


def main() -> int:
    running = start(ServerConfig(port=0))
    target = f"127.0.0.1:{running.port}"
    try:
        with grpc.insecure_channel(target) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
            )
            services = sorted(s.name for r in replies for s in r.list_services_response.service)
        print(f"osteorisk server on {target}")
        print(f"  health: {health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)}")
        print("  services: " + ", ".join(services))
    finally:
        running.stop(1.0)
    return 0 if health.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
