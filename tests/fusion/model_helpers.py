"""Small trained models shared by the fusion model tests (cached per session; small n keeps them fast)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from fusion.bundled import DEFAULT_FEATURES
from fusion.models.competing import competing_target
from fusion.synth import synth_cohort
from fusion.training import TrainConfig, train_model

TRAIN_SEED = 4101
TEST_FEATURES = DEFAULT_FEATURES


@cache
def small_cohort(n: int = 3000, seed: int = TRAIN_SEED) -> pd.DataFrame:
    return synth_cohort(n, seed, truth=False).table


def trained_model_dir(root: Path, *, kind: str = "cox", bootstrap: int = 8, n: int = 3000, **params: object) -> Path:
    config = TrainConfig(
        kind=kind,  # type: ignore[arg-type]
        features=TEST_FEATURES,
        seed=1,
        bootstrap=bootstrap,
        estimator_params=params,
        trained_on="synthetic test cohort",
    )
    out = root / f"{kind}-{bootstrap}-{n}"
    train_model(small_cohort(n), config).save(out)
    return out


def exponential_competing(
    n: int, seed: int, b1: np.ndarray, b2: np.ndarray, *, rate1: float = 0.03, rate2: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Covariates and a competing_target with constant cause-specific hazards (true CIF in closed form)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, b1.size))
    r1 = rate1 * np.exp(x @ b1)
    r2 = rate2 * np.exp(x @ b2)
    t1, t2 = rng.exponential(1 / r1), rng.exponential(1 / r2)
    censor = np.minimum(rng.uniform(2, 15, n), 10.0)
    time = np.minimum.reduce([t1, t2, censor])
    event = np.where(time == t1, 1, np.where(time == t2, 2, 0))
    return x, competing_target(event, time)


def exponential_true_cif(
    x: np.ndarray, b1: np.ndarray, b2: np.ndarray, horizons: list[float], *, rate1: float = 0.03, rate2: float = 0.05
) -> np.ndarray:
    r1 = rate1 * np.exp(x @ b1)
    r2 = rate2 * np.exp(x @ b2)
    return np.stack([(r1 / (r1 + r2)) * (1 - np.exp(-(r1 + r2) * h)) for h in horizons], axis=1)
