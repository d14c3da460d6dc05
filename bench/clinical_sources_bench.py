"""Benchmark: FHIR sources at scale. Bulk Data NDJSON -> ClinicalRecord (patients/s, peak RSS) and REST
extraction per patient against a local sekmet-fhir server (median, p95).

1. a synthetic export of `--patients` patients (`clinical.bulk_generator`, seed 4242) is written to a
   temporary directory;
2. `iter_patient_resources` (stream only: partition + group) and `iter_cohort_records` (end to end:
   NDJSON -> ClinicalRecord with `build_record`) run with `--workers` processes; each in a fresh child
   process so that its peak RSS (parent + workers) is its own;
3. `NdjsonSource` single-patient access: the one-pass index build and per-patient reads after it;
4. `--rest-patients` generated patients are loaded into sekmet-fhir (needs `make fhir-venv`) and
   `build_record` over `RestSource` is timed per patient, with `$everything` and with per-type searches.

    .venv/bin/python bench/clinical_sources_bench.py [--patients 20000] [--workers 2] [--rest-patients 50]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # for tests.fhir_server (the sekmet-fhir starter)


def _peak_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def _cpu_s() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its finished children (the worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def run_mode(mode: str, directory: str, workers: int) -> dict[str, Any]:
    """In a fresh process: stream or extract the whole export; time it and report peak RSS."""
    from clinical.bulk import PatientStream, StreamStats, iter_cohort_records
    from clinical.bulk_generator import read_truth

    truth = read_truth(Path(directory) / "truth.csv")
    dates = {pid: row["index_date"] for pid, row in truth.items()}
    del truth
    start = time.perf_counter()
    cpu_start = _cpu_s()
    patients = errors = 0
    if mode == "stream":
        stream = PatientStream(directory, workers=workers)
        for _patient_id, _resources in stream:
            patients += 1
        partitions = stream.stats.partitions
    else:
        stats = StreamStats()
        for result in iter_cohort_records(directory, dates, workers=workers, stats=stats):
            patients += 1
            errors += not result.ok
        partitions = stats.partitions
    seconds = time.perf_counter() - start
    cpu_end = _cpu_s()
    parent_cpu, worker_cpu = cpu_end[0] - cpu_start[0], cpu_end[1] - cpu_start[1]
    return {
        "cpu_ms_per_patient": (parent_cpu + worker_cpu) * 1000 / max(patients, 1),
        "parent_cpu_ms_per_patient": parent_cpu * 1000 / max(patients, 1),
        "mode": mode,
        "patients": patients,
        "errors": errors,
        "seconds": seconds,
        "patients_per_s": patients / seconds,
        "partitions": partitions,
        "peak_rss_parent_mb": _peak_mb(resource.RUSAGE_SELF),
        "peak_rss_worker_mb": _peak_mb(resource.RUSAGE_CHILDREN),
    }


def _child(mode: str, directory: Path, workers: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--dir", str(directory), "--workers", str(workers)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def single_patient(directory: Path, samples: int = 300) -> dict[str, float]:
    from clinical.extract import build_record
    from clinical.sources.ndjson import INDEX_CACHE, NdjsonSource

    INDEX_CACHE.clear()
    source = NdjsonSource(directory)
    start = time.perf_counter()
    ids = list(source.patient_ids())
    list(source.resources(ids[0], ["Observation", "Condition", "MedicationRequest", "FamilyMemberHistory"]))
    index_s = time.perf_counter() - start
    reads: list[float] = []
    records: list[float] = []
    for patient_id in ids[:: max(1, len(ids) // samples)][:samples]:
        t0 = time.perf_counter()
        list(source.resources(patient_id, ["Observation", "Condition", "MedicationRequest", "FamilyMemberHistory"]))
        t1 = time.perf_counter()
        build_record(source, patient_id, date(2026, 1, 1))
        t2 = time.perf_counter()
        reads.append((t1 - t0) * 1000)
        records.append((t2 - t1) * 1000)
    source.close()
    return {
        "index_build_s": index_s,
        "read_median_ms": statistics.median(reads),
        "record_median_ms": statistics.median(records),
    }


def rest_bench(patients: int) -> dict[str, Any]:
    from clinical.bulk import PatientStream
    from clinical.bulk_generator import generate_bulk_export, read_truth
    from clinical.extract import build_record
    from clinical.sources.rest import RestSource
    from tests.fhir_server import running_sekmet

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, running_sekmet(Path(tmp) / "server") as server:
        export = generate_bulk_export(Path(tmp) / "rest", patients=patients, seed=777)
        truth = read_truth(export.truth_path)
        loaded: list[tuple[str, date]] = []
        for patient_id, resources in PatientStream(export.directory, workers=1):
            bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
            loaded.append((server.load_bundle(bundle).patient_id, truth[patient_id]["index_date"]))
        for mode, use_everything in (("$everything", True), ("searches", False)):
            timings: list[float] = []
            with RestSource(server.base_url, use_everything=use_everything) as source:
                build_record(source, *loaded[0])  # warm-up: capability statement, connection
                for server_id, index_date in loaded:
                    t0 = time.perf_counter()
                    build_record(source, server_id, index_date)
                    timings.append((time.perf_counter() - t0) * 1000)
            timings.sort()
            out[mode] = {
                "patients": len(timings),
                "median_ms": statistics.median(timings),
                "p95_ms": timings[min(len(timings) - 1, int(0.95 * len(timings)))],
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rest-patients", type=int, default=50)
    parser.add_argument("--modes", default="stream,records,single", help="bulk runs to do (comma-separated)")
    parser.add_argument("--child", choices=["stream", "records"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_mode(args.child, str(args.dir), args.workers)))
        return

    from clinical.bulk_generator import generate_bulk_export

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory(prefix="osteorisk-bench-") as tmp:
        t0 = time.perf_counter()
        export = generate_bulk_export(Path(tmp) / "export", patients=args.patients, seed=4242)
        size_mb = sum(p.stat().st_size for p in export.files) / 2**20
        print(
            f"generated {export.patients} patients, {export.resources} resources, {size_mb:.0f} MB NDJSON "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        modes = args.modes.split(",")
        for mode in [m for m in ("stream", "records") if m in modes]:
            r = _child(mode, export.directory, args.workers)
            print(
                f"bulk {mode:8s} workers={args.workers}: {r['patients']} patients in {r['seconds']:.1f} s = "
                f"{r['patients_per_s']:.0f} patients/s; {r['partitions']} partitions; peak RSS parent "
                f"{r['peak_rss_parent_mb']:.0f} MB, largest worker {r['peak_rss_worker_mb']:.0f} MB; "
                f"errors {r['errors']}"
            )
            ceiling = args.workers * 1000 / r["cpu_ms_per_patient"]
            print(
                f"    CPU {r['cpu_ms_per_patient']:.3f} ms per patient "
                f"(parent {r['parent_cpu_ms_per_patient']:.3f} ms, "
                f"workers the rest): at most ~{ceiling:.0f} patients/s on {args.workers} idle cores"
            )
        s = single_patient(export.directory) if "single" in modes else None
        if s:
            print(
                f"NdjsonSource single patient: index build {s['index_build_s']:.1f} s (all types, one pass), "
                f"read median {s['read_median_ms']:.2f} ms, build_record median {s['record_median_ms']:.2f} ms"
            )
    if args.rest_patients:
        for mode, r in rest_bench(args.rest_patients).items():
            print(
                f"REST {mode:11s} (sekmet-fhir, 127.0.0.1): {r['patients']} patients, per patient median "
                f"{r['median_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms (build_record incl. HTTP)"
            )
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
