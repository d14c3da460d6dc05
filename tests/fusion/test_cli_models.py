"""`osteorisk train` and `osteorisk predict` on real files: a synthetic cohort and GLOW500."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from fusion.artifacts import load_model
from fusion.cohort_table import write_cohort
from server.cli.main import main
from tests.fusion.model_helpers import small_cohort

GLOW_MAP = "SUB_ID=patient_id,AGE=age_years,WEIGHT=weight_kg,PRIORFRAC=prior_fragility_fracture"


@pytest.fixture(scope="module")
def cohort_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cohort(small_cohort(), tmp_path_factory.mktemp("cli") / "cohort.parquet")


def test_train_and_predict_a_cox_model(cohort_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = tmp_path / "model"
    assert (
        main(["train", "--cohort", str(cohort_file), "--out", str(model_dir), "--bootstrap", "4", "--seed", "3"]) == 0
    )
    printed = capsys.readouterr()
    assert "cox model osteorisk-cox" in printed.out and "events_mof=" in printed.out
    model = load_model(model_dir)
    assert "dxa_t_score_min" in model.plan.names  # by default every canonical feature column present
    assert "hu_l1" not in model.plan.names and "identical to l1_hu" in printed.err
    out = tmp_path / "risks.parquet"
    assert main(["predict", "--model", str(model_dir), "--cohort", str(cohort_file), "--out", str(out)]) == 0
    risks = pd.read_parquet(out)
    assert len(risks) == len(small_cohort())
    for h in (1, 2, 5, 10):
        for prefix in ("mof", "hip"):
            assert {f"risk_{prefix}_{h}y", f"risk_{prefix}_{h}y_lo", f"risk_{prefix}_{h}y_hi"} <= set(risks.columns)
    assert risks["warnings"].str.contains("dxa_t_score_min").mean() > 0.5


def test_train_with_chosen_features_and_csv_output(cohort_file: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    args = ["train", "--cohort", str(cohort_file), "--out", str(model_dir), "--features", "age_years,sex,l1_hu"]
    assert main([*args, "--bootstrap", "0", "--no-diagnosis"]) == 0
    model = load_model(model_dir)
    assert model.plan.names == ("age_years", "sex", "l1_hu") and model.diagnosis is None
    out = tmp_path / "r.csv"
    assert (
        main(["predict", "--model", str(model_dir), "--cohort", str(cohort_file), "--out", str(out), "--horizons", "3"])
        == 0
    )
    expected = ["patient_id", *(f"risk_{o}_3y{s}" for o in ("mof", "hip") for s in ("", "_lo", "_hi")), "warnings"]
    assert list(pd.read_csv(out).columns) == expected


def test_bad_requests_fail_with_one_clear_line(
    cohort_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        (["train", "--cohort", str(tmp_path / "none.parquet"), "--out", str(tmp_path / "x")], "not found"),
        (["train", "--cohort", str(cohort_file), "--out", str(tmp_path / "x"), "--features", "nope"], "nope"),
        (["train", "--cohort", str(cohort_file), "--out", str(tmp_path / "x"), "--column-map", "a"], "OLD=NEW"),
        (["train", "--cohort", str(cohort_file), "--out", str(tmp_path / "x"), "--model", "logistic"], "target"),
        (["predict", "--model", str(tmp_path / "no"), "--cohort", str(cohort_file), "--out", str(tmp_path / "o.pq")],
         "model directory not found"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


@pytest.fixture(scope="module")
def glow_path(shared_data: Callable[[str], Path]) -> Path:
    return shared_data("tabular/glow/glow500.csv")


def test_glow_one_year_fracture_classifier_through_the_cli(glow_path: Path, tmp_path: Path) -> None:
    """The MANIFEST's reference fit (log-likelihood -259.04 and coefficients to 3 decimals), cross-checked
    with statsmodels, and the cross-validated AUC next to the apparent AUC in the card."""
    model_dir = tmp_path / "glow"
    argv = ["train", "--cohort", str(glow_path), "--out", str(model_dir), "--model", "logistic", "--target", "FRACTURE",
            "--column-map", GLOW_MAP, "--features", "age_years,weight_kg,prior_fragility_fracture,PREMENO,RATERISK",
            "--categorical", "RATERISK", "--calibration", "none", "--seed", "7"]  # fmt: skip
    assert main(argv) == 0
    card = load_model(model_dir).card
    m = card.metrics
    assert m["log_likelihood"] == pytest.approx(-259.04, abs=0.005)
    expected = {"age_years": 0.0501, "weight_kg": 0.0041, "prior_fragility_fracture": 0.6795, "PREMENO": 0.187,
                "RATERISK[2]": 0.535, "RATERISK[3]": 0.874, "(intercept)": -5.606}  # fmt: skip
    for name, value in expected.items():
        assert m[f"coef.{name}"] == pytest.approx(value, abs=6e-4), name
    glow = pd.read_csv(glow_path)
    ref = smf.logit("FRACTURE ~ AGE + WEIGHT + PRIORFRAC + PREMENO + C(RATERISK)", data=glow).fit(disp=0)
    assert m["log_likelihood"] == pytest.approx(ref.llf, abs=1e-5)
    assert m["coef.age_years"] == pytest.approx(ref.params["AGE"], abs=1e-6)
    assert m["coef.RATERISK[3]"] == pytest.approx(ref.params["C(RATERISK)[T.3]"], abs=1e-6)
    assert m["apparent_auc"] == pytest.approx(0.695, abs=0.002)
    assert 0.6 < m["cv_auc"] < m["apparent_auc"]  # optimism: held-out folds score lower
    assert m["n"] == 500 and m["events"] == 125 and card.target == "FRACTURE"
    out = tmp_path / "glow.parquet"
    assert main(["predict", "--model", str(model_dir), "--cohort", str(glow_path), "--column-map", GLOW_MAP,
                 "--out", str(out)]) == 0  # fmt: skip
    scored = pd.read_parquet(out)
    assert list(scored.columns) == ["patient_id", "probability", "probability_lo", "probability_hi", "warnings"]
    assert np.all(
        (scored["probability_lo"] < scored["probability"]) & (scored["probability"] < scored["probability_hi"])
    )
    np.testing.assert_allclose(scored["probability"], ref.predict(glow), atol=1e-8)


def test_glow_interaction_model(glow_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = tmp_path / "glow_int"
    argv = ["train", "--cohort", str(glow_path), "--out", str(model_dir), "--model", "logistic", "--target", "FRACTURE",
            "--features", "AGE,HEIGHT,PRIORFRAC,MOMFRAC,ARMASSIST,RATERISK[3],AGE:PRIORFRAC,MOMFRAC:ARMASSIST",
            "--calibration", "none", "--json"]  # fmt: skip
    assert main(argv) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["metrics"]["log_likelihood"] == pytest.approx(-250.25, abs=0.005)
    assert card["metrics"]["apparent_auc"] == pytest.approx(0.729, abs=5e-4)
    assert "coef.AGE:PRIORFRAC" in card["metrics"]
