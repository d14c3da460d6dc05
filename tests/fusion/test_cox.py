"""Cause-specific Cox models: the Newton solver against lifelines, cumulative incidence against the exact
Breslow sum (Putter et al. 2007), interval coverage against the true risk, and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from fusion.errors import CohortError, ModelArtifactError, ModelInputError
from fusion.models.competing import bootstrap_weights, competing_target
from fusion.models.cox import CauseSpecificCox, _sorted_data, newton_cox
from tests.fusion.model_helpers import exponential_competing, exponential_true_cif

B1 = np.array([0.5, -0.3, 0.2, 0.0, 0.1])
B2 = np.array([0.2, 0.4, 0.0, -0.2, 0.0])


def _lifelines(x: np.ndarray, y: np.ndarray, cause: int, weights: np.ndarray | None = None) -> CoxPHFitter:
    frame = pd.DataFrame(x, columns=[f"x{j}" for j in range(x.shape[1])])
    frame["T"] = y["time"]
    frame["E"] = (y["event"] == cause).astype(int)
    if weights is not None:
        frame["W"] = weights
    return CoxPHFitter().fit(frame, "T", "E", weights_col="W" if weights is not None else None, robust=False)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return exponential_competing(3000, 11, B1, B2)


@pytest.fixture(scope="module")
def fitted(data: tuple[np.ndarray, np.ndarray]) -> CauseSpecificCox:
    x, y = data
    return CauseSpecificCox(bootstrap=10, random_state=3).fit(x, y)


@pytest.mark.parametrize("cause", [1, 2])
def test_newton_matches_lifelines_coefficients_and_baseline(
    data: tuple[np.ndarray, np.ndarray], fitted: CauseSpecificCox, cause: int
) -> None:
    x, y = data
    ref = _lifelines(x, y, cause)
    np.testing.assert_allclose(fitted.coef_[cause - 1], ref.params_.to_numpy(), atol=1e-6)
    assert fitted.log_likelihood_[cause - 1] == pytest.approx(ref.log_likelihood_, abs=1e-6)
    base = ref.baseline_cumulative_hazard_
    for t in (1.0, 3.0, 7.5):
        expected = float(base[base.index <= t].iloc[-1, 0])
        assert np.interp(t, fitted.times_, fitted.baseline_cumhaz_[cause - 1]) == pytest.approx(expected, rel=1e-6)


def test_weighted_fit_matches_lifelines_frequency_weights(data: tuple[np.ndarray, np.ndarray]) -> None:
    """The bootstrap refits use resampling counts as frequency weights: check them against lifelines."""
    x, y = data
    weights = bootstrap_weights(x.shape[0], 1, seed=5)[0]
    sorted_data, _ = _sorted_data(x - x.mean(axis=0), y["time"], y["event"])
    order = np.argsort(y["time"], kind="stable")
    ours = newton_cox(sorted_data, 1, weights[order], penalty=np.zeros(x.shape[1]))
    keep = weights > 0
    ref = _lifelines(x[keep], y[keep], 1, weights[keep])
    np.testing.assert_allclose(ours.coef, ref.params_.to_numpy(), atol=1e-6)


def test_lifelines_solver_gives_the_same_model(data: tuple[np.ndarray, np.ndarray], fitted: CauseSpecificCox) -> None:
    x, y = data
    other = CauseSpecificCox(bootstrap=0, solver="lifelines").fit(x, y)
    np.testing.assert_allclose(other.coef_, fitted.coef_, atol=1e-6)


def test_grid_incidence_matches_exact_breslow_sum(
    data: tuple[np.ndarray, np.ndarray], fitted: CauseSpecificCox
) -> None:
    """CIF_1(t) = sum_{s <= t} S(s-) dLambda_1(s), S = exp(-Lambda_1 - Lambda_2), from lifelines' fits."""
    x, y = data
    fits = [_lifelines(x, y, c) for c in (1, 2)]
    patients = x[:25]
    horizons = [1.0, 2.5, 5.0, 10.0]
    times = np.unique(np.concatenate([f.baseline_hazard_.index.to_numpy() for f in fits]))
    jumps = []
    for f in fits:
        h0 = f.baseline_hazard_.reindex(times, fill_value=0.0).to_numpy()[:, 0]
        rel = np.exp((patients - f._norm_mean.to_numpy()) @ f.params_.to_numpy())
        jumps.append(rel[:, None] * h0[None, :])
    cum_before = np.cumsum(jumps[0] + jumps[1], axis=1) - (jumps[0] + jumps[1])
    increments = np.exp(-cum_before) * jumps[0]
    exact = np.stack([increments[:, times <= h].sum(axis=1) for h in horizons], axis=1)
    ours = fitted.predict_cumulative_incidence(patients, horizons)
    np.testing.assert_allclose(ours, exact, atol=2e-3, rtol=0.02)


