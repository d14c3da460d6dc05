"""`osteorisk evaluate`: discrimination and calibration of a model on a cohort table with outcomes.

    osteorisk evaluate --model MODEL_DIR --cohort FILE [--report DIR] [--json] [--horizons 1 2 5 10]
    osteorisk evaluate --oracle --cohort SYNTHETIC_WITH_TRUTH.parquet --report DIR

Survival models: Harrell's and Uno's C, time-dependent AUC, Brier and integrated Brier scores, IPA,
calibration slope, ICI and observed/expected (Aalen-Johansen) per outcome and horizon, with calibration
plots. Classifiers (card kind "logistic"): AUC, Brier, calibration slope/intercept, ICI, reliability.
Cohorts with CT L1 attenuation and DXA also get the L1 screening thresholds against DXA osteoporosis.
`--oracle` scores a synthetic cohort's true risks (`osteorisk synth cohort --truth`): the reference no
model can beat; a model evaluated on such a cohort is reported beside the oracle automatically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from fusion.cohort_table import read_cohort
from fusion.errors import CohortError
from fusion.evaluate import (
    DEFAULT_EVALUATION_HORIZONS,
    EvaluationReport,
    ModelSummary,
    evaluate,
    oracle_predictions,
    render_text,
)
from fusion.features import parse_column_map
from server.cli.arguments import horizon_years


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "evaluate", help="evaluate a model on a cohort table", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", type=Path, metavar="MODEL_DIR", help="a model directory (manifest.json)")
    which.add_argument("--oracle", action="store_true", help="evaluate the cohort's true risks (synthetic truth)")
    parser.add_argument("--cohort", type=Path, required=True, help="cohort table with outcomes (.parquet/.csv)")
    parser.add_argument("--report", type=Path, metavar="DIR", help="write metrics.json, PNG plots and README.md")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    parser.add_argument(
        "--horizons", type=horizon_years, nargs="+", default=list(DEFAULT_EVALUATION_HORIZONS), metavar="YEARS",
        help="horizons in years (default: 1 2 5 10)",
    )  # fmt: skip
    parser.add_argument(
        "--column-map", metavar="OLD=NEW,...", help="rename cohort columns first (as train/predict), e.g. AGE=age_years"
    )
    parser.set_defaults(func=run)


def _model_predictions(model_dir: Path, cohort: pd.DataFrame, horizons: list[float]) -> tuple[
    pd.DataFrame, ModelSummary, str | None
]:  # fmt: skip
    from fusion.artifacts import load_model

    loaded = load_model(model_dir)
    card = loaded.card
    summary = ModelSummary(
        id=card.id, version=card.version, kind=card.kind, sha256=loaded.sha256, trained_on=card.trained_on
    )
    if card.kind == "logistic":
        return loaded.predict_frame(cohort, skip_invalid=True), summary, card.target
    lo, hi = card.min_horizon_years, card.max_horizon_years
    grid = sorted({*(h for h in horizons if lo <= h <= hi), *(float(y) for y in range(1, 11) if lo <= y <= hi)})
    skipped = [h for h in horizons if not lo <= h <= hi]
    if skipped:
        print(
            f"osteorisk evaluate: warning: horizons {skipped} lie outside the model's range [{lo:g}, {hi:g}]",
            file=sys.stderr,
        )
    if not grid:
        raise CohortError(f"no horizon in the model's range [{lo:g}, {hi:g}] years", reason="BAD_HORIZON")
    return loaded.predict_frame(cohort, grid, skip_invalid=True), summary, None


def run(args: argparse.Namespace) -> int:
    column_map = parse_column_map(args.column_map) or None
    cohort = read_cohort(args.cohort, require=("features",), column_map=column_map)
    target = None
    if args.oracle:
        predictions = oracle_predictions(cohort)
        summary = ModelSummary(id="oracle", kind="truth", trained_on="the generating model of a synthetic cohort")
    else:
        predictions, summary, target = _model_predictions(args.model, cohort, list(args.horizons))
    report: EvaluationReport = evaluate(
        predictions, cohort, horizons=args.horizons, report_dir=args.report, model=summary, target=target
    )
    if args.json:
        print(report.model_dump_json(indent=2, by_alias=True))
    else:
        print(render_text(report))
        if args.report is not None:
            print(f"report written to {args.report}")
    return 0
