"""The issue's acceptance check at test size: the default model's recipe (bundled features, cause-specific Cox),
trained on one synthetic cohort and checked on a held-out cohort of another seed nobody tuned on: Harrell's C
(10-year, death competing) within 0.01 of the oracle's (the true risks) for MOF and hip, and 10-year
observed/expected (Aalen-Johansen) between 0.9 and 1.1. The full-size run (20,000 held-out patients, the
bundled model itself) is `bench/fusion_bench.py`."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusion.artifacts import load_model
from fusion.bundled import DEFAULT_FEATURES
from fusion.metrics import harrell_c, observed_expected
from fusion.synth import synth_cohort
from fusion.training import TrainConfig, train_model

TRAIN_SEED = 7_3001
HELDOUT_SEED = 7_3002


@pytest.mark.slow
def test_default_recipe_matches_the_oracle_on_held_out_data(tmp_path: Path) -> None:
    train = synth_cohort(40_000, TRAIN_SEED, truth=False).table
    config = TrainConfig(features=DEFAULT_FEATURES, bootstrap=0, diagnosis=False, seed=1)
    model = load_model(train_model(train, config).save(tmp_path / "model"))
    held = synth_cohort(20_000, HELDOUT_SEED)
    scores = model.predict_frame(held.table, horizons=(10.0,))
    for prefix, tc, ec in (("mof", "time_years", "event"), ("hip", "hip_time_years", "hip_event")):
        cohort = held.table
        ours = harrell_c(cohort[tc], cohort[ec], scores[f"risk_{prefix}_10y"], horizon=10.0).c
        oracle = harrell_c(cohort[tc], cohort[ec], held.truth[f"true_risk_{prefix}_10y"], horizon=10.0).c
        assert ours >= oracle - 0.01, (prefix, ours, oracle)
        oe = observed_expected(cohort[tc], cohort[ec], scores[f"risk_{prefix}_10y"], horizon=10.0)
        assert 0.9 <= oe.ratio <= 1.1, (prefix, oe)
