"""`osteorisk cohort score | features | report`: batch work for epidemiologists, locally or on Dask.

    osteorisk cohort score --in cohort.parquet --out scores.parquet [--model DIR] [--engine local|dask]
                           [--scheduler tcp://host:8786] [--workers N] [--chunk-rows N]
                           [--features features.parquet] [--index-date YYYY-MM-DD] [--restart] [--quiet]
    osteorisk cohort features --studies studies.csv --out features.parquet [--engine local|dask] [--workers N]
                           [--backend labels|builtin|monai|totalsegmentator] [--qa-dir DIR]
    osteorisk cohort report --in scores.parquet --out report_dir/ [--horizon 10] [--groups tertiles|treatment]

`score` reads a cohort table (Parquet, CSV/TSV, a folder of Parquet files) or a FHIR Bulk Data export
folder (joined with a features table), in chunks, and writes per-patient risks with 95% intervals,
diagnosis, screening flags (`flags`, one `flag_<CODE>` boolean column each), missing-input warnings
and a status as Parquet. An interrupted run resumes from its work directory (OUT.work/) when rerun with
the same arguments. `features` measures many CT studies in parallel (one row per study, failures with
their reason). `report` writes PNG plots and one self-contained HTML report of a scored cohort.
Progress bars go to stderr (`--quiet` hides them); the summary line goes to stdout (`--json` for JSON).
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path
from typing import Any

from fusion.bundled import default_model_dir
from fusion.cohort.engines import ENGINES
from fusion.types import DEFAULT_HORIZONS_YEARS
from server.cli.arguments import horizon_years


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _columns(text: str) -> tuple[str, ...] | None:
    if text == "all":
        return None
    if text == "none":
        return ()
    return tuple(c.strip() for c in text.split(",") if c.strip())


def _engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=ENGINES, default="local", help="where the work runs (default: local)")
    parser.add_argument(
        "--scheduler", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://host:8786 (default: a local Dask cluster)"
    )
    parser.add_argument(
        "--workers", type=_positive, help="worker processes (local: default all CPUs; dask without --scheduler: 2)"
    )
    parser.add_argument("--work-dir", type=Path, help="where finished work is kept (default: OUT.work beside --out)")
    parser.add_argument("--restart", action="store_true", help="discard the finished work of an earlier run")
    parser.add_argument("--keep-work", action="store_true", help="keep the work directory after success")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print a JSON summary instead of a line")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "cohort",
        help="score, measure and report whole cohorts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    jobs = parser.add_subparsers(dest="cohort_command", metavar="JOB", required=True)

    score = jobs.add_parser(
        "score",
        help="risks, diagnosis and flags for every patient of a cohort",
        description="Score a cohort table or a FHIR Bulk Data export in chunks (resumable); writes Parquet.",
    )
    score.add_argument(
        "--in",
        dest="source",
        type=Path,
        required=True,
        metavar="FILE_OR_DIR",
        help="cohort table (.parquet/.csv/.tsv), folder of Parquet files, or FHIR Bulk Data folder",
    )
    score.add_argument("--out", type=Path, required=True, help="scored cohort (.parquet)")
    score.add_argument("--model", type=Path, help="model directory (default: the bundled model)")
    score.add_argument("--features", type=Path, metavar="TABLE", help="CT features by patient (cohort features)")
    score.add_argument(
        "--index-date",
        type=_date,
        metavar="YYYY-MM-DD",
        help="index date of every row/patient (else the index_date column, or the CT date)",
    )
    score.add_argument(
        "--chunk-rows",
        type=_positive,
        default=None,
        help="rows per chunk: the unit of work and of resuming (default: 65536)",
    )
    score.add_argument(
        "--horizons",
        type=horizon_years,
        nargs="+",
        default=list(DEFAULT_HORIZONS_YEARS),
        metavar="YEARS",
        help="horizons in years (default: 1 2 5 10)",
    )
    score.add_argument(
        "--columns",
        type=_columns,
        default=None,
        metavar="all|none|A,B",
        help="input columns to carry into the output (default: all)",
    )
    _engine_options(score)
    score.set_defaults(func=run_score)

    features = jobs.add_parser(
        "features",
        help="BoneFeatures of many CT studies, in parallel",
        description="Measure many CT studies (one row per study; failures recorded with their reason; resumable).",
    )
    features.add_argument(
        "--studies",
        type=Path,
        required=True,
        metavar="LIST",
        help="CSV/TSV with patient_id, ct[, labels, index_date, study_id], or 'ID PATH [LABELS]' lines",
    )
    features.add_argument("--out", type=Path, required=True, help="features table (.parquet, .csv or .tsv)")
    features.add_argument(
        "--backend",
        choices=("builtin", "labels", "monai", "totalsegmentator"),
        help="segmentation backend (default: labels when a study has labels, else builtin)",
    )
    features.add_argument("--label-convention", default="totalsegmentator", help="label ids of the label maps")
    features.add_argument("--qa-dir", type=Path, help="write a QA picture per study into this folder")
    features.add_argument("--retry-failed", action="store_true", help="measure again the studies that failed before")
    _engine_options(features)
    features.set_defaults(func=run_features)

    report = jobs.add_parser(
        "report",
        help="survival analysis report of a scored cohort (PNG + one HTML file)",
        description="Kaplan-Meier, Aalen-Johansen, Cox hazard ratios, calibration, score and missingness plots.",
    )
    report.add_argument("--in", dest="source", type=Path, required=True, metavar="SCORED", help="cohort score output")
    report.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for report.html and the PNGs")
    report.add_argument("--horizon", type=float, default=None, help="years for calibration and groups (default: 10)")
    report.add_argument(
        "--groups",
        choices=("tertiles", "treatment"),
        default="tertiles",
        help="risk groups: tertiles of predicted risk, or the treatment threshold (default: tertiles)",
    )
    report.add_argument(
        "--cox-max-rows",
        type=_positive,
        default=20_000,
        help="fit Cox models on a seeded random sample of at most this many rows (default: %(default)s)",
    )
    report.add_argument("--json", action="store_true", help="print a JSON summary instead of a line")
    report.set_defaults(func=run_report)


def _print(summary: dict[str, Any], line: str, as_json: bool) -> None:
    print(json.dumps(summary, indent=2, default=str) if as_json else line)


def run_score(args: argparse.Namespace) -> int:
    from fusion.cohort.scoring import DEFAULT_CHUNK_ROWS, score_cohort

    summary = score_cohort(
        args.source,
        args.out,
        model_dir=args.model or default_model_dir(),
        engine=args.engine,
        workers=args.workers,
        scheduler=args.scheduler,
        chunk_rows=args.chunk_rows or DEFAULT_CHUNK_ROWS,
        horizons=args.horizons,
        features=args.features,
        index_date=args.index_date,
        keep_columns=args.columns,
        work_dir=args.work_dir,
        restart=args.restart,
        keep_work=args.keep_work,
        quiet=args.quiet,
    )
    resumed = f", {summary.chunks_resumed} of {summary.chunks} chunks resumed" if summary.chunks_resumed else ""
    _print(
        summary.as_dict(),
        f"scored {summary.rows} rows into {summary.output} ({summary.scored} scored, {summary.refused} refused, "
        f"{summary.no_record} without a record{resumed}) with model {summary.model_id} on {summary.engine} "
        f"({summary.workers} workers) in {summary.seconds:.1f} s",
        args.json,
    )
    return 0


def run_features(args: argparse.Namespace) -> int:
    from fusion.cohort.features_batch import measure_studies

    summary = measure_studies(
        args.studies,
        args.out,
        engine=args.engine,
        workers=args.workers,
        scheduler=args.scheduler,
        backend=args.backend,
        label_convention=args.label_convention,
        qa_dir=args.qa_dir,
        work_dir=args.work_dir,
        restart=args.restart,
        retry_failed=args.retry_failed,
        keep_work=args.keep_work,
        quiet=args.quiet,
    )
    reasons = ", ".join(f"{k} {v}" for k, v in summary.failures_by_reason.items())
    _print(
        summary.as_dict(),
        f"measured {summary.studies} studies into {summary.output}: {summary.ok} ok, {summary.failed} failed"
        f"{f' ({reasons})' if reasons else ''} on {summary.engine} ({summary.workers} workers) in "
        f"{summary.seconds:.1f} s",
        args.json,
    )
    return 0


def run_report(args: argparse.Namespace) -> int:
    from fusion.cohort.report import build_report

    summary = build_report(
        args.source, args.out, horizon=args.horizon, groups=args.groups, cox_max_rows=args.cox_max_rows
    )
    _print(
        summary.as_dict(),
        f"wrote {summary.html} ({len(summary.figures)} figures, {summary.rows} patients) in {summary.seconds:.1f} s",
        args.json,
    )
    return 0
