"""Kaplan-Meier and Aalen-Johansen estimators (vectorised; the observed side of calibration and IPCW).

Kaplan-Meier (Kaplan & Meier, J Am Stat Assoc 1958;53:457-481, doi:10.1080/01621459.1958.10501452):

    S(t) = prod_{t_k <= t} (1 - d_k / n_k)

with d_k events at t_k and n_k subjects at risk (T >= t_k). The censoring distribution G used by
inverse-probability-of-censoring weights is the Kaplan-Meier estimate with censoring as the event
(and, at tied times, events leaving before censorings).

Aalen-Johansen cumulative incidence of cause c (Aalen & Johansen, Scand J Stat 1978;5:141-150):

    F_c(t) = sum_{t_k <= t} S(t_{k-1}) d_ck / n_k

where S is the Kaplan-Meier estimate of being free of any event. Its variance is the Greenwood-type
delta-method formula (Collett, Modelling Survival Data in Medical Research, 3rd ed., p. 411; the
same as lifelines' AalenJohansenFitter):

    Var F_c(t) = sum_{t_k<=t} [ (F_c(t) - F_c(t_k))^2 d_k / (n_k (n_k - d_k))
                               + S(t_{k-1})^2 d_ck (n_k - d_ck) / n_k^3
                               - 2 (F_c(t) - F_c(t_k)) S(t_{k-1}) d_ck / n_k^2 ]

and 95% intervals on the log(-log) scale stay inside [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from fusion.metrics._inputs import ArrayLike, FloatArray, IntArray, as_events, as_float, as_horizon, as_times


@dataclass(frozen=True)
class StepFunction:
    """A right-continuous step function: `values[k]` holds on [times[k], times[k+1]); `initial` before."""

    times: FloatArray
    values: FloatArray
    initial: float = 1.0

    def __call__(self, t: FloatArray | float) -> FloatArray:
        """f(t) (right-continuous: jumps at t included)."""
        index = np.searchsorted(self.times, np.asarray(t, dtype=np.float64), side="right") - 1
        result: FloatArray = np.where(index >= 0, self.values[np.maximum(index, 0)], self.initial)
        return result

    def left(self, t: FloatArray | float) -> FloatArray:
        """f(t-) (left limit: jumps at t excluded)."""
        index = np.searchsorted(self.times, np.asarray(t, dtype=np.float64), side="left") - 1
        result: FloatArray = np.where(index >= 0, self.values[np.maximum(index, 0)], self.initial)
        return result


def _risk_table(time: FloatArray, indicator: IntArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Distinct times, number at risk (T >= t) and number of indicated events at each."""
    times, inverse = np.unique(time, return_inverse=True)
    removed = np.bincount(inverse, minlength=times.size).astype(np.float64)
    at_risk: FloatArray = np.cumsum(removed[::-1])[::-1].astype(np.float64)
    events = np.bincount(inverse, weights=indicator.astype(np.float64), minlength=times.size).astype(np.float64)
    return times.astype(np.float64), at_risk, events


def kaplan_meier(time: ArrayLike, event_observed: ArrayLike) -> StepFunction:
    """Kaplan-Meier survival S(t) of `time` with `event_observed` (1 event, 0 censored)."""
    t = as_times("time", time)
    e = as_float("event_observed", event_observed, n=t.size).astype(np.int64)
    times, at_risk, events = _risk_table(t, (e != 0).astype(np.int64))
    with np.errstate(divide="ignore", invalid="ignore"):
        factors = np.where(at_risk > 0, 1.0 - events / at_risk, 1.0)
    return StepFunction(times, np.cumprod(factors).astype(np.float64))


