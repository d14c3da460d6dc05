"""Time-dependent discrimination, prediction error and calibration of t-year risks with competing risks.

Every function here takes PROBABILITIES: a predicted cumulative incidence F_i(tau) of `cause` by the
horizon tau (death competing), except `time_dependent_auc`, which accepts any risk score.

Status at tau, with inverse probability of censoring weights (IPCW; G = Kaplan-Meier of censoring,
`censoring_survival`):

    case        T_i <= tau, D_i == cause          y_i = 1   W_i = 1 / G(T_i-)
    competitor  T_i <= tau, D_i another cause     y_i = 0   W_i = 1 / G(T_i-)
    event-free  T_i >  tau                        y_i = 0   W_i = 1 / G(tau)
    censored    T_i <= tau, D_i == 0              (unknown) W_i = 0

Under censoring independent of the covariates, sum_i W_i y_i / n estimates F(tau) and weighted
averages over the known statuses estimate population averages (Graf et al., Stat Med 1999;18:2529-2545,
doi:10.1002/(SICI)1097-0258(19990915/30)18:17/18<2529::AID-SIM274>3.0.CO;2-5; Gerds & Schumacher,
Biom J 2006;48:1029-1040, doi:10.1002/bimj.200610301; competing risks: Schoop et al., Biom J 2011,
doi:10.1002/bimj.201000048).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from fusion.errors import CohortError
from fusion.metrics._inputs import (
    ArrayLike,
    FloatArray,
    IntArray,
    as_events,
    as_float,
    as_horizon,
    as_probabilities,
    as_times,
    quantile_groups,
)
from fusion.metrics._regression import expit, fit_logistic, logit, rcs_basis, rcs_knots
from fusion.metrics.nonparametric import StepFunction, aalen_johansen, censoring_survival


def ipcw_status(
    time: ArrayLike,
    event: IntArray,
    horizon: float,
    *,
    cause: int = 1,
    censoring: StepFunction | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(y, weight, kind): y the case indicator at tau, W the IPCW weight, kind 1 case / 2 competitor /
    0 event-free at tau / -1 censored before tau (weight 0)."""
    time = as_times("time", time)
    event = as_events("event", event, n=time.size)
    g = censoring if censoring is not None else censoring_survival(time, event)
    tau = as_horizon(horizon)
    early = time <= tau
    case = early & (event == cause)
    competitor = early & (event != cause) & (event != 0)
    event_free = ~early
    g_left = g.left(time)
    g_tau = float(g(tau))
    known_early = case | competitor
    if not event_free.any():
        raise CohortError(
            f"no subject is followed beyond {tau:g} years (longest follow-up {float(time.max()):g}): "
            "metrics at this horizon are undefined; use a shorter horizon",
            reason="HORIZON_BEYOND_FOLLOW_UP",
        )
    if np.any(g_left[known_early] <= 0) or (event_free.any() and g_tau <= 0):
        raise CohortError(
            f"the censoring survival reaches 0 before {tau:g} years: no subject is followed that long, "
            "so IPCW metrics at this horizon are undefined; use a shorter horizon",
            reason="NO_IPCW",
        )
    weight = np.zeros(time.size)
    weight[known_early] = 1.0 / g_left[known_early]
    if event_free.any():
        weight[event_free] = 1.0 / g_tau
    kind = np.where(case, 1.0, np.where(competitor, 2.0, np.where(event_free, 0.0, -1.0)))
    return case.astype(np.float64), weight, kind


def _prepare(
    time: ArrayLike, event: ArrayLike, values: ArrayLike, name: str, probabilities: bool
) -> tuple[FloatArray, IntArray, FloatArray]:
    t = as_times("time", time)
    e = as_events("event", event, n=t.size)
    v = as_probabilities(name, values, n=t.size) if probabilities else as_float(name, values, n=t.size)
    return t, e, v


