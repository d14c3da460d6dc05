"""The bundled default model: cause-specific Cox models trained on a seeded synthetic cohort.

It demonstrates the pipeline and is NOT for clinical use: its card says so (`trained_on`, `intended_use`,
`not_for_clinical_use`), and so does every report made with it. Sites train and validate their own models
with `osteorisk train`.

Built by `make model` (`python -m fusion.bundled --out models/default`); rebuilding with the same code gives
byte-identical files (seeded generator, seeded bootstrap, fixed `created`). `default_model_dir()` is where
the service and the CLI look for it; the environment variable `OSTEORISK_MODEL_DIR` wins.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from fusion.training import TrainConfig, TrainedModel, train_model

MODEL_DIR_ENV = "OSTEORISK_MODEL_DIR"
DEFAULT_N = 60_000
DEFAULT_SEED = 20_240_501
DEFAULT_BOOTSTRAP = 50
HELDOUT_N = 20_000
HELDOUT_SEED_OFFSET = 1
DEFAULT_FEATURES: tuple[str, ...] = (
    "age_years",
    "sex",
    "bmi_kg_m2",
    "prior_fragility_fracture",
    "prior_hip_fracture",
    "prior_vertebral_fracture",
    "recent_fracture_2y",
    "falls_last_12m",
    "parental_hip_fracture",
    "current_smoker",
    "glucocorticoids",
    "rheumatoid_arthritis",
    "secondary_osteoporosis",
    "alcohol_3_or_more_units_day",
    "osteoporosis_treatment",
    "mean_hu_l1_l4",
)
"""FRAX-like clinical risk factors (Kanis et al. 2008, doi:10.1007/s00198-007-0543-5) plus falls, treatment
and the CT's mean L1-L4 trabecular attenuation (less missing and less noisy than L1 alone)."""
TRAINED_ON = "synthetic cohort (osteorisk synth_cohort, n={n}, seed={seed}): not real patients"
INTENDED_USE = (
    "Demonstration of the osteorisk pipeline only. Trained on synthetic data; NOT FOR CLINICAL USE. "
    "Sites must train and validate their own models."
)


def default_model_dir() -> Path:
    """`$OSTEORISK_MODEL_DIR` when set, else `models/default` of the source tree."""
    env = os.environ.get(MODEL_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "models" / "default"


def heldout_metrics(trained: TrainedModel, *, n: int, seed: int) -> dict[str, float]:
    """Discrimination and calibration of a trained model on a synthetic cohort of another seed, next to the
    oracle's (the true risks): Harrell's C of the 10-year incidence (death competing) and 10-year O/E
    (Aalen-Johansen observed / mean predicted), for the card."""
    from fusion.artifacts import load_model
    from fusion.metrics import harrell_c, observed_expected
    from fusion.synth import synth_cohort

    held = synth_cohort(n, seed, horizons=(10.0,))
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(trained.save(Path(tmp) / "model"))
        scores = model.predict_frame(held.table, horizons=(10.0,))
    out = {"heldout_n": float(n), "heldout_seed": float(seed)}
    for prefix, tc, ec in (("mof", "time_years", "event"), ("hip", "hip_time_years", "hip_event")):
        if f"risk_{prefix}_10y" not in scores.columns:
            continue
        time, event, risk = held.table[tc], held.table[ec], scores[f"risk_{prefix}_10y"]
        truth = held.truth[f"true_risk_{prefix}_10y"]
        out[f"heldout_harrell_c_{prefix}_10y"] = round(harrell_c(time, event, risk, horizon=10.0).c, 6)
        out[f"heldout_oracle_harrell_c_{prefix}_10y"] = round(harrell_c(time, event, truth, horizon=10.0).c, 6)
        out[f"heldout_oe_{prefix}_10y"] = round(observed_expected(time, event, risk, horizon=10.0).ratio, 6)
    return out


def build_default_model(
    *,
    n: int = DEFAULT_N,
    seed: int = DEFAULT_SEED,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    heldout_n: int = HELDOUT_N,
) -> TrainedModel:
    """Generate the synthetic cohort, train the default model and evaluate it on a held-out synthetic
    cohort (seed + 1) whose figures go into the card (same inputs -> same bytes)."""
    from fusion.synth import synth_cohort

    cohort = synth_cohort(n, seed, truth=False).table
    config = TrainConfig(
        kind="cox",
        features=DEFAULT_FEATURES,
        seed=seed,
        bootstrap=bootstrap,
        model_id="osteorisk-default-synthetic",
        version="1.0",
        trained_on=TRAINED_ON.format(n=n, seed=seed),
        intended_use=INTENDED_USE,
        not_for_clinical_use=True,
    )
    trained = train_model(cohort, config)
    if heldout_n > 0:
        trained = trained.with_metrics(heldout_metrics(trained, n=heldout_n, seed=seed + HELDOUT_SEED_OFFSET))
    return trained


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fusion.bundled", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="model directory (default: models/default)")
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="synthetic patients")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP)
    parser.add_argument("--heldout-n", type=int, default=HELDOUT_N, help="held-out patients for the card (0: none)")
    args = parser.parse_args(argv)
    out = args.out or default_model_dir()
    start = time.perf_counter()
    trained = build_default_model(n=args.n, seed=args.seed, bootstrap=args.bootstrap, heldout_n=args.heldout_n)
    trained.save(out)
    from fusion.artifacts import load_model

    model = load_model(out)
    print(f"default model written to {out} in {time.perf_counter() - start:.1f} s; sha256 {model.sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
