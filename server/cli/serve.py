"""`osteorisk serve`: run the gRPC server until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from server.app import serve
from server.config import load_config


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser("serve", help="run the gRPC service", description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML configuration file (OSTEORISK_* variables override it)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (default 50051; 0 picks a free port)")
    parser.add_argument("--processes", type=int, help="server processes sharing the port (default 1; one per core)")
    parser.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (0 picks a free port)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    pairs = (
        ("host", args.host),
        ("port", args.port),
        ("processes", args.processes),
        ("metrics_port", args.metrics_port),
    )
    overrides = {k: v for k, v in pairs if v is not None}
    if overrides:
        config = config.model_copy(update=overrides)
        config = type(config).model_validate(config.model_dump())
    serve(config)
    return 0
