"""Logistic classifiers: maximum likelihood against statsmodels (binary and multinomial), calibration on
held-out folds, model terms, and bad input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from fusion.design import Design, expand_terms, parse_term_labels, term_inputs
from fusion.errors import CohortError, ModelArtifactError, ModelInputError
from fusion.models.calibration import CalibratedClassifier
from fusion.models.logistic import LogisticClassifier


@pytest.fixture(scope="module")
def glow(shared_data: Callable[[str], Path]) -> pd.DataFrame:
    return pd.read_csv(shared_data("tabular/glow/glow500.csv"))


def _glow_design(glow: pd.DataFrame) -> tuple[Design, np.ndarray]:
    spec = "AGE,WEIGHT,PRIORFRAC,PREMENO,C(RATERISK)"
    inputs = term_inputs(spec)
    levels = {"RATERISK": np.unique(glow["RATERISK"].to_numpy(float))}
    design = Design(tuple(inputs), tuple(expand_terms(spec, levels=levels)))
    return design, design.transform(glow[inputs].to_numpy(float))


def test_glow_main_effects_reference_fit(glow: pd.DataFrame) -> None:
    """MANIFEST.md: log-likelihood -259.04; AGE 0.0501, WEIGHT 0.0041, PRIORFRAC 0.6795, PREMENO 0.187,
    RATERISK2 0.535, RATERISK3 0.874, constant -5.606."""
    design, x = _glow_design(glow)
    assert design.labels == ("AGE", "WEIGHT", "PRIORFRAC", "PREMENO", "RATERISK[2]", "RATERISK[3]")
    model = LogisticClassifier().fit(x, glow["FRACTURE"].to_numpy())
    assert model.log_likelihood_ == pytest.approx(-259.04, abs=0.005)
    expected = [0.0501, 0.0041, 0.6795, 0.187, 0.535, 0.874]
    np.testing.assert_allclose(model.coef_[0], expected, atol=6e-4)
    assert model.intercept_[0] == pytest.approx(-5.606, abs=6e-4)
    ref = sm.Logit(glow["FRACTURE"].to_numpy(), sm.add_constant(x)).fit(disp=0)
    np.testing.assert_allclose(np.concatenate([model.intercept_, model.coef_[0]]), ref.params, atol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.diag(model.cov_)), ref.bse, rtol=1e-5)


def test_glow_interaction_model(glow: pd.DataFrame) -> None:
    spec = "AGE,HEIGHT,PRIORFRAC,MOMFRAC,ARMASSIST,RATERISK[3],AGE:PRIORFRAC,MOMFRAC:ARMASSIST"
    inputs = term_inputs(spec)
    design = Design(tuple(inputs), tuple(expand_terms(spec, levels={})))
    x = design.transform(glow[inputs].to_numpy(float))
    model = LogisticClassifier().fit(x, glow["FRACTURE"].to_numpy())
    assert model.log_likelihood_ == pytest.approx(-250.25, abs=0.005)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(glow["FRACTURE"], model.predict_proba(x)[:, 1]) == pytest.approx(0.729, abs=5e-4)


def test_multinomial_matches_statsmodels() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(800, 3))
    eta = np.column_stack([np.zeros(800), 0.3 + x @ [1.0, -0.5, 0.2], -0.4 + x @ [-0.3, 0.8, 0.0]])
    p = np.exp(eta) / np.exp(eta).sum(axis=1, keepdims=True)
    y = np.array(["normal", "osteopenia", "osteoporosis"])[[rng.choice(3, p=row) for row in p]]
    model = LogisticClassifier().fit(x, y)
    ref = sm.MNLogit(pd.Categorical(y).codes, sm.add_constant(x)).fit(disp=0, method="newton", maxiter=100)
    np.testing.assert_allclose(np.column_stack([model.intercept_, model.coef_]).T, ref.params, atol=1e-6)
    assert model.log_likelihood_ == pytest.approx(ref.llf, abs=1e-6)
    np.testing.assert_allclose(model.predict_proba(x).sum(axis=1), 1.0)


def test_isotonic_calibration_on_held_out_folds_fixes_a_misshapen_score() -> None:
    """A base model on a distorted feature is miscalibrated in the tails; the cross-fitted isotonic map fixes it."""
    rng = np.random.default_rng(8)
    z = rng.normal(size=4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(-1.0 + 1.5 * z)))).astype(int)
    x = np.exp(z)[:, None]  # the logit is not linear in x
    model = CalibratedClassifier(method="isotonic", cv=5, random_state=0).fit(x, y)
    prob = model.predict_proba(x)[:, 1]
    raw = model.base_.predict_proba(x)[:, 1]

    def worst_decile_gap(p: np.ndarray) -> float:
        bins = np.quantile(p, np.linspace(0, 1, 11))
        which = np.clip(np.searchsorted(bins, p, side="right") - 1, 0, 9)
        return max(abs(y[which == b].mean() - p[which == b].mean()) for b in range(10) if (which == b).any())

    assert worst_decile_gap(prob) < 0.06 < worst_decile_gap(raw)
    again = CalibratedClassifier.from_json(model.to_json())
    np.testing.assert_allclose(again.predict_proba(x), model.predict_proba(x))


def test_platt_calibration_shrinks_an_overfitted_model() -> None:
    """Many noise features on few patients: the maximum-likelihood fit is overconfident on new patients;
    Platt scaling learned on held-out folds pulls the calibration slope towards 1."""
    rng = np.random.default_rng(21)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(n, 25))
        y = (rng.random(n) < 1 / (1 + np.exp(-(0.8 * x[:, 0])))).astype(int)
        return x, y

    x, y = sample(400)
    model = CalibratedClassifier(method="platt", cv=5, random_state=0).fit(x, y)
    assert model.maps_[0]["slope"] < 0.95
    x_new, y_new = sample(20000)
    raw = model.base_.predict_proba(x_new)[:, 1]
    cal = model.predict_proba(x_new)[:, 1]
    assert np.mean((cal - y_new) ** 2) < np.mean((raw - y_new) ** 2)


def test_separation_and_single_class_are_refused() -> None:
    x = np.arange(40, dtype=float)[:, None]
    with pytest.raises(CohortError, match="separation"):
        LogisticClassifier().fit(x, (x[:, 0] > 20).astype(int))
    with pytest.raises(CohortError, match="single class"):
        LogisticClassifier().fit(x, np.zeros(40))
    with pytest.raises(ModelArtifactError):
        LogisticClassifier.from_json({"format": "osteorisk.logistic/1", "params": {}})


def test_terms_parse_and_round_trip() -> None:
    terms = expand_terms("a, C(b), b[3]:a", levels={"b": np.array([1.0, 2.0, 3.0])})
    assert [t.label for t in terms] == ["a", "b[2]", "b[3]", "b[3]:a"]
    assert [t.label for t in parse_term_labels([t.label for t in terms])] == ["a", "b[2]", "b[3]", "b[3]:a"]
    design = Design(("a", "b"), tuple(terms))
    np.testing.assert_allclose(design.transform(np.array([[2.0, 3.0]])), [[2.0, 0.0, 1.0, 2.0]])
    # one row (Python floats) and many rows (numpy) give the same terms, missing values included
    rows = np.array([[2.0, 3.0], [-1.5, 2.0], [0.25, 1.0], [np.nan, 3.0], [4.0, np.nan]])
    many = design.transform(rows)
    for i in range(rows.shape[0]):
        np.testing.assert_array_equal(design.transform(rows[i : i + 1]), many[i : i + 1])
    for bad in ("a b", "C(", "a[x]"):
        with pytest.raises(ModelInputError, match="term"):
            expand_terms(bad, levels={})
    with pytest.raises(ModelInputError, match="2 observed levels"):
        expand_terms("C(b)", levels={"b": np.array([1.0])})
