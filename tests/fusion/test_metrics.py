"""Metrics: hand-computed examples, brute-force pair counts, and cross-checks against lifelines,
scikit-learn and (when installed) scikit-survival."""

from __future__ import annotations

import numpy as np
import pytest
from lifelines import AalenJohansenFitter, KaplanMeierFitter
from lifelines.utils import concordance_index as lifelines_c
from sklearn.metrics import roc_auc_score

from fusion.errors import CohortError
from fusion.metrics import (
    aalen_johansen,
    binary_calibration,
    brier_score,
    calibration_curve,
    calibration_slope,
    calibration_table,
    censoring_survival,
    harrell_c,
    integrated_brier_score,
    kaplan_meier,
    observed_expected,
    reliability_curve,
    roc_auc,
    scaled_brier,
    sensitivity_specificity,
    time_dependent_auc,
    uno_c,
)


def _brute_c(t, e, r, *, cause=1, horizon=None, competing="wolbers", g=None):  # type: ignore[no-untyped-def]
    num = den = 0.0
    for i in range(len(t)):
        if e[i] != cause or (horizon is not None and t[i] > horizon):
            continue
        gi = 1.0 if g is None else float(g.left(t[i]))
        for j in range(len(t)):
            if j == i:
                continue
            if t[j] > t[i] or (t[j] == t[i] and e[j] != cause):
                w = 1.0 if g is None else 1.0 / gi**2
            elif competing == "wolbers" and e[j] not in (0, cause) and t[j] < t[i]:
                w = 1.0 if g is None else 1.0 / (gi * float(g.left(t[j])))
            else:
                continue
            den += w
            num += w * (1.0 if r[i] > r[j] else 0.5 if r[i] == r[j] else 0.0)
    return num / den if den else float("nan")


def _competing_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t1 = rng.exponential(1 / (0.1 * np.exp(x)))
    t2 = rng.exponential(1 / 0.05, n)
    c = rng.uniform(0, 15, n)
    time = np.minimum.reduce([t1, t2, c])
    event = np.select([t1 == time, t2 == time], [1, 2], 0)
    return time, event, x


def test_harrell_c_by_hand() -> None:
    # subject: time, event, risk. Cases 0 (t=1) and 2 (t=3); subject 1 competing at t=2.
    time = np.array([1.0, 2.0, 3.0, 4.0])
    event = np.array([1, 2, 1, 0])
    risk = np.array([0.9, 0.5, 0.4, 0.1])
    # cause-specific pairs: (0,1) (0,2) (0,3) (2,3): all concordant -> 1.0
    assert harrell_c(time, event, risk, competing="censor").c == 1.0
    # Wolbers adds (2,1): competitor 1 (t=2 < 3) has risk 0.5 > 0.4: discordant -> 4/5
    result = harrell_c(time, event, risk)
    assert result.c == pytest.approx(0.8) and result.comparable == 5 and result.cases == 2
    # truncation at 2 years keeps case 0 only: 3 pairs, all concordant
    assert harrell_c(time, event, risk, horizon=2.0).c == 1.0
    assert np.isnan(harrell_c(time, np.zeros(4), risk).c)


@pytest.mark.parametrize("seed", range(12))
def test_concordance_matches_brute_force_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 50))
    time = np.round(rng.exponential(5, n), int(rng.integers(0, 2)))
    event = rng.integers(0, 3, n)
    risk = np.round(rng.normal(size=n), int(rng.integers(0, 2)))
    for competing in ("wolbers", "censor"):
        for horizon in (None, 4.0):
            ours = harrell_c(time, event, risk, competing=competing, horizon=horizon).c  # type: ignore[arg-type]
            assert ours == pytest.approx(_brute_c(time, event, risk, horizon=horizon, competing=competing), nan_ok=True)
        g = censoring_survival(time, event)
        if np.all(g.left(time[event == 1]) > 0):
            ours = uno_c(time, event, risk, horizon=4.0, competing=competing).c  # type: ignore[arg-type]
            expected = _brute_c(time, event, risk, horizon=4.0, competing=competing, g=g)
            assert ours == pytest.approx(expected, nan_ok=True)


def test_harrell_c_matches_lifelines() -> None:
    time, event, x = _competing_data(3000, 1)
    single = (event > 0).astype(int)
    ours = harrell_c(time, single, x).c
    assert ours == pytest.approx(lifelines_c(time, -x, single), abs=1e-10)


