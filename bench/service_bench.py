"""Service benchmarks (issue: the service). Prints figures; paste them into bench/RESULTS.md.

1. Throughput and latency of `Assess` with precomputed bone features and inline variables: 16 concurrent clients
   on loopback (a separate load-generator process, bench/grpc_load.py), beside a trivial grpcio echo server
   measured in the same run with the same request bytes, so the ratio says what osteorisk costs over gRPC itself.
2. `Assess` of a 300-slice CT study fetched from Orthanc over DICOMweb (a 512x512x300 phantom series, uploaded
   once; the feature cache is off so every call fetches and measures): p50 over a few calls.

    .venv/bin/python bench/service_bench.py [--seconds 10] [--skip-orthanc] [--ct-calls 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

import grpc

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


def _load(target: str, method: str, payload: Path, seconds: float) -> dict[str, object]:
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "grpc_load.py"),
            "--target",
            target,
            "--method",
            method,
            "--request",
            str(payload),
            "--concurrency",
            "16",
            "--seconds",
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def _echo_server() -> tuple[grpc.Server, int]:
    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        return request

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    handler = grpc.method_handlers_generic_handler("bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def throughput(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        payload = Path(tmp) / "request.bin"
        payload.write_bytes(precomputed_request().SerializeToString())
        print(f"request: {payload.stat().st_size} bytes, 16 concurrent clients, {seconds:g} s after 2 s warm-up")
        echo, echo_port = _echo_server()
        try:
            echo_result = _load(f"127.0.0.1:{echo_port}", "/bench.Echo/Echo", payload, seconds)
        finally:
            echo.stop(0)
        running = start(ServerConfig(port=0, max_workers=16))
        try:
            with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                wait_serving(channel)
                pb_grpc.FractureRiskServiceStub(channel).Assess(precomputed_request(), timeout=30)
            assess_result = _load(f"127.0.0.1:{running.port}", METHOD, payload, seconds)
        finally:
            running.stop(0)
        multi_result = _assess_processes(payload, seconds, processes=2)
    print("echo                 :", json.dumps(echo_result))
    print("assess, 1 process    :", json.dumps(assess_result))
    print("assess, 2 processes  :", json.dumps(multi_result))
    for name, result in (("1 process", assess_result), ("2 processes", multi_result)):
        ratio = float(result["requests_per_s"]) / float(echo_result["requests_per_s"])  # type: ignore[arg-type]
        print(f"assess ({name}) / echo throughput ratio: {ratio:.2f}")


def _assess_processes(payload: Path, seconds: float, *, processes: int) -> dict[str, object]:
    """`osteorisk serve --processes N` as a user runs it, loaded the same way."""
    server = subprocess.Popen(
        [sys.executable, "-m", "server.cli.main", "serve", "--port", "0", "--processes", str(processes)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        target = server.stdout.readline().split()[3]
        for _ in range(processes * 6):  # reach every process so that each has loaded its model
            with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
                wait_serving(channel)
                pb_grpc.FractureRiskServiceStub(channel).Assess(precomputed_request(), timeout=30)
        return _load(target, METHOD, payload, seconds)
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
