"""Service benchmarks (issue: the service). Prints figures; paste them into bench/RESULTS.md.

1. Throughput and latency of `Assess` with precomputed bone features and inline variables: 16 concurrent clients
   on loopback, each with its own connection and one request at a time (closed loop), beside a trivial grpcio
   echo server measured in the same run with the same request bytes, so the ratio says what osteorisk costs
   over gRPC itself. Two load generators, each in its own process: h2load (nghttp2's HTTP/2 load generator, in
   C, Debian package `nghttp2-client`; it sends the gRPC-framed request and times each response, and the
   server's own metrics confirm that every call ended OK) and bench/grpc_load.py (grpcio's asyncio client, in
   Python: its own CPU time, ~0.2 ms a request, comes off the 2 cores the servers share).
2. `Assess` of a 300-slice CT study fetched from Orthanc over DICOMweb (a 512x512x300 phantom series, uploaded
   once; the feature cache is off so every call fetches and measures): p50 over a few calls.

    .venv/bin/python bench/service_bench.py [--seconds 10] [--skip-orthanc] [--ct-calls 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from server.app import start  # noqa: E402
from server.config import DicomWebConfig, ServerConfig  # noqa: E402
from server.generated.osteorisk.v1 import fracture_risk_service_pb2 as pb  # noqa: E402
from server.generated.osteorisk.v1 import fracture_risk_service_pb2_grpc as pb_grpc  # noqa: E402
from tests.server.conftest import wait_serving  # noqa: E402

METHOD = "/osteorisk.v1.FractureRiskService/Assess"


def precomputed_request() -> pb.AssessRequest:
    request = pb.AssessRequest(patient_id="bench-1", index_date="2024-05-01")
    v = request.variables
    v.age_years.value.number_value = 72
    v.sex.value.string_value = "female"
    v.bmi_kg_m2.value.number_value = 22.5
    v.prior_fragility_fracture.value.bool_value = True
    v.glucocorticoids.value.bool_value = False
    v.current_smoker.value.bool_value = False
    request.bone_features.source.kind = "dicom"
    request.bone_features.source.contrast = "native"
    request.bone_features.segmentation.backend = "builtin"
    request.bone_features.summary.l1_hu = 118.0
    request.bone_features.summary.mean_hu_l1_l4 = 121.0
    request.bone_features.summary.vbmd_l1_l2_mg_cm3 = 95.0
    request.bone_features.summary.acr_category = "low_bone_density"
    return request


Result = dict[str, object]
Loader = Callable[[str, str, Path, float], Result]
CLIENTS = 16  # the benchmark: 16 concurrent clients on loopback
WARMUP_S = 2.0  # before timing: connections open, each server process has its model loaded and warm


def _grpcio_load(target: str, method: str, payload: Path, seconds: float) -> Result:
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "grpc_load.py"),
            *("--target", target, "--method", method, "--request", str(payload)),
            *("--concurrency", str(CLIENTS), "--seconds", str(seconds), "--warmup", str(WARMUP_S)),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: Result = json.loads(out.stdout)
    return result


def _h2load(target: str, method: str, payload: Path, seconds: float) -> Result:
    """h2load with one stream per connection; latencies from its per-request log (HTTP status -1: a failed stream)."""
    message = payload.read_bytes()
    framed = payload.with_suffix(".grpc")
    framed.write_bytes(b"\x00" + len(message).to_bytes(4, "big") + message)  # gRPC frame: uncompressed, length
    log = payload.with_suffix(".h2log")
    log.unlink(missing_ok=True)
    subprocess.run(
        [
            "h2load",
            *("-c", str(CLIENTS), "-m", "1", "-t", "1", "-D", f"{seconds:g}", "--warm-up-time", f"{WARMUP_S:g}"),
            *("-d", str(framed), "-H", "content-type: application/grpc", "-H", "te: trailers"),
            *("--log-file", str(log), f"http://{target}{method}"),
        ],
        capture_output=True,
        check=True,
    )
    rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    lat_ms = np.array([int(r[2]) / 1000 for r in rows if r[1] == "200"])
    failed = sum(1 for r in rows if r[1] != "200")
    return {
        "requests": int(lat_ms.size),
        "seconds": seconds,
        "requests_per_s": round(lat_ms.size / seconds, 1),
        "p50_ms": round(float(np.percentile(lat_ms, 50)), 3),
        "p90_ms": round(float(np.percentile(lat_ms, 90)), 3),
        "p99_ms": round(float(np.percentile(lat_ms, 99)), 3),
        "errors": {"HTTP_FAILED": failed} if failed else {},
    }


def _grpc_codes(metrics_url: str) -> dict[str, float]:
    """Assess calls by gRPC status code, from the server's Prometheus endpoint."""
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    codes: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r'osteorisk_requests_total\{code="(\w+)",method="[^"]*/Assess"\} (\S+)', line)
        if match:
            codes[match.group(1)] = codes.get(match.group(1), 0.0) + float(match.group(2))
    return codes


def _checked(load: Result, metrics_url: str, before: dict[str, float]) -> Result:
    """`load` with the non-OK gRPC codes the server counted meanwhile (h2load sees HTTP, not gRPC status)."""
    after = _grpc_codes(metrics_url)
    failed = {code: n - before.get(code, 0.0) for code, n in after.items() if code != "OK"}
    errors = dict(load["errors"])  # type: ignore[call-overload]
    errors.update({code: int(n) for code, n in failed.items() if n})
    # an RPC refused before any handler runs (RESOURCE_EXHAUSTED past max_concurrent_rpcs) is not counted by
    # the server, and h2load sees HTTP 200: every timed request must also appear as an OK the server counted
    answered_ok = after.get("OK", 0.0) - before.get("OK", 0.0)
    if answered_ok < int(load["requests"]):  # type: ignore[call-overload]
        errors["NOT_ANSWERED_OK"] = int(load["requests"]) - int(answered_ok)  # type: ignore[call-overload]
    return {**load, "errors": errors}


