"""Competing-risks machinery shared by every survival model: the target, cumulative incidence from
cause-specific cumulative hazards, and bootstrap intervals.

Cumulative incidence of cause k (Putter, Fiocco & Geskus 2007, doi:10.1002/sim.2712):

    CIF_k(t) = integral_0^t S(s-) dLambda_k(s),   S(s) = exp(-sum_j Lambda_j(s)).

Models give each patient's cause-specific cumulative hazards Lambda_1 (fracture) and Lambda_2 (death)
on a time grid 0 = g_0 < g_1 < ... < g_m. Between two grid points the two hazards are taken in a
constant ratio, which makes each step exact:

    CIF_1(g_i) = CIF_1(g_{i-1}) + S(g_{i-1}) * (1 - exp(-(dL1 + dL2))) * dL1 / (dL1 + dL2)

(the Aalen-Johansen product-integral with one step per interval). `grid_for_horizons` places grid points
at every requested horizon and at least every `step` years; tests check the result against the exact
Breslow sum over event times.

Intervals: a bootstrap ensemble of refits (Efron & Tibshirani 1993) is stored with the model; the 95%
interval is `expit(logit(CIF) +/- 1.96 * se)` with se the bootstrap standard error of logit CIF (the logit
scale keeps the interval in (0, 1)). Forests and networks take se from the replicates' incidences; the Cox
model by default from the exact bootstrap covariance of the patient's log cumulative hazards carried by the
delta method (`CauseSpecificCox.predict_interval`), which agrees with the replicate SE to a few percent and
costs no per-replicate incidence, so a million patients are scored in seconds. Coverage of the true risk is
tested on synthetic data with known truth (tests/fusion/test_cox.py) and reported in bench/RESULTS.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fusion.errors import CohortError, ModelInputError

FloatArray = npt.NDArray[np.float64]
TARGET_DTYPE = np.dtype([("event", np.int8), ("time", np.float64)])
Z95 = 1.959963984540054
LOGIT_EPS = 1e-12


def competing_target(event: npt.ArrayLike, time: npt.ArrayLike) -> npt.NDArray[np.void]:
    """The validated survival target: a structured array (event, time); event 0 censored, 1 the outcome,
    2 death without the outcome (competing); time in years from the index date, finite and >= 0."""
    ev = np.asarray(event)
    t = np.asarray(time, dtype=np.float64)
    if ev.shape != t.shape or ev.ndim != 1:
        raise CohortError(f"event and time must be 1-D of one length, got {ev.shape} and {t.shape}")
    if ev.size == 0:
        raise CohortError("the survival target is empty")
    if np.issubdtype(ev.dtype, np.floating) and np.isnan(ev).any():
        raise CohortError(f"event has {int(np.isnan(ev).sum())} missing values")
    if not np.all(np.isin(ev, (0, 1, 2))):
        bad = sorted({float(v) for v in np.unique(ev)} - {0.0, 1.0, 2.0})[:5]
        raise CohortError(f"event must be coded 0 (censored), 1 (fracture), 2 (death); found {bad}")
    if not np.all(np.isfinite(t)):
        raise CohortError(f"time has {int((~np.isfinite(t)).sum())} missing or infinite values")
    if (t < 0).any():
        raise CohortError(f"time must be >= 0 years; found {float(t.min()):g}")
    out = np.empty(ev.shape[0], dtype=TARGET_DTYPE)
    out["event"] = ev.astype(np.int8)
    out["time"] = t
    return out


def split_target(y: npt.ArrayLike) -> tuple[npt.NDArray[np.int8], FloatArray]:
    """(event, time) of a target made by `competing_target` (or an (n, 2) array [event, time])."""
    arr = np.asarray(y)
    if arr.dtype.names is not None and {"event", "time"} <= set(arr.dtype.names):
        checked = competing_target(arr["event"], arr["time"])
    elif arr.ndim == 2 and arr.shape[1] == 2:
        checked = competing_target(arr[:, 0], arr[:, 1])
    else:
        raise CohortError("y must be competing_target(event, time) or an (n, 2) array of [event, time]")
    return checked["event"], checked["time"]


def check_horizons(horizons: npt.ArrayLike, *, min_years: float = 1.0, max_years: float = 10.0) -> FloatArray:
    """Horizons as a float array, each in [min_years, max_years]; raises `ModelInputError` otherwise."""
    h = np.atleast_1d(np.asarray(horizons, dtype=np.float64))
    if h.size == 0 or h.ndim != 1:
        raise ModelInputError("at least one horizon is needed", reason="BAD_HORIZON")
    if not np.all(np.isfinite(h)) or (h < min_years - 1e-9).any() or (h > max_years + 1e-9).any():
        raise ModelInputError(
            f"horizons {h.tolist()} must lie in [{min_years:g}, {max_years:g}] years (the model's range)",
            reason="BAD_HORIZON",
        )
    return h


@dataclass(frozen=True)
class HorizonGrid:
    """A computation grid: points (years, starting after 0) and the index of each requested horizon."""

    points: FloatArray
    horizon_index: npt.NDArray[np.intp]


def grid_for_horizons(horizons: FloatArray, step: float) -> HorizonGrid:
    """Grid points at every horizon and at least every `step` years up to the largest horizon."""
    top = float(np.max(horizons))
    regular = np.arange(step, top + 1e-9, step)
    points = np.unique(np.round(np.concatenate([regular, horizons]), 9))
    index = np.searchsorted(points, np.round(horizons, 9))
    return HorizonGrid(points=points.astype(np.float64), horizon_index=index.astype(np.intp))


def grid_increments(times: FloatArray, cumhaz: FloatArray, grid: HorizonGrid) -> FloatArray:
    """Increments of cumulative hazards (..., T) sampled at `times` over the grid's intervals -> (..., G).

    The stored curves are step functions sampled on a fine grid; between samples they are interpolated
    linearly."""
    flat = cumhaz.reshape(-1, cumhaz.shape[-1])
    at = np.stack([np.interp(grid.points, times, row) for row in flat])
    at = np.concatenate([np.zeros((at.shape[0], 1)), at], axis=1)
    inc = np.diff(at, axis=1)
    return np.maximum(inc, 0.0).reshape((*cumhaz.shape[:-1], grid.points.size))


def cif_from_hazards(
    r1: FloatArray, r2: FloatArray, d1: FloatArray, d2: FloatArray, horizon_index: npt.NDArray[np.intp]
) -> FloatArray:
    """Cumulative incidence of cause 1 at the horizons.

    r1, r2: relative hazards exp(eta) of shape (n, R) (R replicates); d1, d2: baseline increments (R, G)
    on the grid's intervals. Returns (n, R, H)."""
    n, reps = r1.shape
    out = np.empty((n, reps, horizon_index.size), dtype=r1.dtype)
    cif = np.zeros_like(r1)
    surv = np.ones_like(r1)
    by_point: dict[int, list[int]] = {}
    for k, g in enumerate(horizon_index):
        by_point.setdefault(int(g), []).append(k)
    for g in range(int(horizon_index.max()) + 1):
        a = r1 * d1[:, g]
        tot = a + r2 * d2[:, g]
        event_prob = -np.expm1(-tot)
        cif += surv * event_prob * (a / np.maximum(tot, 1e-300))
        surv *= 1.0 - event_prob
        for k in by_point.get(g, ()):
            out[:, :, k] = cif
    return out