def test_kaplan_meier_and_aalen_johansen_match_lifelines() -> None:
    time, event, _ = _competing_data(600, 2)
    km = KaplanMeierFitter().fit(time, event > 0)
    grid = np.array([0.5, 2.0, 5.0, 9.0])
    np.testing.assert_allclose(kaplan_meier(time, event > 0)(grid), km.survival_function_at_times(grid), rtol=1e-12)
    ajf = AalenJohansenFitter(calculate_variance=True).fit(time, event, event_of_interest=1)
    ours = aalen_johansen(time, event, cause=1)
    reference = ajf.cumulative_density_.iloc[:, 0]
    for h in grid:
        expected = float(reference[reference.index <= h].iloc[-1])
        assert float(ours(h)) == pytest.approx(expected, abs=1e-12)
        variance = float(ajf.variance_[ajf.variance_.index <= h].iloc[-1])
        assert ours.variance(h) == pytest.approx(variance, rel=1e-8)
        lo, hi = ours.confidence_interval(h)
        ci = ajf.confidence_interval_[ajf.confidence_interval_.index <= h].iloc[-1]
        assert (lo, hi) == pytest.approx(tuple(sorted(float(v) for v in ci)), rel=1e-6)


def test_aalen_johansen_by_hand() -> None:
    # 4 subjects: cause 1 at t=1, competing at t=2, cause 1 at t=3, censored at t=4
    cif = aalen_johansen(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 2, 1, 0]))
    # F(1) = 1/4; S(2) = 3/4 * 2/3 = 1/2; F(3) = 1/4 + 1/2 * 1/2 = 1/2
    assert float(cif(1.0)) == pytest.approx(0.25) and float(cif(2.5)) == pytest.approx(0.25)
    assert float(cif(3.0)) == pytest.approx(0.5) and float(cif(0.5)) == 0.0
    g = censoring_survival(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 2, 1, 0]))
    assert float(g(3.9)) == 1.0 and float(g(4.0)) == 0.0


def test_brier_by_hand() -> None:
    # no censoring: weights 1, Brier = mean squared error of the status at tau
    time = np.array([1.0, 2.0, 6.0, 7.0])
    event = np.array([1, 2, 1, 1])
    p = np.array([0.8, 0.3, 0.2, 0.1])
    # statuses at 5: 1, 0 (competitor), 0, 0
    assert brier_score(time, event, p, horizon=5.0) == pytest.approx(np.mean([0.04, 0.09, 0.04, 0.01]))
    assert time_dependent_auc(time, event, p, horizon=5.0) == 1.0
    assert time_dependent_auc(time, event, p, horizon=5.0, controls="event_free") == 1.0


def test_survival_metrics_match_scikit_survival() -> None:
    sksurv_metrics = pytest.importorskip("sksurv.metrics")
    from sksurv.util import Surv

    time, event, x = _competing_data(2000, 3)
    single = (event > 0).astype(int)
    y = Surv.from_arrays(single.astype(bool), time)
    ours = uno_c(time, single, x, horizon=8.0, competing="censor").c
    assert ours == pytest.approx(sksurv_metrics.concordance_index_ipcw(y, y, x, tau=8.0)[0], abs=1e-6)
    assert harrell_c(time, single, x).c == pytest.approx(
        sksurv_metrics.concordance_index_censored(single.astype(bool), time, x)[0], abs=1e-10
    )
    horizons = np.array([2.0, 5.0, 8.0])
    auc, _ = sksurv_metrics.cumulative_dynamic_auc(y, y, x, horizons)
    for k, h in enumerate(horizons):
        assert time_dependent_auc(time, single, x, horizon=h) == pytest.approx(auc[k], abs=1e-6)
    hazard = 0.15 * np.exp(x)
    survival = np.exp(-hazard[:, None] * horizons[None, :])
    _, sk_brier = sksurv_metrics.brier_score(y, y, survival, horizons)
    for k, h in enumerate(horizons):
        assert brier_score(time, single, 1 - survival[:, k], horizon=h) == pytest.approx(sk_brier[k], abs=1e-8)
    sk_ibs = sksurv_metrics.integrated_brier_score(y, y, survival, horizons)
    assert integrated_brier_score(time, single, 1 - survival, horizons) == pytest.approx(sk_ibs, abs=1e-8)


