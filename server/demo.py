"""`make run`: the product's front door, on embedded defaults and a real gRPC round trip.

1. Makes the demo CT once (a synthetic phantom, seeded, written as a real DICOM series under `.cache/demo/`)
   — no patient data ships with osteorisk.
2. Starts the osteorisk server on 127.0.0.1 with the bundled model and, as its FHIR source, the bundled
   synthetic patient (`server/demo_patient_bundle.json`); no other servers.
3. Sends one `Assess` over gRPC: the patient by id on the server's FHIR source, the CT inline as DICOM.
4. Prints the result for a person, then keeps serving until Ctrl-C (`--once` stops after the round trip).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import date
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.app import start
from server.client import ClientOptions, assess_remote
from server.config import FhirSourceConfig, ServerConfig
from server.generated.osteorisk.v1 import fracture_risk_service_pb2 as pb
from server.report_text import render_report

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO_ROOT / ".cache" / "demo"
DEMO_BUNDLE = Path(__file__).resolve().parent / "demo_patient_bundle.json"
DEMO_PATIENT = "demo-0001"
DEMO_STUDY_DATE = date(2024, 6, 15)
DEMO_SEED = 20240615
DEMO_TRABECULAR_HU = 92.0  # low attenuation (Pickhardt 2013: <= 110 HU probable osteoporosis)


def demo_ct(directory: Path = DEMO_DIR) -> Path:
    """The demo CT series (a phantom with known truth), written once and reused."""
    from imaging.phantom import make_phantom, write_dicom_series

    folder = directory / "ct"
    if folder.is_dir() and any(folder.iterdir()):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    phantom = make_phantom(seed=DEMO_SEED, trabecular_hu=DEMO_TRABECULAR_HU)
    write_dicom_series(phantom, folder, study_date=DEMO_STUDY_DATE, seed=DEMO_SEED, patient_pseudonym="DEMO^SYNTHETIC")
    return folder


def _wait_serving(target: str, timeout_s: float = 120.0) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for _ in range(int(timeout_s * 10)):
            reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
            threading.Event().wait(0.1)
    raise RuntimeError("the server did not become SERVING (did the bundled model build? run `make model`)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=50051, help="port to serve on (0 picks a free one)")
    parser.add_argument("--once", action="store_true", help="stop after the round trip")
    args = parser.parse_args(argv)

    print("Preparing the demo CT (synthetic phantom, DICOM) ...", flush=True)
    ct = demo_ct()
    config = ServerConfig(port=args.port, fhir=FhirSourceConfig(source=str(DEMO_BUNDLE)))
    running = start(config)
    target = f"127.0.0.1:{running.port}"
    try:
        _wait_serving(target)
        print(f"osteorisk server SERVING on {target} (bundled synthetic model; FHIR source: {DEMO_BUNDLE.name})\n")
        request = pb.AssessRequest(request_id="make-run", fhir_patient=pb.FhirPatient(patient_id=DEMO_PATIENT))
        request.inline_image.format = pb.InlineImage.DICOM
        request.inline_image.dicom_instances.extend(p.read_bytes() for p in sorted(ct.iterdir()))
        slices = len(request.inline_image.dicom_instances)
        print(f"Assess over gRPC: patient {DEMO_PATIENT} on the server's FHIR source, {slices} CT slices inline\n")
        report = assess_remote(ClientOptions(target=target), request)
        print(render_report(report))
        if args.once:
            return 0
        print(
            f"\nStill serving on {target}; try `.venv/bin/osteorisk assess --server {target} --patient {DEMO_PATIENT}`."
            " Press Ctrl-C to stop.",
            flush=True,
        )
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
        return 0
    finally:
        running.stop(2.0)


if __name__ == "__main__":
    sys.exit(main())
