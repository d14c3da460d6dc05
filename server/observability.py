"""Operations: structured JSON logs without PHI, Prometheus metrics, and the audit log.

Application logs carry the method, status code, duration and the client's request_id, never request
content or patient identifiers. Patient ids go only to the audit log (its own file, one JSON line per
assessment: time, caller, patient id, model), which sites protect like the rest of the record.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from server.security import Behaviour, wrap_handler

log = logging.getLogger("osteorisk.rpc")

_STANDARD_RECORD_KEYS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()) | {"message"}

#: Latency buckets (seconds): from sub-millisecond precomputed-feature assessments to CT processing.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_RECORD_KEYS and not key.startswith("_"):
                entry[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


def configure_json_logging(level: int = logging.INFO) -> None:
    """Route the root logger to stderr as JSON lines (the server's format)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class Metrics:
    """The server's Prometheus metrics, in a registry of their own (one per server)."""

    def __init__(self) -> None:
        self._http: Any = None
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "osteorisk_requests", "RPCs finished, by method and status code", ["method", "code"], registry=self.registry
        )
        self.errors = Counter(
            "osteorisk_errors", "RPCs finished with a status other than OK", ["method", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "osteorisk_request_duration_seconds",
            "RPC latency in seconds, by method",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        # multiprocess_mode applies when several server processes share one metrics directory (multiprocess.py)
        self.in_flight = Gauge(
            "osteorisk_requests_in_flight", "RPCs being served", registry=self.registry, multiprocess_mode="livesum"
        )
        self.model = Gauge(
            "osteorisk_model_info",
            "The loaded model (value 1)",
            ["id", "version", "sha256"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )

    def count_refused(self, method: str, code: grpc.StatusCode) -> None:
        """An RPC refused before it ran (authentication): counted like the others."""
        self.requests.labels(method, code.name).inc()
        self.errors.labels(method, code.name).inc()

    def set_model(self, model_id: str, version: str, sha256: str) -> None:
        self.model.clear()
        self.model.labels(model_id, version, sha256).set(1)

    def serve_http(self, host: str, port: int) -> int:
        """Expose /metrics over HTTP until `close`; returns the bound port (port 0 picks one)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._http = server
        return int(server.server_port)

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


def _code_name(context: grpc.ServicerContext, failed: bool) -> str:
    # set by abort/set_code (grpc-stubs lag the runtime, which has had code() since 1.38); None means OK
    code = context.code()  # type: ignore[attr-defined]
    if code is None:
        return "UNKNOWN" if failed else "OK"
    return str(code.name) if isinstance(code, grpc.StatusCode) else str(code)


def _request_id(context: grpc.ServicerContext) -> str:
    """The client's `x-request-id` metadata (for log lines; at most 64 characters)."""
    return next((str(v) for k, v in context.invocation_metadata() or () if k == "x-request-id"), "")[:64]


class _MethodMetrics:
    """One method's metric children, looked up once (a labels() call per RPC costs a lock and a dict)."""

    def __init__(self, metrics: Metrics, method: str) -> None:
        self._metrics = metrics
        self.method = method
        self.latency = metrics.latency.labels(method)
        self._by_code: dict[str, Any] = {}

    def count(self, code: str) -> None:
        child = self._by_code.get(code)
        if child is None:
            child = self._by_code.setdefault(code, self._metrics.requests.labels(self.method, code))
        child.inc()
        if code != "OK":
            self._metrics.errors.labels(self.method, code).inc()


class ObservabilityInterceptor(grpc.ServerInterceptor):
    """Counts, times and logs every RPC (method, code, duration, request id), without request content.

    Outermost interceptor: the handler chain of each method is built once and reused for every call of that
    method, so the interceptors inside it must read per-call data (metadata, peer) inside the call, as
    `AuthInterceptor` does, never when the handler is built (tests/server/test_security.py checks it).
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        self._lock = threading.Lock()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        cached = self._handlers.get(method)
        if cached is not None:
            return cached
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        wrapped = wrap_handler(handler, self._around(method))
        with self._lock:
            return self._handlers.setdefault(method, wrapped)

    def _around(self, method: str) -> Callable[[Behaviour], Behaviour]:
        counters = _MethodMetrics(self._metrics, method)

        def around(behaviour: Behaviour) -> Behaviour:
            def run(request: Any, context: grpc.ServicerContext) -> Any:
                start = time.perf_counter()
                self._metrics.in_flight.inc()
                try:
                    result = behaviour(request, context)
                except BaseException:
                    self._finish(counters, context, start, failed=True)
                    raise
                if isinstance(result, Iterator):
                    return self._observe_stream(result, counters, context, start)
                self._finish(counters, context, start, failed=False)
                return result

            return run

        return around

    def _observe_stream(
        self, responses: Iterator[Any], counters: _MethodMetrics, context: grpc.ServicerContext, start: float
    ) -> Iterator[Any]:
        failed = True
        try:
            yield from responses
            failed = False
        except GeneratorExit:  # the caller went away mid-stream
            if context.code() is None:  # type: ignore[attr-defined]
                context.set_code(grpc.StatusCode.CANCELLED)
            raise
        finally:
            self._finish(counters, context, start, failed=failed)

    def _finish(self, counters: _MethodMetrics, context: grpc.ServicerContext, start: float, *, failed: bool) -> None:
        elapsed = time.perf_counter() - start
        code = _code_name(context, failed)
        self._metrics.in_flight.dec()
        counters.count(code)
        counters.latency.observe(elapsed)
        # failures at INFO (WARNING for server faults); successes at DEBUG: metrics count every RPC, and a
        # log line per successful call would cost more than a fast assessment itself
        level = logging.WARNING if code in ("INTERNAL", "UNKNOWN") else logging.DEBUG if code == "OK" else logging.INFO
        if log.isEnabledFor(level):
            log.log(
                level,
                "rpc finished",
                extra={
                    "method": counters.method,
                    "code": code,
                    "duration_ms": round(elapsed * 1000, 3),
                    "request_id": _request_id(context),
                },
            )


class AuditLog:
    """One JSON line per assessment: time, caller, patient id, model. Thread-safe; append-only."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600, exist_ok=True)

    def record(
        self, *, caller: str, method: str, patient_id: str, model_id: str, model_version: str, outcome: str
    ) -> None:
        if self._path is None:
            return
        line = json.dumps(
            {
                "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "caller": caller,
                "method": method,
                "patient_id": patient_id,
                "model": f"{model_id}@{model_version}",
                "outcome": outcome,
            },
            separators=(",", ":"),
        )
        with self._lock:  # the file is (re)created private, e.g. after log rotation
            descriptor = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(descriptor, "a") as handle:
                handle.write(line + "\n")
