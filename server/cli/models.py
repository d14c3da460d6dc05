"""`osteorisk train | predict`: fit risk models on cohort tables and score cohort tables with them.

    osteorisk train --cohort cohort.parquet --out models/site [--model cox|forest|net|logistic]
                    [--features a,b,C(c),a:b] [--categorical c] [--target COL] [--seed S] [--bootstrap B]
                    [--column-map OLD=NEW,...] [--calibration platt|isotonic|none]
    osteorisk predict --model models/site --cohort cohort.parquet --out risks.parquet [--horizons 1 2 5 10]

By default the canonical feature columns present in the cohort become the model's inputs. `predict` writes
`patient_id`, `risk_mof_<h>y` / `risk_hip_<h>y` (cumulative incidence, death competing) with `_lo`/`_hi`
95% interval columns, and `warnings` naming imputed inputs (classifiers: `probability` or `p_<class>`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fusion.artifacts import load_model, sha256_file
from fusion.bundled import default_model_dir
from fusion.cohort_table import read_cohort
from fusion.design import split_terms
from fusion.errors import CohortError
from fusion.features import parse_column_map
from fusion.training import DEFAULT_REQUIRED, TrainConfig, train_model
from server.cli.arguments import horizon_years


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(split_terms(text)) if text else ()


def register(subparsers: Any) -> None:
    train: argparse.ArgumentParser = subparsers.add_parser(
        "train", help="train a model on a cohort table", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    train.add_argument("--cohort", type=Path, required=True, help="cohort table (Parquet, CSV or TSV)")
    train.add_argument("--out", type=Path, required=True, help="model directory to write")
    train.add_argument("--model", choices=("cox", "forest", "net", "logistic"), default="cox", help="model kind")
    train.add_argument("--features", help="model terms, comma-separated: NAME, C(NAME), NAME[level], A:B")
    train.add_argument("--categorical", help="inputs to treat as categorical (treatment coding), comma-separated")
    train.add_argument(
        "--required",
        default=",".join(DEFAULT_REQUIRED),
        help="inputs the model refuses to impute (default: %(default)s)",
    )
    train.add_argument("--target", help="label column of a logistic model (e.g. FRACTURE)")
    train.add_argument("--seed", type=int, default=0, help="seed of resampling, folds and initialisation")
    train.add_argument("--bootstrap", type=int, default=50, help="bootstrap refits for 95%% intervals (0: none)")
    train.add_argument("--column-map", help="rename columns first: OLD=NEW,OLD2=NEW2")
    train.add_argument("--calibration", choices=("platt", "isotonic", "none"), default="platt")
    train.add_argument("--cv", type=int, default=5, help="folds for calibration and cross-validated AUC")
    train.add_argument("--no-diagnosis", action="store_true", help="do not train the osteoporosis classifier")
    train.add_argument("--id", dest="model_id", help="model id (default: osteorisk-<kind>)")
    train.add_argument("--model-version", default="1.0")
    train.add_argument("--trained-on", default=None, help="what the training data are (default: the file name)")
    train.add_argument("--intended-use", default="research; validate locally before any clinical use")
    train.add_argument("--json", action="store_true", help="print the model card as JSON")
    train.set_defaults(func=run_train)

    predict: argparse.ArgumentParser = subparsers.add_parser(
        "predict", help="score a cohort table with a model", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    predict.add_argument("--model", type=Path, default=None, help="model directory (default: the bundled model)")
    predict.add_argument("--cohort", type=Path, required=True, help="cohort table (Parquet, CSV or TSV)")
    predict.add_argument("--out", type=Path, required=True, help="output table (.parquet or .csv)")
    predict.add_argument(
        "--horizons", type=horizon_years, nargs="+", default=[1.0, 2.0, 5.0, 10.0], metavar="YEARS",
        help="horizons in years (default: 1 2 5 10)",
    )  # fmt: skip
    predict.add_argument("--column-map", help="rename columns first: OLD=NEW,OLD2=NEW2")
    predict.add_argument(
        "--skip-invalid", action="store_true", help="score what can be scored; refused rows get NaN and a reason"
    )
    predict.set_defaults(func=run_predict)


def run_train(args: argparse.Namespace) -> int:
    column_map = parse_column_map(args.column_map)
    frame = read_cohort(args.cohort, require=(), column_map=column_map)
    config = TrainConfig(
        kind=args.model,
        features=_names(args.features) or None,
        categorical=_names(args.categorical),
        required=_names(args.required),
        target=args.target,
        seed=args.seed,
        bootstrap=args.bootstrap,
        calibration=args.calibration,
        cv=args.cv,
        diagnosis=not args.no_diagnosis,
        model_id=args.model_id,
        version=args.model_version,
        trained_on=args.trained_on or f"cohort table {args.cohort.name}",
        intended_use=args.intended_use,
    )
    trained = train_model(frame, config, data_sha256=sha256_file(args.cohort))
    for warning in trained.warnings:
        print(f"osteorisk train: warning: {warning}", file=sys.stderr)
    trained.save(args.out)
    model = load_model(args.out)
    if args.json:
        print(json.dumps(model.card.model_dump(mode="json", by_alias=True), indent=2))
        return 0
    metrics = model.card.metrics
    print(f"{model.card.kind} model {model.card.id} {model.card.version} -> {args.out} (sha256 {model.sha256})")
    print(f"  inputs: {', '.join(model.plan.names)}")
    shown = [k for k in sorted(metrics) if not k.startswith(("coef.", "imputed_fraction."))]
    print("  " + ", ".join(f"{k}={metrics[k]:g}" for k in shown))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    model = load_model(args.model or default_model_dir())
    frame = read_cohort(args.cohort, require=("features",), column_map=parse_column_map(args.column_map))
    out = model.predict_frame(frame, horizons=args.horizons, skip_invalid=args.skip_invalid)
    suffix = args.out.name.lower()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if suffix.endswith((".parquet", ".pq")):
        out.to_parquet(args.out, index=False)
    elif suffix.endswith(".csv"):
        out.to_csv(args.out, index=False, float_format="%.8g")
    else:
        raise CohortError(f"{args.out.name}: output must end in .parquet or .csv")
    refused = int(out["warnings"].str.startswith("refused").sum())
    imputed = int(out["warnings"].str.startswith("imputed").sum())
    print(
        f"scored {len(out) - refused} of {len(out)} rows with {model.card.id} {model.card.version} -> {args.out}"
        f" ({imputed} with imputed inputs, {refused} refused)"
    )
    return 0