def test_calibration_of_a_perfect_and_a_distorted_model() -> None:
    rng = np.random.default_rng(4)
    n = 40_000
    x = rng.normal(size=n)
    rate = 0.05 * np.exp(0.8 * x)
    t1 = rng.exponential(1 / rate)
    t2 = rng.exponential(1 / 0.03, n)
    c = rng.uniform(2, 12, n)
    time = np.minimum.reduce([t1, t2, c])
    event = np.select([t1 == time, t2 == time], [1, 2], 0)
    h = 5.0
    total = rate + 0.03
    true = rate / total * (1 - np.exp(-total * h))
    fit = calibration_slope(time, event, true, horizon=h)
    assert fit.slope == pytest.approx(1.0, abs=0.08) and fit.intercept == pytest.approx(0.0, abs=0.05)
    curve = calibration_curve(time, event, true, horizon=h)
    assert curve.ici < 0.01
    oe = observed_expected(time, event, true, horizon=h)
    assert oe.ratio_ci[0] < 1.0 < oe.ratio_ci[1] and oe.ratio == pytest.approx(1.0, abs=0.04)
    too_extreme = 1 / (1 + np.exp(-2 * np.log(true / (1 - true))))
    assert calibration_slope(time, event, too_extreme, horizon=h).slope == pytest.approx(0.5, abs=0.06)
    halved = observed_expected(time, event, true / 2, horizon=h)
    assert halved.ratio == pytest.approx(2.0, abs=0.1)
    assert calibration_curve(time, event, true / 2, horizon=h).ici > 0.05
    table = calibration_table(time, event, true, horizon=h)
    assert len(table) == 10 and np.allclose(table["observed"], table["predicted"], atol=0.03)
    brier, null, ipa = scaled_brier(time, event, true, horizon=h)
    assert 0 < brier < null and 0 < ipa < 1
    assert harrell_c(time, event, true).c > harrell_c(time, event, rng.normal(size=n)).c + 0.1


def test_classification_metrics() -> None:
    y = np.array([1, 1, 0, 0, 1, 0])
    score = np.array([0.9, 0.4, 0.4, 0.1, 0.8, 0.3])
    assert roc_auc(y, score) == pytest.approx(roc_auc_score(y, score))
    hu = np.array([80.0, 150.0, 170.0, 200.0, 100.0, 165.0])
    assert roc_auc(y, hu, positive="at_or_below") == pytest.approx(1.0)
    rule110, rule160 = sensitivity_specificity(y, hu, [110, 160], positive="at_or_below")
    assert (rule110.sensitivity, rule110.specificity) == (pytest.approx(2 / 3), 1.0)
    assert (rule160.sensitivity, rule160.specificity) == (1.0, 1.0)
    assert rule110.sensitivity_ci[0] < 2 / 3 < rule110.sensitivity_ci[1]
    rng = np.random.default_rng(5)
    p = rng.uniform(0.01, 0.99, 20_000)
    labels = (rng.uniform(size=p.size) < p).astype(int)
    cal = binary_calibration(labels, p)
    assert cal.slope == pytest.approx(1.0, abs=0.1) and abs(cal.intercept) < 0.05 and cal.ici < 0.02
    curve = reliability_curve(labels, p)
    assert np.allclose(curve["observed"], curve["predicted"], atol=0.04)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(CohortError, match="risk: 1 of 3 values are missing"):
        harrell_c(np.array([1.0, 2, 3]), np.array([1, 0, 1]), np.array([0.1, np.nan, 0.3]))
    with pytest.raises(CohortError, match="3 values for 2 subjects"):
        harrell_c(np.array([1.0, 2]), np.array([1, 0]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(CohortError, match="negative times"):
        brier_score(np.array([-1.0, 2]), np.array([1, 0]), np.array([0.1, 0.2]), horizon=1)
    with pytest.raises(CohortError, match="probabilities must lie in"):
        brier_score(np.array([1.0, 2]), np.array([1, 0]), np.array([0.1, 1.2]), horizon=1)
    with pytest.raises(CohortError, match="no subject is followed beyond 3 years"):
        brier_score(np.array([1.0, 2]), np.array([1, 0]), np.array([0.1, 0.2]), horizon=3)
    with pytest.raises(CohortError, match="labels must be 0/1"):
        roc_auc(np.array([0, 2]), np.array([0.1, 0.2]))
