"""Evaluation: the oracle behaves (C of truth > C of noise, O/E ~ 1), reports and the CLI write their files."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fusion.cohort_table import write_cohort
from fusion.errors import CohortError
from fusion.evaluate import ModelSummary, evaluate, oracle_predictions, render_text
from fusion.synth import synth_cohort

# Seeds used here: 13 (evaluation cohort), 14 (CLI cohort).


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return synth_cohort(12_000, seed=13).with_truth()


def test_oracle_beats_noise_and_is_calibrated(cohort: pd.DataFrame, tmp_path: Path) -> None:
    oracle = evaluate(oracle_predictions(cohort), cohort, model=ModelSummary(id="oracle"), report_dir=tmp_path)
    mof = oracle.outcome("mof")
    assert mof.predictor == "oracle" and [h.horizon_years for h in mof.horizons] == [1.0, 2.0, 5.0, 10.0]
    ten = mof.horizons[-1]
    assert 0.72 < (ten.harrell_c or 0) < 0.82 and 0.72 < (ten.auc or 0) < 0.82
    assert ten.oe_ci95 is not None and ten.oe_ci95[0] < 1.0 < ten.oe_ci95[1]
    assert 0.85 < (ten.calibration_slope or 0) < 1.15 and (ten.ici or 1) < 0.01
    assert (ten.ipa or 0) > 0.05 and mof.integrated_brier is not None
    hip = oracle.outcome("hip")
    assert (hip.c_index or 0) > (mof.c_index or 1)  # hip fracture is the more bone-driven outcome
    assert oracle.flags and oracle.flags[0].thresholds[0].threshold == 110.0

    rng = np.random.default_rng(13)
    noise = oracle_predictions(cohort)
    risk_columns = [c for c in noise.columns if c.startswith("risk_")]
    noise[risk_columns] = rng.permutation(noise[risk_columns].to_numpy())
    noisy = evaluate(noise, cohort, horizons=(10,))
    assert (noisy.outcome("mof").c_index or 1) < 0.55 < (mof.c_index or 0)
    assert noisy.oracle and noisy.outcome("mof", oracle=True).c_index == pytest.approx(mof.c_index)

    files = {p.name for p in tmp_path.iterdir()}
    assert {"metrics.json", "README.md", "calibration_oracle_mof_10y.png", "calibration_oracle_hip_1y.png"} <= files
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["schema"] == "osteorisk.evaluation/1" and saved["survival"][0]["horizons"][3]["horizon_years"] == 10
    assert "| predictor |" in (tmp_path / "README.md").read_text()
    assert "oracle    mof    10" in render_text(oracle)


def test_intervals_and_misaligned_predictions(cohort: pd.DataFrame) -> None:
    predictions = oracle_predictions(cohort)
    predictions["risk_mof_10y_lo"] = predictions["risk_mof_10y"] * 0.8
    predictions["risk_mof_10y_hi"] = predictions["risk_mof_10y"] * 1.2
    predictions = predictions.iloc[::-1].reset_index(drop=True)  # order does not matter: joined by patient_id
    predictions.loc[0, "risk_hip_10y"] = np.nan  # an unscored row is reported, not evaluated
    report = evaluate(predictions, cohort, horizons=(10,))
    ten = report.outcome("mof").horizons[0]
    assert ten.interval_coverage == 1.0 and ten.mean_interval_width == pytest.approx(
        0.4 * cohort["true_risk_mof_10y"].mean(), rel=1e-3
    )
    assert report.cohort.n_evaluated == len(cohort) - 1 and "1 of 12000 rows have no prediction" in report.warnings[0]


def test_classifier_predictions(cohort: pd.DataFrame) -> None:
    labelled = cohort[cohort["osteoporosis"].notna()]
    t = labelled["dxa_t_score_min"].to_numpy()
    predictions = pd.DataFrame({"patient_id": labelled["patient_id"], "probability": 1 / (1 + np.exp(4 * (t + 2.5)))})
    report = evaluate(predictions, cohort, target="osteoporosis")
    (classifier,) = report.classification
    assert classifier.auc == 1.0 and classifier.n == len(labelled) and classifier.reliability
    assert classifier.calibration_slope is None  # perfectly separated: the slope does not exist
    hu = labelled["true_l1_hu"].to_numpy()
    noisy = predictions.assign(probability=1 / (1 + np.exp((hu - 100.0) / 20.0)))
    (realistic,) = evaluate(noisy, cohort, target="osteoporosis").classification
    assert 0.7 < (realistic.auc or 0) < 0.9 and realistic.calibration_slope is not None
    with pytest.raises(CohortError, match="label column 'FRACTURE'"):
        evaluate(predictions, cohort, target="FRACTURE")


def test_bad_predictions_are_refused(cohort: pd.DataFrame) -> None:
    with pytest.raises(CohortError, match="no risk_mof"):
        evaluate(pd.DataFrame({"patient_id": ["x"]}), cohort)
    with pytest.raises(CohortError, match="no prediction row matches"):
        evaluate(pd.DataFrame({"patient_id": ["x"], "risk_mof_10y": [0.1]}), cohort)
    bad = oracle_predictions(cohort)
    bad.loc[3, "risk_mof_5y"] = 1.5
    with pytest.raises(CohortError, match="'risk_mof_5y' holds values outside"):
        evaluate(bad, cohort)
    with pytest.raises(CohortError, match="no true_risk"):
        oracle_predictions(cohort.drop(columns=[c for c in cohort.columns if c.startswith("true_risk_")]))
    with pytest.raises(CohortError, match="needs the columns"):
        evaluate(oracle_predictions(cohort), cohort.drop(columns=["hip_event"]))


def test_evaluate_cli_oracle_writes_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_cohort(synth_cohort(3_000, seed=14).with_truth(), tmp_path / "cohort.parquet")
    report_dir = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "server.cli.main", "evaluate", "--oracle", "--cohort", str(path),
         "--report", str(report_dir), "--horizons", "5", "10"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "oracle    mof    10" in proc.stdout and "l1_hu <= 160" in proc.stdout
    assert (report_dir / "calibration_oracle_hip_5y.png").stat().st_size > 1000
    assert json.loads((report_dir / "metrics.json").read_text())["model"]["id"] == "oracle"
    from server.cli.main import main

    assert main(["evaluate", "--oracle", "--cohort", str(tmp_path / "none.csv")]) == 1
    assert "cohort file not found" in capsys.readouterr().err


GLOW_MAP = "SUB_ID=patient_id,AGE=age_years,WEIGHT=weight_kg,PRIORFRAC=prior_fragility_fracture"


def test_evaluate_cli_logistic_model_on_glow500(
    tmp_path: Path, shared_data: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A classifier trained through the CLI on the real GLOW500 table, evaluated through the CLI."""
    from server.cli.main import main

    glow = str(shared_data("tabular/glow/glow500.csv"))
    model_dir = tmp_path / "glow-model"
    trained = main(
        ["train", "--cohort", glow, "--out", str(model_dir), "--model", "logistic", "--target", "FRACTURE",
         "--column-map", GLOW_MAP, "--features", "age_years,weight_kg,prior_fragility_fracture"]
    )  # fmt: skip
    assert trained == 0, capsys.readouterr().err
    capsys.readouterr()
    code = main(
        ["evaluate", "--model", str(model_dir), "--cohort", glow, "--column-map", GLOW_MAP, "--json",
         "--report", str(tmp_path / "report")]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    (classifier,) = report["classification"]
    assert classifier["label"] == "FRACTURE" and classifier["n"] == 500 and classifier["n_positive"] == 125
    assert 0.6 < classifier["auc"] < 0.75 and report["model"]["kind"] == "logistic"
    assert (tmp_path / "report" / "reliability_classifier.png").exists()
