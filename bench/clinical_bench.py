"""Benchmark: Keira's ~2 MB Synthea bundle to a ClinicalRecord (target <= 50 ms, parse + extraction).

Prints the median and p90 of repeated runs, with the Bundle parse (JSON + indexing) and the extraction
(`build_record`, full R4B validation) timed separately, after one warm-up run (imports, fhir.resources model
classes); wall-clock and this process's CPU time (which other load on the machine barely changes).

    .venv/bin/python bench/clinical_bench.py [--runs 30] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date
from pathlib import Path

from clinical.extract import build_record
from clinical.sources.base import single_patient_id
from clinical.sources.bundle import BundleSource

KEIRA = "fhir/synthea/Keira_Huel_279e1ce8-1a84-492b-bb78-b1d13a0d564c.json"
INDEX = date(2003, 6, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parent.parent.parent / "shared" / "data")
    args = parser.parse_args()
    path = args.data / KEIRA
    data = path.read_bytes()
    source = BundleSource.from_bytes(data)
    build_record(source, single_patient_id(source), INDEX)  # warm-up
    parse_ms: list[float] = []
    extract_ms: list[float] = []
    cpu_parse_ms: list[float] = []
    cpu_extract_ms: list[float] = []
    for _ in range(args.runs):
        t0, c0 = time.perf_counter(), time.process_time()
        source = BundleSource.from_bytes(data)
        t1, c1 = time.perf_counter(), time.process_time()
        build_record(source, single_patient_id(source), INDEX)
        t2, c2 = time.perf_counter(), time.process_time()
        parse_ms.append((t1 - t0) * 1000)
        extract_ms.append((t2 - t1) * 1000)
        cpu_parse_ms.append((c1 - c0) * 1000)
        cpu_extract_ms.append((c2 - c1) * 1000)
    total = [p + e for p, e in zip(parse_ms, extract_ms, strict=True)]
    cpu_total = [p + e for p, e in zip(cpu_parse_ms, cpu_extract_ms, strict=True)]

    def line(name: str, values: list[float]) -> str:
        p90 = statistics.quantiles(values, n=10)[-1]
        return f"{name:10s} median {statistics.median(values):7.1f} ms   p90 {p90:7.1f} ms"

    print(f"bundle {path.name}: {len(data) / 1e6:.2f} MB, {args.runs} runs, index date {INDEX}")
    print(line("parse", parse_ms))
    print(line("extract", extract_ms))
    print(line("total", total))
    print(line("CPU parse", cpu_parse_ms))
    print(line("CPU extr.", cpu_extract_ms))
    print(line("CPU total", cpu_total))
    print(f"target <= 50 ms total: {'met' if statistics.median(total) <= 50 else 'NOT met'}")


if __name__ == "__main__":
    main()