def time_dependent_auc(
    time: ArrayLike,
    event: ArrayLike,
    risk: ArrayLike,
    *,
    horizon: float,
    cause: int = 1,
    controls: Literal["all", "event_free"] = "all",
    censoring: StepFunction | None = None,
) -> float:
    """Cumulative/dynamic AUC(tau) with IPCW from RISK SCORES (any monotone score works).

    Cases: cause events by tau. Controls: `"all"` = everyone without the cause by tau, i.e. event-free
    subjects AND those with a competing event (definition 2 of Blanche, Dartigues & Jacqmin-Gadda,
    Stat Med 2013;32:5381-5397, doi:10.1002/sim.5958); `"event_free"` = event-free subjects only
    (their definition 1; without competing events both are Uno et al. / Hung & Chiang's AUC, as
    scikit-survival's `cumulative_dynamic_auc`).

        AUC(tau) = sum_i sum_j W_i W_j [1(r_i > r_j) + 1/2 1(r_i = r_j)] / (sum_i W_i sum_j W_j)
    """
    t, e, r = _prepare(time, event, risk, "risk", probabilities=False)
    _, w, kind = ipcw_status(t, e, horizon, cause=cause, censoring=censoring)
    cases = kind == 1
    control_mask = (kind == 0) | (kind == 2) if controls == "all" else kind == 0
    if controls not in ("all", "event_free"):
        raise CohortError(f"controls must be 'all' or 'event_free', got {controls!r}", reason="BAD_METRIC_INPUT")
    if not cases.any() or not control_mask.any():
        return float("nan")
    control_risk = r[control_mask]
    order = np.argsort(control_risk, kind="stable")
    sorted_risk = control_risk[order]
    cumulative = np.concatenate([[0.0], np.cumsum(w[control_mask][order])])
    lo = np.searchsorted(sorted_risk, r[cases], side="left")
    hi = np.searchsorted(sorted_risk, r[cases], side="right")
    below = cumulative[lo]
    tied = cumulative[hi] - cumulative[lo]
    numerator = float(np.sum(w[cases] * (below + 0.5 * tied)))
    denominator = float(np.sum(w[cases]) * cumulative[-1])
    return numerator / denominator


def brier_score(
    time: ArrayLike,
    event: ArrayLike,
    probability: ArrayLike,
    *,
    horizon: float,
    cause: int = 1,
    censoring: StepFunction | None = None,
) -> float:
    """IPCW Brier score of PROBABILITIES F_i(tau): (1/n) sum_i W_i (y_i - F_i)^2 (Graf 1999; Gerds &
    Schumacher 2006; with competing risks the competitors count as y = 0, Schoop 2011). Lower is better."""
    t, e, p = _prepare(time, event, probability, "probability", probabilities=True)
    y, w, _ = ipcw_status(t, e, horizon, cause=cause, censoring=censoring)
    return float(np.mean(w * (y - p) ** 2))


def null_risk(time: ArrayLike, event: ArrayLike, *, horizon: float, cause: int = 1) -> float:
    """The marginal Aalen-Johansen F(tau): the prediction of a model that knows no covariate."""
    t = as_times("time", time)
    e = as_events("event", event, n=t.size)
    return float(aalen_johansen(t, e, cause=cause)(as_horizon(horizon)))


def scaled_brier(
    time: ArrayLike,
    event: ArrayLike,
    probability: ArrayLike,
    *,
    horizon: float,
    cause: int = 1,
    censoring: StepFunction | None = None,
) -> tuple[float, float, float]:
    """(Brier, Brier of the null model, index of prediction accuracy IPA = 1 - Brier / null Brier).

    IPA: Kattan & Gerds, Diagn Progn Res 2018;2:7, doi:10.1186/s41512-018-0029-2 (> 0: better than
    the marginal incidence; 1: perfect)."""
    t, e, p = _prepare(time, event, probability, "probability", probabilities=True)
    g = censoring if censoring is not None else censoring_survival(t, e)
    brier = brier_score(t, e, p, horizon=horizon, cause=cause, censoring=g)
    null = np.full(t.size, null_risk(t, e, horizon=horizon, cause=cause))
    null_brier = brier_score(t, e, null, horizon=horizon, cause=cause, censoring=g)
    ipa = 1.0 - brier / null_brier if null_brier > 0 else float("nan")
    return brier, null_brier, ipa


