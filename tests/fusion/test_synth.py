"""The synthetic cohort generator: determinism, canonical columns, ranges, missingness, exact truth."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fusion.cohort_table import feature_columns, read_cohort
from fusion.errors import FusionError
from fusion.synth import check_synth_cohort, default_parameters, synth_cohort
from fusion.synth.hazards import GompertzProcess, cumulative_incidence

# Seeds used by these tests: 3, 5, 8 (keep evaluation seeds elsewhere distinct).


@pytest.fixture(scope="module")
def cohort_5k() -> pd.DataFrame:
    return synth_cohort(5_000, seed=3).with_truth()


def test_same_seed_same_cohort_other_seed_differs() -> None:
    a = synth_cohort(500, seed=5).with_truth()
    b = synth_cohort(500, seed=5).with_truth()
    c = synth_cohort(500, seed=8).with_truth()
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["age_years"], c["age_years"])


def test_columns_validate_and_ranges(cohort_5k: pd.DataFrame) -> None:
    check_synth_cohort(synth_cohort(300, seed=5))
    df = cohort_5k
    assert len(feature_columns(df)) == 29
    assert df["age_years"].between(40, 90).all()
    assert set(df["sex"].astype(str)) == {"female", "male"}
    assert 0.5 < (df["sex"] == "female").mean() < 0.6
    assert df["patient_id"].is_unique
    assert set(df["event"].unique()) == {0, 1, 2} and set(df["hip_event"].unique()) == {0, 1, 2}
    assert (df["time_years"] > 0).all() and (df["time_years"] <= 12.0 + 1e-9).all()
    assert (df["hip_time_years"] >= df["time_years"]).all()
    risks = df.filter(like="true_risk_")
    assert ((risks >= 0) & (risks <= 1)).all().all()
    assert (df["true_risk_mof_10y"] >= df["true_risk_mof_5y"]).all()
    assert (df["true_risk_mof_10y"] >= df["true_risk_hip_10y"]).all()


def test_missingness_is_as_documented(cohort_5k: pd.DataFrame) -> None:
    df = cohort_5k
    assert 0.7 < df["dxa_t_score_min"].isna().mean() < 0.9
    assert 0.03 < df["mean_hu_l1_l4"].isna().mean() < 0.08
    assert df["age_years"].notna().all() and df["prior_fragility_fracture"].notna().all()
    dxa = df["dxa_t_score_min"].notna()
    assert (df.loc[dxa, "osteoporosis"] == (df.loc[dxa, "dxa_t_score_min"] <= -2.5)).all()
    assert df.loc[~dxa, "osteoporosis"].isna().all()
    complete = synth_cohort(500, seed=5, missing_values=False).table
    assert complete[feature_columns(complete)].notna().all().all()


def test_cli_writes_a_readable_cohort(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cohort.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "server.cli.main", "synth", "cohort", "--n", "200", "--seed", "5",
         "--out", str(out), "--truth"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "wrote 200 patients" in proc.stdout
    table = read_cohort(out, require=("survival",))
    expected = synth_cohort(200, seed=5).with_truth()
    np.testing.assert_allclose(table["true_risk_mof_10y"], expected["true_risk_mof_10y"], rtol=1e-8)
    from server.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "cohort", "--n", "0", "--seed", "5", "--out", str(out)])
    assert exit_info.value.code == 2 and "must be between 1" in capsys.readouterr().err


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(FusionError, match="n must be"):
        synth_cohort(0, seed=1)
    with pytest.raises(FusionError, match="seed must be"):
        synth_cohort(10, seed=-1)
    with pytest.raises(FusionError, match="horizons"):
        synth_cohort(10, seed=1, horizons=(0.0,))
    p = default_parameters()
    with pytest.raises(FusionError, match="probability"):
        synth_cohort(10, seed=1, parameters=replace(p, population=replace(p.population, female_fraction=1.5)))


def test_true_cumulative_incidence_matches_monte_carlo() -> None:
    """One patient profile simulated 400,000 times: empirical CIF within 4 standard errors of the quadrature."""
    n = 400_000
    rng = np.random.default_rng(8)
    hip = GompertzProcess(np.full(n, 0.004), 0.1, np.full(n, 2.5), 2.0)
    nonhip = GompertzProcess(np.full(n, 0.02), 0.03, np.full(n, 2.5), 2.0)
    death = GompertzProcess(np.full(n, 0.03), 0.09, np.ones(n), 0.0)
    t_hip, t_nonhip, t_death = (p.sample(rng.standard_exponential(n)) for p in (hip, nonhip, death))
    horizons = (1.0, 2.0, 5.0, 10.0)
    mof = cumulative_incidence([hip.rows(0, 1), nonhip.rows(0, 1)], [death.rows(0, 1)], horizons)[0]
    hip_cif = cumulative_incidence([hip.rows(0, 1)], [death.rows(0, 1)], horizons)[0]
    t_mof = np.minimum(t_hip, t_nonhip)
    for j, h in enumerate(horizons):
        emp_mof = np.mean((t_mof <= h) & (t_mof < t_death))
        emp_hip = np.mean((t_hip <= h) & (t_hip < t_death))
        for emp, exact in ((emp_mof, mof[j]), (emp_hip, hip_cif[j])):
            se = np.sqrt(exact * (1 - exact) / n)
            assert abs(emp - exact) < 4 * se + 1e-9, (h, emp, exact)


def test_cumulative_hazard_inverts_sampling() -> None:
    process = GompertzProcess(np.array([0.01, 0.2, 1e-4]), 0.09, np.array([1.0, 3.0, 1.5]), 2.0)
    draws = np.array([0.5, 0.01, 2.0])
    times = process.sample(draws)
    np.testing.assert_allclose(process.cumulative(times), draws, rtol=1e-10)


def test_quadrature_is_converged(monkeypatch: pytest.MonkeyPatch) -> None:
    import fusion.synth.hazards as hazards

    coarse = synth_cohort(2_000, seed=8).truth.filter(like="true_risk_").to_numpy()
    monkeypatch.setattr(hazards, "_QUADRATURE_NODES", 48)
    fine = synth_cohort(2_000, seed=8).truth.filter(like="true_risk_").to_numpy()
    assert np.abs(coarse - fine).max() < 1e-12


def test_patient_ids_are_unique_and_readable() -> None:
    from fusion.synth.generate import _patient_ids

    assert list(_patient_ids(5, 3)) == ["S5-0000000", "S5-0000001", "S5-0000002"]
    assert _patient_ids(12, 12_000)[-1] == "S12-0011999"


def test_complete_and_incomplete_cohorts_share_patients_and_outcomes() -> None:
    full = synth_cohort(800, seed=5, missing_values=False).table
    gappy = synth_cohort(800, seed=5).table
    for column in ("age_years", "time_years", "event", "hip_event", "prior_fragility_fracture"):
        pd.testing.assert_series_equal(full[column], gappy[column])
    observed = gappy["l1_hu"].notna()
    np.testing.assert_allclose(full.loc[observed, "l1_hu"], gappy.loc[observed, "l1_hu"])
