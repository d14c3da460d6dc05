"""`osteorisk synth cohort`: synthetic CT cohorts with known truth, from published figures.

    osteorisk synth cohort --n 20000 --seed 11 --out cohort.parquet [--truth] [--horizons 1 2 5 10]

Writes the canonical cohort table (Parquet or CSV by suffix). `--truth` adds each patient's latent
values and true cumulative incidences `true_risk_{mof,hip}_{h}y` (for evaluating models against the
oracle). The same seed always gives the same file. The generating model and its sources:
`fusion/synth/generate.py` and `fusion/data/synth_parameters.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from fusion.cohort_table import write_cohort
from fusion.synth import DEFAULT_TRUTH_HORIZONS, synth_cohort
from fusion.synth.generate import MAX_ROWS
from server.cli.arguments import horizon_years


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= MAX_ROWS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_ROWS:,}, got {value}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "synth", help="generate synthetic data with known truth", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    kinds = parser.add_subparsers(dest="synth_kind", metavar="KIND", required=True)
    cohort = kinds.add_parser(
        "cohort",
        help="a synthetic CT cohort (features, follow-up, optional true risks)",
        description="Generate a synthetic cohort table in the canonical columns, deterministic per seed.",
    )
    cohort.add_argument("--n", type=_positive_int, required=True, help="number of patients")
    cohort.add_argument("--seed", type=_seed, required=True, help="random seed (same seed, same cohort)")
    cohort.add_argument("--out", type=Path, required=True, help="output file: .parquet, .csv or .tsv")
    cohort.add_argument("--truth", action="store_true", help="add latent values and true_risk_* columns")
    cohort.add_argument(
        "--horizons", type=horizon_years, nargs="+", default=list(DEFAULT_TRUTH_HORIZONS), metavar="YEARS",
        help="horizons of the true risks (default: 1 2 5 10)",
    )  # fmt: skip
    cohort.add_argument(
        "--complete", action="store_true", help="no missing values (every feature observed, DXA for everyone)"
    )
    cohort.add_argument("--json", action="store_true", help="print a JSON summary instead of a line")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    cohort = synth_cohort(args.n, args.seed, horizons=args.horizons, truth=args.truth, missing_values=not args.complete)
    table = cohort.with_truth() if args.truth else cohort.table
    path = write_cohort(table, args.out)
    elapsed = time.perf_counter() - started
    events = table["event"].value_counts().to_dict()
    hip_events = table["hip_event"].value_counts().to_dict()
    summary = {
        "path": str(path),
        "rows": len(table),
        "seed": args.seed,
        "truth": bool(args.truth),
        "mof_events": int(events.get(1, 0)),
        "hip_events": int(hip_events.get(1, 0)),
        "deaths_before_mof": int(events.get(2, 0)),
        "seconds": round(elapsed, 2),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"wrote {summary['rows']} patients to {path} (seed {args.seed}; {summary['mof_events']} MOF, "
            f"{summary['hip_events']} hip fractures, {summary['deaths_before_mof']} deaths before MOF) "
            f"in {elapsed:.1f} s",
            file=sys.stdout,
        )
    return 0