def test_incidence_is_monotone_in_horizon_and_bounded(
    fitted: CauseSpecificCox, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = data
    cif = fitted.predict_cumulative_incidence(x[:200], np.arange(1.0, 10.5, 0.5))
    assert np.all(np.diff(cif, axis=1) >= -1e-12)
    assert np.all((cif >= 0) & (cif <= 1))
    est, lo, hi = fitted.predict_interval(x[:200], [1, 10])
    assert np.all(lo <= est) and np.all(est <= hi)


def test_interval_coverage_of_the_true_risk() -> None:
    """Repeated-sampling coverage of the 95% interval for fixed patients, against the closed-form truth."""
    patients = np.random.default_rng(99).normal(size=(6, B1.size))
    horizons = [1.0, 5.0, 10.0]
    truth = exponential_true_cif(patients, B1, B2, horizons)
    hits = []
    for rep in range(40):
        x, y = exponential_competing(1500, 1000 + rep, B1, B2)
        model = CauseSpecificCox(bootstrap=30, random_state=rep).fit(x, y)
        _, lo, hi = model.predict_interval(patients, horizons)
        hits.append((lo <= truth) & (truth <= hi))
    coverage = float(np.mean(hits))
    assert 0.88 <= coverage <= 0.99, coverage


def test_json_round_trip_predicts_the_same(fitted: CauseSpecificCox, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = data
    again = CauseSpecificCox.from_json(fitted.to_json())
    np.testing.assert_allclose(
        again.predict_interval(x[:50], [2, 10]), fitted.predict_interval(x[:50], [2, 10]), rtol=1e-9
    )


def test_contributions_are_the_log_hazard_terms(fitted: CauseSpecificCox, data: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = data
    contrib = fitted.contributions(x[:5])
    np.testing.assert_allclose(contrib.sum(axis=1), fitted.predict_log_hazard(x[:5])[:, 0], atol=1e-12)


def test_bad_targets_and_features_are_refused() -> None:
    x = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(CohortError, match="coded 0"):
        competing_target(np.full(50, 3), np.ones(50))
    with pytest.raises(CohortError, match=">= 0"):
        competing_target(np.ones(50), -np.ones(50))
    with pytest.raises(CohortError, match="cause 2"):
        CauseSpecificCox(bootstrap=0).fit(x, competing_target(np.ones(50), np.arange(1, 51.0)))
    constant = np.column_stack([x[:, 0], np.ones(50)])
    with pytest.raises(CohortError, match="constant"):
        CauseSpecificCox(bootstrap=0).fit(constant, competing_target(np.arange(50) % 3, np.arange(1, 51.0)))
    with pytest.raises(ValueError, match="bootstrap"):
        CauseSpecificCox(bootstrap=1).fit(x, competing_target(np.arange(50) % 3, np.arange(1, 51.0)))


def test_horizons_outside_the_model_range_are_refused(
    fitted: CauseSpecificCox, data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = data
    for bad in ([0.5], [11.0], [float("nan")]):
        with pytest.raises(ModelInputError, match="horizons"):
            fitted.predict_interval(x[:2], bad)


def test_malformed_json_is_an_artifact_error(fitted: CauseSpecificCox) -> None:
    data = fitted.to_json()
    data["coef"] = [[1.0]]
    with pytest.raises(ModelArtifactError, match="malformed"):
        CauseSpecificCox.from_json(data)
    with pytest.raises(ModelArtifactError, match="format"):
        CauseSpecificCox.from_json({"format": "other"})


def test_delta_interval_agrees_with_the_replicate_interval(data: tuple[np.ndarray, np.ndarray]) -> None:
    """The fast delta-method interval and the interval from every replicate's incidence agree (to first order:
    the delta interval is slightly wider for the highest 10-year risks of this small cohort)."""
    from fusion.models.competing import logit

    x, y = data
    fast = CauseSpecificCox(bootstrap=30, random_state=3).fit(x, y)
    est, lo, hi = fast.predict_interval(x[:300], [1, 5, 10])
    fast.interval = "replicates"
    est2, lo2, hi2 = fast.predict_interval(x[:300], [1, 5, 10])
    fast.interval = "delta"
    np.testing.assert_allclose(est, est2, rtol=1e-12)
    ratio = (logit(hi) - logit(lo)) / (logit(hi2) - logit(lo2))
    assert np.all((ratio > 0.9) & (ratio < 1.2)), (ratio.min(), ratio.max())
    assert np.median(np.abs(ratio - 1)) < 0.03
    # the one-patient path (scalar recursion, replicates factored out per horizon set) gives the same numbers,
    # also after a save and load, and for patients far from the mean (the largest 10-year risks)
    loaded = CauseSpecificCox.from_json(fast.to_json())
    rows = [*range(10), *np.argsort(-est[:, 2])[:5].tolist()]
    for model in (fast, loaded):
        for i in rows:
            one = model.predict_interval(x[i : i + 1], [1, 5, 10])
            for got, want in zip(one, (est, lo, hi), strict=True):
                np.testing.assert_allclose(got[0], want[i], rtol=1e-9)
