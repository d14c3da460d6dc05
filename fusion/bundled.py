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
import time
from collections.abc import Sequence
from pathlib import Path

from fusion.training import TrainConfig, TrainedModel, train_model

MODEL_DIR_ENV = "OSTEORISK_MODEL_DIR"
DEFAULT_N = 60_000
DEFAULT_SEED = 20_240_501
DEFAULT_BOOTSTRAP = 50
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


def build_default_model(
    *, n: int = DEFAULT_N, seed: int = DEFAULT_SEED, bootstrap: int = DEFAULT_BOOTSTRAP
) -> TrainedModel:
    """Generate the synthetic cohort and train the default model (same inputs -> same bytes)."""
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
    return train_model(cohort, config)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fusion.bundled", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="model directory (default: models/default)")
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="synthetic patients")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP)
    args = parser.parse_args(argv)
    out = args.out or default_model_dir()
    start = time.perf_counter()
    trained = build_default_model(n=args.n, seed=args.seed, bootstrap=args.bootstrap)
    trained.save(out)
    from fusion.artifacts import load_model

    model = load_model(out)
    print(f"default model written to {out} in {time.perf_counter() - start:.1f} s; sha256 {model.sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