def censoring_survival(time: ArrayLike, event: ArrayLike) -> StepFunction:
    """G(t) = P(C > t): Kaplan-Meier of censoring (event code 0), any event code > 0 leaving first at ties.

    Reverse Kaplan-Meier (Schemper & Smith, Control Clin Trials 1996;17:343-346); used for inverse
    probability of censoring weights (Robins & Rotnitzky 1992; Graf et al. 1999).
    """
    t = as_times("time", time)
    e = as_events("event", event, n=t.size)
    times, at_risk, censored = _risk_table(t, (e == 0).astype(np.int64))
    _, _, failures = _risk_table(t, (e != 0).astype(np.int64))
    # events at a tied time leave the risk set before the censorings of that time
    at_risk_censoring = at_risk - failures
    with np.errstate(divide="ignore", invalid="ignore"):
        factors = np.where(at_risk_censoring > 0, 1.0 - censored / at_risk_censoring, 1.0)
    return StepFunction(times, np.cumprod(factors).astype(np.float64))


@dataclass(frozen=True)
class CumulativeIncidence:
    """Aalen-Johansen estimate of one cause's cumulative incidence, with its variance ingredients."""

    times: FloatArray
    cif: FloatArray
    at_risk: FloatArray
    events_any: FloatArray
    events_cause: FloatArray
    survival_before: FloatArray
    cause: int

    def __call__(self, t: FloatArray | float) -> FloatArray:
        return StepFunction(self.times, self.cif, initial=0.0)(t)

    def variance(self, horizon: float) -> float:
        """Delta-method (Greenwood-type) variance of F(horizon) (module docstring)."""
        h = as_horizon(horizon)
        keep = self.times <= h
        if not keep.any():
            return 0.0
        f_h = float(self(h))
        f_k = self.cif[keep]
        n = self.at_risk[keep]
        d = self.events_any[keep]
        d_c = self.events_cause[keep]
        s_prev = self.survival_before[keep]
        with np.errstate(divide="ignore", invalid="ignore"):
            first = np.where(n > d, (f_h - f_k) ** 2 * d / (n * (n - d)), 0.0)
            second = s_prev**2 * d_c * (n - d_c) / n**3
            third = (f_h - f_k) * s_prev * d_c / n**2
        return float(np.sum(first + second - 2.0 * third))

    def confidence_interval(self, horizon: float, level: float = 0.95) -> tuple[float, float]:
        """Interval on the log(-log) scale (inside [0, 1]); (0, 0) before the first event."""
        f = float(self(horizon))
        if f <= 0.0:
            return (0.0, 0.0)
        if f >= 1.0:
            return (1.0, 1.0)
        z = float(stats.norm.ppf(0.5 + level / 2))
        se = np.sqrt(max(self.variance(horizon), 0.0)) / (f * abs(np.log(f)))
        centre = np.log(-np.log(f))
        return (float(np.exp(-np.exp(centre + z * se))), float(np.exp(-np.exp(centre - z * se))))


def aalen_johansen(time: ArrayLike, event: ArrayLike, *, cause: int = 1) -> CumulativeIncidence:
    """Aalen-Johansen cumulative incidence of `cause` with the other causes competing (module docstring).

    `event`: 0 censored, 1, 2, ... cause codes. Tied times are handled exactly (no jitter).
    """
    t = as_times("time", time)
    e = as_events("event", event, n=t.size)
    times, at_risk, events_any = _risk_table(t, (e != 0).astype(np.int64))
    _, _, events_cause = _risk_table(t, (e == cause).astype(np.int64))
    with np.errstate(divide="ignore", invalid="ignore"):
        factors = np.where(at_risk > 0, 1.0 - events_any / at_risk, 1.0)
        survival = np.cumprod(factors)
        survival_before = np.concatenate([[1.0], survival[:-1]])
        increments = np.where(at_risk > 0, survival_before * events_cause / at_risk, 0.0)
    return CumulativeIncidence(
        times=times,
        cif=np.cumsum(increments),
        at_risk=at_risk,
        events_any=events_any,
        events_cause=events_cause,
        survival_before=survival_before,
        cause=int(cause),
    )