def _echo_server() -> tuple[grpc.Server, int]:
    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        return request

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=ServerConfig().max_workers))
    handler = grpc.method_handlers_generic_handler("bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def throughput(seconds: float) -> None:
    loaders: dict[str, Loader] = {"h2load": _h2load, "grpcio": _grpcio_load}
    if shutil.which("h2load") is None:
        print("h2load not found (Debian package nghttp2-client): the grpcio client only")
        del loaders["h2load"]
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory() as tmp:
        payload = Path(tmp) / "request.bin"
        payload.write_bytes(precomputed_request().SerializeToString())
        print(
            f"request: {payload.stat().st_size} bytes, {CLIENTS} concurrent clients, {seconds:g} s after "
            f"{WARMUP_S:g} s warm-up; {ServerConfig().max_workers} RPC threads a process"
        )
        echo, echo_port = _echo_server()
        try:
            for name, load in loaders.items():
                results[f"echo, {name}"] = load(f"127.0.0.1:{echo_port}", "/bench.Echo/Echo", payload, seconds)
        finally:
            echo.stop(0)
        running = start(ServerConfig(port=0, metrics_port=0))
        try:
            with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                wait_serving(channel)
                pb_grpc.FractureRiskServiceStub(channel).Assess(precomputed_request(), timeout=30)
            metrics_url = f"http://127.0.0.1:{running.metrics_port}/metrics"
            for name, load in loaders.items():
                before = _grpc_codes(metrics_url)
                result = load(f"127.0.0.1:{running.port}", METHOD, payload, seconds)
                results[f"assess 1 process, {name}"] = _checked(result, metrics_url, before)
        finally:
            running.stop(0)
        for name, result in _assess_processes(payload, seconds, loaders, processes=2).items():
            results[f"assess 2 processes, {name}"] = result
    for label, result in results.items():
        print(f"{label:30s}: {json.dumps(result)}")
    for name in loaders:
        echo_rate = float(results[f"echo, {name}"]["requests_per_s"])  # type: ignore[arg-type]
        for processes in ("1 process", "2 processes"):
            rate = float(results[f"assess {processes}, {name}"]["requests_per_s"])  # type: ignore[arg-type]
            print(f"assess ({processes}) / echo throughput ratio, {name}: {rate / echo_rate:.2f}")


def _assess_processes(
    payload: Path, seconds: float, loaders: dict[str, Loader], *, processes: int
) -> dict[str, Result]:
    """`osteorisk serve --processes N` as a user runs it, loaded the same way."""
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "server.cli.main", "serve"),
            *("--port", "0", "--processes", str(processes), "--metrics-port", "0"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        target = server.stdout.readline().split()[3]
        metrics_url = server.stdout.readline().split()[2]
        for _ in range(processes * 6):  # reach every process so that each has loaded its model
            with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                wait_serving(channel)
                pb_grpc.FractureRiskServiceStub(channel).Assess(precomputed_request(), timeout=30)
        results = {}
        for name, load in loaders.items():
            before = _grpc_codes(metrics_url)
            results[name] = _checked(load(target, METHOD, payload, seconds), metrics_url, before)
        return results
    finally:
        server.terminate()
        server.wait(timeout=30)


def orthanc_ct(calls: int) -> None:
    from imaging.phantom import make_phantom, write_dicom_series
    from tests.orthanc_server import OrthancServer, orthanc_available

    why = orthanc_available()
    if why:
        print(f"orthanc benchmark skipped: {why}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        phantom = make_phantom(seed=4242, shape=(512, 512), spacing=(0.75, 0.75, 1.25))  # ~300 slices
        series = write_dicom_series(phantom, root / "ct", seed=4242)
        files = sorted((root / "ct").iterdir())
        print(f"phantom series: {len(files)} slices of 512x512 ({sum(f.stat().st_size for f in files) / 1e6:.0f} MB)")
        orthanc = OrthancServer.start(root / "orthanc")
        try:
            orthanc.upload(files)
            config = ServerConfig(
                port=0, dicomweb=DicomWebConfig(base_url=orthanc.dicomweb_url), feature_cache_entries=0
            )
            running = start(config)
            try:
                with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                    wait_serving(channel)
                    stub = pb_grpc.FractureRiskServiceStub(channel)
                    request = precomputed_request()
                    request.ClearField("bone_features")
                    request.pacs_series.study_uid = series.study_uid
                    request.pacs_series.series_uid = series.series_uid
                    times = []
                    for _ in range(calls):
                        started = time.perf_counter()
                        stub.Assess(request, timeout=120)
                        times.append(time.perf_counter() - started)
            finally:
                running.stop(0)
        finally:
            orthanc.stop()
    print(
        f"Assess of a {len(files)}-slice study from Orthanc: p50 {statistics.median(times):.2f} s, "
        f"min {min(times):.2f} s, max {max(times):.2f} s over {calls} calls"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--skip-orthanc", action="store_true")
    parser.add_argument("--ct-calls", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
    throughput(args.seconds)
    if not args.skip_orthanc:
        orthanc_ct(args.ct_calls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