def integrated_brier_score(
    time: ArrayLike,
    event: ArrayLike,
    probabilities: ArrayLike,
    horizons: ArrayLike,
    *,
    cause: int = 1,
    censoring: StepFunction | None = None,
) -> float:
    """Integrated Brier score over [min(horizons), max(horizons)] by the trapezoid rule, divided by the
    interval length. `probabilities` has one column per horizon (PROBABILITIES F_i(h)); use a fine grid
    (e.g. every year from 1 to 10) for a faithful integral (Graf 1999)."""
    t = as_times("time", time)
    e = as_events("event", event, n=t.size)
    h = np.asarray(horizons, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape != (t.size, h.size):
        raise CohortError(
            f"probabilities must have shape (n, {h.size}) for {h.size} horizons, got {p.shape}",
            reason="BAD_METRIC_INPUT",
        )
    if h.size < 2 or np.any(np.diff(h) <= 0):
        raise CohortError("integrated Brier score needs at least two increasing horizons", reason="BAD_METRIC_INPUT")
    g = censoring if censoring is not None else censoring_survival(t, e)
    scores = np.array([brier_score(t, e, p[:, k], horizon=hk, cause=cause, censoring=g) for k, hk in enumerate(h)])
    return float(np.trapezoid(scores, h) / (h[-1] - h[0]))


@dataclass(frozen=True)
class CalibrationFit:
    """Weak calibration of PROBABILITIES at a horizon: slope 1 and intercept 0 are ideal."""

    slope: float
    intercept: float
    """calibration-in-the-large: a in logit E[y] = a + logit(F) (slope fixed at 1)."""


def calibration_slope(
    time: ArrayLike,
    event: ArrayLike,
    probability: ArrayLike,
    *,
    horizon: float,
    cause: int = 1,
    censoring: StepFunction | None = None,
) -> CalibrationFit:
    """Calibration slope and intercept of PROBABILITIES F_i(tau): IPCW-weighted logistic regression of the
    status at tau on logit F_i (slope b in logit E[y] = a + b logit F; intercept with logit F as offset).

    The slope < 1 means predictions too extreme (overfitting), > 1 too moderate (Cox, Biometrika
    1958;45:562-565; for survival and competing risks at a horizon: Austin, Harrell & van Klaveren, Stat
    Med 2020;39:2714-2742, doi:10.1002/sim.8570; Austin, Putter et al. 2022,
    doi:10.1002/sim.9281). IPCW weights stand in for the unknown statuses of
    subjects censored before tau.
    """
    t, e, p = _prepare(time, event, probability, "probability", probabilities=True)
    y, w, _ = ipcw_status(t, e, horizon, cause=cause, censoring=censoring)
    keep = w > 0
    if not np.any(y[keep] == 1) or not np.any(y[keep] == 0):
        return CalibrationFit(float("nan"), float("nan"))
    lp = logit(p[keep])
    design = np.column_stack([np.ones(lp.size), lp])
    _, slope = fit_logistic(design, y[keep], w[keep])
    (intercept,) = fit_logistic(np.ones((lp.size, 1)), y[keep], w[keep], offset=lp)
    return CalibrationFit(float(slope), float(intercept))


@dataclass(frozen=True)
class CalibrationCurve:
    """A smoothed calibration curve and its summaries (Austin et al. 2020): ICI = mean |observed - predicted|
    over the subjects' predictions, E50 its median, E90 its 90th percentile, Emax its maximum."""

    predicted: FloatArray
    observed: FloatArray
    ici: float
    e50: float
    e90: float
    emax: float


def calibration_curve(
    time: ArrayLike,
    event: ArrayLike,
    probability: ArrayLike,
    *,
    horizon: float,
    cause: int = 1,
    n_knots: int = 4,
    grid_points: int = 100,
    censoring: StepFunction | None = None,
) -> CalibrationCurve:
    """Smoothed calibration of PROBABILITIES F_i(tau) and the integrated calibration index (ICI).

    The observed risk as a function of the predicted one is an IPCW-weighted logistic regression of the
    status at tau on a restricted cubic spline of logit F (`n_knots` knots; Harrell 2015). ICI, E50, E90
    and Emax summarise |observed(F_i) - F_i| over all subjects (Austin, Harrell & van Klaveren, Stat Med
    2020;39:2714-2742, doi:10.1002/sim.8570). With competing risks Austin, Putter et al. (2022,
    doi:10.1002/sim.9281) smooth pseudo-observations or fit a Fine-Gray model; the IPCW-weighted status
    used here has the same expectation under covariate-independent censoring.
    `predicted`/`observed` are the curve on `grid_points` points spanning the 1st-99th percentile of F.
    """
    t, e, p = _prepare(time, event, probability, "probability", probabilities=True)
    y, w, _ = ipcw_status(t, e, horizon, cause=cause, censoring=censoring)
    keep = w > 0
    if not np.any(y[keep] == 1) or not np.any(y[keep] == 0):
        nan = float("nan")
        return CalibrationCurve(np.array([]), np.array([]), nan, nan, nan, nan)
    lp_all = logit(p)
    knots = rcs_knots(lp_all[keep], n_knots)
    basis = rcs_basis(lp_all[keep], knots)
    design = np.column_stack([np.ones(basis.shape[0]), basis])
    beta = fit_logistic(design, y[keep], w[keep])

    def observed_at(lp: FloatArray) -> FloatArray:
        b = rcs_basis(lp, knots)
        return expit(np.column_stack([np.ones(b.shape[0]), b]) @ beta)

    difference = np.abs(observed_at(lp_all) - p)
    lo, hi = np.quantile(p, [0.01, 0.99])
    grid = np.linspace(lo, hi, grid_points)
    return CalibrationCurve(
        predicted=grid,
        observed=observed_at(logit(grid)),
        ici=float(np.mean(difference)),
        e50=float(np.median(difference)),
        e90=float(np.quantile(difference, 0.9)),
        emax=float(np.max(difference)),
    )


@dataclass(frozen=True)
class ObservedExpected:
    """Observed (Aalen-Johansen) over expected (mean predicted) cumulative incidence at a horizon."""

    observed: float
    observed_ci: tuple[float, float]
    expected: float
    ratio: float
    ratio_ci: tuple[float, float]


def observed_expected(
    time: ArrayLike,
    event: ArrayLike,
    probability: ArrayLike,
    *,
    horizon: float,
    cause: int = 1,
) -> ObservedExpected:
    """O/E at tau from PROBABILITIES: O = Aalen-Johansen F(tau) of the cohort (95% interval on the
    log(-log) scale), E = mean of the predicted F_i(tau); the ratio's interval treats E as fixed.
    1 is ideal; > 1 the model under-predicts."""
    t, e, p = _prepare(time, event, probability, "probability", probabilities=True)
    aj = aalen_johansen(t, e, cause=cause)
    tau = as_horizon(horizon)
    observed = float(aj(tau))
    lo, hi = aj.confidence_interval(tau)
    expected = float(np.mean(p))
    if expected <= 0:
        return ObservedExpected(observed, (lo, hi), expected, float("nan"), (float("nan"), float("nan")))
    return ObservedExpected(observed, (lo, hi), expected, observed / expected, (lo / expected, hi / expected))


def calibration_table(
    time: ArrayLike,
    event: ArrayLike,
    probability: ArrayLike,
    *,
    horizon: float,
    cause: int = 1,
    groups: int = 10,
) -> pd.DataFrame:
    """Observed (Aalen-Johansen, 95% interval) against mean predicted PROBABILITY per group of predicted
    risk (`groups` quantile groups, e.g. deciles): columns group, n, predicted, observed, observed_lo,
    observed_hi. The table behind a grouped calibration plot."""
    t, e, p = _prepare(time, event, probability, "probability", probabilities=True)
    tau = as_horizon(horizon)
    rows = []
    for g, members in enumerate(quantile_groups(p, groups)):
        aj = aalen_johansen(t[members], e[members], cause=cause)
        lo, hi = aj.confidence_interval(tau)
        rows.append(
            {
                "group": g + 1,
                "n": int(members.sum()),
                "predicted": float(np.mean(p[members])),
                "observed": float(aj(tau)),
                "observed_lo": lo,
                "observed_hi": hi,
            }
        )
    return pd.DataFrame(rows, columns=["group", "n", "predicted", "observed", "observed_lo", "observed_hi"])