def cif_with_gradients(
    r1: FloatArray, r2: FloatArray, d1: FloatArray, d2: FloatArray, horizon_index: npt.NDArray[np.intp]
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Point incidence of cause 1 (n, H) and its derivatives with respect to the log relative hazards
    eta_1 and eta_2 (forward-mode differentiation of the recursion of `cif_from_hazards`).

    r1, r2: (n,) relative hazards; d1, d2: (G,) baseline increments."""
    n = r1.shape[0]
    cif, dc1, dc2 = np.zeros(n), np.zeros(n), np.zeros(n)
    surv, ds1, ds2 = np.ones(n), np.zeros(n), np.zeros(n)
    out = np.empty((3, n, horizon_index.size))
    by_point: dict[int, list[int]] = {}
    for k, g in enumerate(horizon_index):
        by_point.setdefault(int(g), []).append(k)
    for g in range(int(horizon_index.max()) + 1):
        a = r1 * d1[g]
        c = r2 * d2[g]
        tot = np.maximum(a + c, 1e-300)
        q = -np.expm1(-(a + c))
        e = 1.0 - q
        frac = a / tot
        cross = a * c / (tot * tot)
        sq = surv * q
        dc1 += ds1 * q * frac + surv * e * a * frac + sq * cross
        dc2 += ds2 * q * frac + surv * e * c * frac - sq * cross
        cif += sq * frac
        ds1 = (ds1 - surv * a) * e
        ds2 = (ds2 - surv * c) * e
        surv = surv * e
        for k in by_point.get(g, ()):
            out[0, :, k], out[1, :, k], out[2, :, k] = cif, dc1, dc2
    return out[0], out[1], out[2]


def cif_with_gradients_one(
    r1: float, r2: float, d1: tuple[float, ...], d2: tuple[float, ...], horizon_index: tuple[int, ...]
) -> tuple[list[float], list[float], list[float]]:
    """`cif_with_gradients` for one patient in Python floats (no numpy call per grid step)."""
    cif = dc1 = dc2 = ds1 = ds2 = 0.0
    surv = 1.0
    at: list[tuple[float, float, float]] = []
    for d1g, d2g in zip(d1, d2, strict=True):
        a = r1 * d1g
        c = r2 * d2g
        tot = max(a + c, 1e-300)
        q = -math.expm1(-(a + c))
        e = 1.0 - q
        frac = a / tot
        cross = a * c / (tot * tot)
        sq = surv * q
        dc1 += ds1 * q * frac + surv * e * a * frac + sq * cross
        dc2 += ds2 * q * frac + surv * e * c * frac - sq * cross
        cif += sq * frac
        ds1 = (ds1 - surv * a) * e
        ds2 = (ds2 - surv * c) * e
        surv *= e
        at.append((cif, dc1, dc2))
    picked = [at[i] for i in horizon_index]
    return [p[0] for p in picked], [p[1] for p in picked], [p[2] for p in picked]


def logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, LOGIT_EPS, 1.0 - LOGIT_EPS)
    return np.asarray(np.log(q) - np.log1p(-q))


def expit(x: FloatArray) -> FloatArray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)))


def logit_bootstrap_interval(
    estimate: FloatArray, replicates: FloatArray, *, z: float = Z95
) -> tuple[FloatArray, FloatArray]:
    """(lo, hi) around `estimate` (n, H) from replicates (n, B, H): expit(logit(est) -/+ z * sd_b(logit))."""
    if replicates.shape[1] < 2:
        raise ModelInputError("a bootstrap interval needs at least 2 replicates", reason="NO_BOOTSTRAP")
    se = logit(replicates).std(axis=1, ddof=1)
    centre = logit(estimate)
    lo = np.minimum(expit(centre - z * se), estimate)
    hi = np.maximum(expit(centre + z * se), estimate)
    return lo, hi


def bootstrap_weights(n: int, replicates: int, seed: int) -> npt.NDArray[np.float64]:
    """(replicates, n) multinomial resampling counts (the ordinary bootstrap as frequency weights), seeded."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xB007]))
    return rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(np.float64)


def cif_from_increments(d1: FloatArray, d2: FloatArray, horizon_index: npt.NDArray[np.intp]) -> FloatArray:
    """Cumulative incidence of cause 1 (n, H) from each patient's own cause-specific cumulative-hazard
    increments d1, d2 of shape (n, G) (models without proportional hazards: forests)."""
    cif = np.zeros(d1.shape[0])
    surv = np.ones(d1.shape[0])
    at = np.empty_like(d1)
    for g in range(d1.shape[1]):
        tot = d1[:, g] + d2[:, g]
        event_prob = -np.expm1(-tot)
        cif += surv * event_prob * d1[:, g] / np.maximum(tot, 1e-300)
        surv *= 1.0 - event_prob
        at[:, g] = cif
    return np.asarray(at[:, horizon_index])


class ReplicateIntervals:
    """`predict_cumulative_incidence` and `predict_interval` for models whose `_cif(X, horizons, replicates)`
    gives (n, R, H) incidences: the point estimate first, then the bootstrap replicates."""

    bootstrap: int

    def _cif(self, X: npt.ArrayLike, horizons: npt.ArrayLike, replicates: int) -> FloatArray:
        raise NotImplementedError

    def predict_cumulative_incidence(self, X: npt.ArrayLike, horizons: npt.ArrayLike) -> FloatArray:
        """(n, H) cumulative incidence of the outcome by each horizon (years), death competing."""
        return self._cif(X, horizons, 1)[:, 0, :]

    def predict_interval(self, X: npt.ArrayLike, horizons: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(estimate, lo, hi), each (n, H): the incidence and its 95% bootstrap interval (NaN without replicates)."""
        if self.bootstrap < 2:
            est = self.predict_cumulative_incidence(X, horizons)
            return est, np.full_like(est, np.nan), np.full_like(est, np.nan)
        cif = self._cif(X, horizons, self.bootstrap + 1)
        est = cif[:, 0, :]
        lo, hi = logit_bootstrap_interval(est, cif[:, 1:, :])
        return est, lo, hi
