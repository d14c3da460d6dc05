"""Benchmark: synthetic cohort generation (1,000,000 rows) and metrics/evaluation on 100,000 rows.

    .venv/bin/python bench/synth_bench.py [--rows 1000000] [--metric-rows 100000]

Each generation case runs in a fresh child process so that its peak RSS is its own. Prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child(case: str, rows: int) -> dict[str, Any]:
    from fusion.cohort_table import write_cohort
    from fusion.synth import synth_cohort

    baseline = _peak_rss_mib()
    started, cpu = time.perf_counter(), time.process_time()
    cohort = synth_cohort(rows, seed=2024, truth=case != "table")
    generated = time.perf_counter() - started
    result: dict[str, Any] = {
        "case": case,
        "rows": rows,
        "generate_s": generated,
        "generate_cpu_s": time.process_time() - cpu,
    }
    if case == "truth+parquet":
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            path = write_cohort(cohort.with_truth(), Path(tmp) / "cohort.parquet")
            result["write_s"] = time.perf_counter() - started
            result["file_mib"] = path.stat().st_size / 2**20
    result["peak_rss_mib"] = _peak_rss_mib()
    result["import_rss_mib"] = baseline
    return result


def _run_child(case: str, rows: int) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", case, "--rows", str(rows)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    parsed: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return parsed


def _timed(fn: Callable[[], object], repeats: int = 3) -> tuple[float, float]:
    """Best wall-clock and best CPU seconds over `repeats` runs (CPU time is less sensitive to other load)."""
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        fn()
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best, best_cpu


def _metrics(rows: int) -> list[tuple[str, tuple[float, float]]]:
    import numpy as np

    from fusion.evaluate import ModelSummary, evaluate, oracle_predictions
    from fusion.metrics import (
        aalen_johansen,
        brier_score,
        calibration_curve,
        calibration_slope,
        censoring_survival,
        harrell_c,
        observed_expected,
        time_dependent_auc,
        uno_c,
    )
    from fusion.synth import synth_cohort

    df = synth_cohort(rows, seed=2025).with_truth()
    t = df["time_years"].to_numpy()
    e = df["event"].to_numpy(dtype=np.float64)
    p = df["true_risk_mof_10y"].to_numpy()
    g = censoring_survival(t, e)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("Harrell C (CIF, Wolbers)", lambda: harrell_c(t, e, p)),
        ("Harrell C (cause-specific)", lambda: harrell_c(t, e, p, competing="censor")),
        ("Uno C at 10 y", lambda: uno_c(t, e, p, horizon=10.0, censoring=g)),
        ("time-dependent AUC at 10 y", lambda: time_dependent_auc(t, e, p, horizon=10.0, censoring=g)),
        ("Brier at 10 y", lambda: brier_score(t, e, p, horizon=10.0, censoring=g)),
        ("calibration slope at 10 y", lambda: calibration_slope(t, e, p, horizon=10.0, censoring=g)),
        ("calibration curve + ICI at 10 y", lambda: calibration_curve(t, e, p, horizon=10.0, censoring=g)),
        ("Aalen-Johansen + O/E at 10 y", lambda: (aalen_johansen(t, e), observed_expected(t, e, p, horizon=10.0))),
    ]
    results = [(name, _timed(fn)) for name, fn in cases]
    predictions = oracle_predictions(df)
    results.append(
        (
            "evaluate(): 2 outcomes x 4 horizons, no plots",
            _timed(lambda: evaluate(predictions, df, model=ModelSummary(id="oracle")), repeats=1),
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        results.append(
            (
                "evaluate(): same, with report (8 PNGs)",
                _timed(
                    lambda: evaluate(predictions, df, model=ModelSummary(id="oracle"), report_dir=Path(tmp)),
                    repeats=1,
                ),
            )
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--metric-rows", type=int, default=100_000)
    parser.add_argument("--child", choices=["table", "truth", "truth+parquet"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.rows)))
        return 0
    print(f"synthetic cohort generation, {args.rows:,} rows (cpu count {os.cpu_count()})")
    print(f"{'case':<16} {'generate s':>11} {'(CPU s)':>8} {'write s':>8} {'file MiB':>9} {'peak RSS MiB':>13}")
    for case in ("table", "truth", "truth+parquet"):
        r = _run_child(case, args.rows)
        write = f"{r['write_s']:.2f}" if "write_s" in r else "-"
        size = f"{r['file_mib']:.0f}" if "file_mib" in r else "-"
        print(
            f"{case:<16} {r['generate_s']:>11.2f} {r['generate_cpu_s']:>8.2f} {write:>8} {size:>9} "
            f"{r['peak_rss_mib']:>13.0f}"
        )
    print(f"\nmetrics on {args.metric_rows:,} rows (best of 3; evaluate once): wall s, CPU s")
    for name, (seconds, cpu_seconds) in _metrics(args.metric_rows):
        print(f"{name:<45} {seconds:>8.3f} {cpu_seconds:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
