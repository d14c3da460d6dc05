"""Cause-specific Cox models for one fracture outcome with death as a competing risk.

For cause k (1 = the fracture, 2 = death without it) the cause-specific hazard is

    h_k(t | x) = h_k0(t) exp((x - m)'b_k),

fitted by maximising the Breslow partial likelihood with every other cause treated as censoring
(Cox 1972; Prentice et al. 1978, doi:10.2307/2530374; Putter, Fiocco & Geskus 2007, doi:10.1002/sim.2712).
Covariates are centred at the training means m, so h_k0 is the hazard of the mean patient; the Breslow
estimator gives the baseline cumulative hazard dLambda_k0(t_i) = d_i / sum_{j in R(t_i)} exp((x_j - m)'b_k).
Absolute risk is the cumulative incidence CIF_1(t | x) = sum_{s <= t} S(s- | x) dLambda_1(s | x) with
S = exp(-Lambda_1 - Lambda_2) (see `fusion.models.competing`).

Solver: Newton-Raphson with step halving on the exact gradient and Hessian, vectorised with cumulative
sums over the time-sorted data (O(n p^2) per iteration), Breslow handling of tied times. The tests check
it against lifelines' `CoxPHFitter` to 1e-6; `solver="lifelines"` fits the point estimate with lifelines.

Intervals: `bootstrap` refits on multinomial resamples of the rows (as frequency weights, so the data are
sorted once), each stored with the model; see `fusion.models.competing` for the interval itself. A
replicate whose likelihood is monotone (a rare yes/no input without events in that resample, so that the
estimate runs to infinity) is refitted with a unit ridge on standardised coefficients; their number is
kept in `n_boot_penalized_`.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from fusion.errors import CohortError, ModelArtifactError
from fusion.models.base import checked_rows
from fusion.models.competing import (
    LOGIT_EPS,
    Z95,
    FloatArray,
    bootstrap_weights,
    check_horizons,
    cif_from_hazards,
    cif_with_gradients,
    cif_with_gradients_one,
    expit,
    grid_for_horizons,
    grid_increments,
    logit,
    logit_bootstrap_interval,
    split_target,
)

FORMAT = "osteorisk.cox_cause_specific/1"
MAX_STANDARDISED_COEF = 15.0
FALLBACK_PENALIZER = 1.0
_MAX_ETA = 50.0
_BOOT_TOL = 1e-7  # replicate coefficients to 1e-7: far below their bootstrap spread
_CAUSES = (1, 2)


@dataclass
class _SortedData:
    x: FloatArray  # centred covariates, rows sorted by time ascending
    time: FloatArray
    event: npt.NDArray[np.int8]
    first: npt.NDArray[np.intp]  # first row with the same time (risk sets include ties)
    last: npt.NDArray[np.intp]  # last row with the same time


@dataclass(frozen=True)
class _Grid:
    index: npt.NDArray[np.intp]  # grid position of each horizon
    d1: FloatArray  # (R, G) baseline increments of the outcome, point estimate first
    d2: FloatArray  # (R, G) of competing death
    log_cumhaz: list[FloatArray]  # per cause (B, H): log baseline cumulative hazard of each replicate
    d1_point: tuple[float, ...]  # the point estimate's increments as Python floats (one-patient path)
    d2_point: tuple[float, ...]
    index_tuple: tuple[int, ...]
    # one-patient delta method (None without replicates): per pair (11, 22, 12) the linear (3, p, H) and
    # constant (3, H) parts of the bootstrap covariance of the log cumulative hazards
    delta_linear: FloatArray | None = None
    delta_constant: FloatArray | None = None


@dataclass(frozen=True)
class CoxFit:
    coef: FloatArray
    log_likelihood: float
    n_iter: int
    converged: bool
    s0: FloatArray | None = None  # risk-set sums at the event rows for `coef` (reused by the Breslow estimator)
    event_rows: npt.NDArray[np.intp] | None = None


def _sorted_data(x: FloatArray, time: FloatArray, event: npt.NDArray[np.int8]) -> tuple[_SortedData, FloatArray]:
    order = np.argsort(time, kind="stable")
    t = time[order]
    first = np.searchsorted(t, t, side="left").astype(np.intp)
    last = (np.searchsorted(t, t, side="right") - 1).astype(np.intp)
    return _SortedData(x=x[order], time=t, event=event[order], first=first, last=last), order.astype(np.float64)


def _evaluate(
    data: _SortedData, dw: FloatArray, w: FloatArray, beta: FloatArray, pen: FloatArray
) -> tuple[float, FloatArray, FloatArray, FloatArray, npt.NDArray[np.intp]]:
    """Log partial likelihood, gradient, Hessian (Breslow ties), S0 at the event rows and their indices."""
    x = data.x
    eta = x @ beta
    top = float(eta.max())
    e = w * np.exp(eta - top)
    s0_all = np.cumsum(e[::-1])[::-1]
    idx = np.flatnonzero(dw > 0)
    s0 = s0_all[data.first[idx]]
    s1_all = np.cumsum((x * e[:, None])[::-1], axis=0)[::-1]
    m = s1_all[data.first[idx]] / s0[:, None]
    dwe = dw[idx]
    ll = float(np.sum(dwe * (eta[idx] - top - np.log(s0)))) - 0.5 * float(np.sum(pen * beta * beta))
    grad = dwe @ (x[idx] - m) - pen * beta
    inv = np.zeros(x.shape[0])
    inv[idx] = dwe / s0
    c = np.cumsum(inv)[data.last]
    term1 = (x * (e * c)[:, None]).T @ x
    term2 = (m * dwe[:, None]).T @ m
    hess = -(term1 - term2) - np.diag(pen)
    with np.errstate(over="ignore"):  # a diverging trial step; the caller halves it (ll is then not finite)
        s0_true = s0 * np.exp(top)
    return ll, grad, hess, s0_true, idx


def newton_cox(
    data: _SortedData,
    cause: int,
    weights: FloatArray,
    *,
    penalty: FloatArray,
    scale: FloatArray | None = None,
    start: FloatArray | None = None,
    tol: float = 1e-9,
    max_iter: int = 60,
) -> CoxFit:
    """Maximise the weighted Breslow partial likelihood of `cause` by Newton-Raphson with step halving.

    A standardised coefficient |b_j s_j| beyond `MAX_STANDARDISED_COEF` means a monotone likelihood (the
    estimate runs to infinity, e.g. a yes/no input with no events among its exposed): not converged."""
    p = data.x.shape[1]
    dw = weights * (data.event == cause)
    beta = np.zeros(p) if start is None else start.copy()
    ll, grad, hess, s0, rows = _evaluate(data, dw, weights, beta, penalty)
    for it in range(1, max_iter + 1):
        try:
            step = np.linalg.solve(-hess, grad)
        except np.linalg.LinAlgError:
            raise CohortError(
                "the Cox Hessian is singular: a feature is constant or collinear with others among the "
                f"cause-{cause} risk sets; drop it or add a penalizer"
            ) from None
        size = 1.0
        while True:
            trial = beta + size * step
            ll_t, grad_t, hess_t, s0_t, rows_t = _evaluate(data, dw, weights, trial, penalty)
            if np.isfinite(ll_t) and ll_t >= ll - 1e-12 * abs(ll):
                break
            size *= 0.5
            if size < 1e-6:
                return CoxFit(coef=beta, log_likelihood=ll, n_iter=it, converged=False)
        beta, ll, grad, hess, s0, rows = trial, ll_t, grad_t, hess_t, s0_t, rows_t
        if scale is not None and float(np.max(np.abs(beta * scale))) > MAX_STANDARDISED_COEF:
            return CoxFit(coef=beta, log_likelihood=ll, n_iter=it, converged=False)
        if float(np.max(np.abs(size * step))) < tol:
            return CoxFit(coef=beta, log_likelihood=ll, n_iter=it, converged=True, s0=s0, event_rows=rows)
    return CoxFit(coef=beta, log_likelihood=ll, n_iter=max_iter, converged=False)


def breslow_cumhaz(data: _SortedData, cause: int, weights: FloatArray, fit: CoxFit, grid: FloatArray) -> FloatArray:
    """Breslow baseline cumulative hazard (at the centring point) sampled at `grid` (right-continuous)."""
    dw = weights * (data.event == cause)
    if fit.s0 is not None and fit.event_rows is not None:
        s0, idx = fit.s0, fit.event_rows
    else:
        _, _, _, s0, idx = _evaluate(data, dw, weights, fit.coef, np.zeros_like(fit.coef))
    jumps = dw[idx] / s0
    cum = np.cumsum(jumps)
    pos = np.searchsorted(data.time[idx], grid, side="right") - 1
    return np.where(pos >= 0, cum[np.maximum(pos, 0)], 0.0)


def _lifelines_fit(data: _SortedData, cause: int, weights: FloatArray) -> CoxFit:
    import pandas as pd
    from lifelines import CoxPHFitter

    cols = [f"x{j}" for j in range(data.x.shape[1])]
    frame = pd.DataFrame(data.x, columns=cols)
    frame["T"] = data.time
    frame["E"] = (data.event == cause).astype(int)
    frame["W"] = weights
    fitter = CoxPHFitter().fit(frame, "T", "E", weights_col="W", robust=False)
    coef = fitter.params_.loc[cols].to_numpy(dtype=np.float64)
    return CoxFit(coef=coef, log_likelihood=float(fitter.log_likelihood_), n_iter=0, converged=True)


def _round(a: npt.ArrayLike) -> Any:
    """Nested lists of floats at 12 significant digits (stable text for byte-identical artifacts)."""
    arr = np.asarray(a, dtype=np.float64)
    return np.vectorize(lambda v: float(f"{v:.12g}"), otypes=[float])(arr).tolist() if arr.size else arr.tolist()


class CauseSpecificCox(BaseEstimator):  # type: ignore[misc]
    """Cause-specific Cox models (outcome and competing death) combined into cumulative incidence.

    Parameters (keyword-only): `bootstrap` replicate refits for the intervals (0: no intervals);
    `random_state` seeds the resampling; `penalizer` ridge on standardised coefficients (0: maximum
    likelihood); `solver` "newton" or "lifelines" (point estimate); `grid_step_years` resolution at which
    baseline cumulative hazards are stored; `max_time_years` last stored time; `compute_step_years` the
    widest step of the incidence grid at prediction time; `interval` "delta" (fast, default) or
    "replicates" (see `predict_interval`).
    """

    def __init__(
        self,
        *,
        bootstrap: int = 50,
        random_state: int = 0,
        penalizer: float = 0.0,
        solver: str = "newton",
        grid_step_years: float = 0.05,
        max_time_years: float = 10.0,
        compute_step_years: float = 0.5,
        interval: str = "delta",
    ) -> None:
        self.bootstrap = bootstrap
        self.random_state = random_state
        self.penalizer = penalizer
        self.solver = solver
        self.grid_step_years = grid_step_years
        self.max_time_years = max_time_years
        self.compute_step_years = compute_step_years
        self.interval = interval

    def _check_params(self) -> None:
        if not isinstance(self.bootstrap, int | np.integer) or self.bootstrap < 0 or self.bootstrap == 1:
            raise ValueError(f"bootstrap must be 0 or an integer >= 2, got {self.bootstrap!r}")
        if self.penalizer < 0:
            raise ValueError(f"penalizer must be >= 0, got {self.penalizer!r}")
        if self.interval not in ("delta", "replicates"):
            raise ValueError(f"interval must be 'delta' or 'replicates', got {self.interval!r}")
        if self.solver not in ("newton", "lifelines"):
            raise ValueError(f"solver must be 'newton' or 'lifelines', got {self.solver!r}")
        if self.solver == "lifelines" and self.penalizer > 0:
            raise ValueError("solver='lifelines' is used unpenalised here; use solver='newton' with a penalizer")
        for name in ("grid_step_years", "max_time_years", "compute_step_years"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")

    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> Self:
        """Fit both cause-specific models and the bootstrap replicates. y: `competing_target(event, time)`."""
        self._check_params()
        x = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        event, time = split_target(y)
        if event.shape[0] != x.shape[0]:
            raise CohortError(f"X has {x.shape[0]} rows but y has {event.shape[0]}")
        for cause in _CAUSES:
            if not (event == cause).any():
                raise CohortError(f"no events of cause {cause} in the training data: the model cannot be fitted")
        self.mean_ = x.mean(axis=0)
        self.scale_ = x.std(axis=0)
        constant = np.flatnonzero(self.scale_ == 0)
        if constant.size:
            raise CohortError(f"feature columns {constant.tolist()} are constant in the training data")
        data, _ = _sorted_data(x - self.mean_, time, event)
        penalty = self.penalizer * self.scale_**2
        self.times_ = np.round(np.arange(0.0, self.max_time_years + 1e-9, self.grid_step_years), 9)
        ones = np.ones(x.shape[0])
        coefs, cumhaz, lls, iters = [], [], [], []
        for cause in _CAUSES:
            fit = (
                _lifelines_fit(data, cause, ones)
                if self.solver == "lifelines"
                else newton_cox(data, cause, ones, penalty=penalty, scale=self.scale_)
            )
            if not fit.converged:
                j = int(np.argmax(np.abs(fit.coef * self.scale_)))
                raise CohortError(
                    f"the cause-{cause} Cox model did not converge: monotone likelihood in feature column {j} "
                    "(e.g. no events among the patients who have it); drop it or set a penalizer"
                )
            coefs.append(fit.coef)
            lls.append(fit.log_likelihood)
            iters.append(fit.n_iter)
            cumhaz.append(breslow_cumhaz(data, cause, ones, fit, self.times_))
        self.coef_ = np.stack(coefs)
        self.baseline_cumhaz_ = np.stack(cumhaz)
        self.log_likelihood_ = np.asarray(lls)
        self.n_iter_ = np.asarray(iters)
        self.n_events_ = np.asarray([int((event == c).sum()) for c in _CAUSES])
        fallback = max(self.penalizer, FALLBACK_PENALIZER) * self.scale_**2
        all_weights = bootstrap_weights(x.shape[0], self.bootstrap, self.random_state)

        def replicate(b: int) -> tuple[FloatArray, FloatArray, int]:
            weights = all_weights[b]
            coef, cumhaz, refits = np.zeros((2, x.shape[1])), np.zeros((2, self.times_.size)), 0
            for k, cause in enumerate(_CAUSES):
                fit = newton_cox(
                    data, cause, weights, penalty=penalty, scale=self.scale_, start=self.coef_[k], tol=_BOOT_TOL
                )
                if not fit.converged:
                    refits += 1
                    fit = newton_cox(
                        data, cause, weights, penalty=fallback, scale=self.scale_, start=self.coef_[k], tol=_BOOT_TOL
                    )
                coef[k] = fit.coef
                cumhaz[k] = breslow_cumhaz(data, cause, weights, fit, self.times_)
            return coef, cumhaz, refits

        # replicates are independent: numpy releases the GIL, so threads share the CPUs (results in order)
        with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
            results = list(pool.map(replicate, range(self.bootstrap)))
        self.n_boot_penalized_ = sum(r[2] for r in results)
        self.boot_coef_ = np.stack([r[0] for r in results]) if results else np.zeros((0, 2, x.shape[1]))
        self.boot_baseline_cumhaz_ = (
            np.stack([r[1] for r in results]) if results else np.zeros((0, 2, self.times_.size))
        )
        self._prepare()
        return self

    # ---- prediction ------------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Stack point estimate and replicates once: (p, R) weights and offsets; clear cached grids."""
        coef = np.concatenate([self.coef_[None], self.boot_coef_], axis=0)  # (R, 2, p)
        self._w = [np.ascontiguousarray(coef[:, k, :].T) for k in range(2)]  # each (p, R)
        self._offset = [self.mean_ @ w for w in self._w]
        self._cumhaz = np.concatenate([self.baseline_cumhaz_[None], self.boot_baseline_cumhaz_], axis=0)
        # the replicates' coefficients centred over replicates, (p, B) per cause, and their products (3, p, p)
        # for pairs 11, 22, 12: the one-patient delta method's quadratic part (see `_delta_interval_one`)
        self._boot_centred: list[FloatArray] = []
        self._delta_quadratic: FloatArray | None = None
        if self.boot_coef_.shape[0] >= 2:
            self._boot_centred = [w[:, 1:] - w[:, 1:].mean(axis=1, keepdims=True) for w in self._w]
            a1, a2 = self._boot_centred
            self._delta_quadratic = np.stack([a1 @ a1.T, a2 @ a2.T, a1 @ a2.T])
        self._grids: dict[tuple[float, ...], _Grid] = {}

    def _grid(self, horizons: FloatArray) -> _Grid:
        key = tuple(float(h) for h in horizons)
        cached = self._grids.get(key)
        if cached is None:
            grid = grid_for_horizons(horizons, self.compute_step_years)
            inc = grid_increments(self.times_, self._cumhaz, grid)  # (R, 2, G)
            at_h = np.array(
                [[np.interp(horizons, self.times_, c) for c in rep] for rep in self._cumhaz[1:]], dtype=np.float64
            ).reshape(-1, 2, horizons.size)
            log_h = np.log(np.maximum(at_h, 1e-300))
            delta_linear = delta_constant = None
            if self._boot_centred:
                l1, l2 = (log_h[:, k, :] - log_h[:, k, :].mean(axis=0) for k in range(2))  # centred, (B, H)
                a1, a2 = self._boot_centred
                delta_linear = np.stack([2 * a1 @ l1, 2 * a2 @ l2, a1 @ l2 + a2 @ l1])
                delta_constant = np.stack([(l1 * l1).sum(axis=0), (l2 * l2).sum(axis=0), (l1 * l2).sum(axis=0)])
            cached = _Grid(
                index=grid.horizon_index,
                d1=np.ascontiguousarray(inc[:, 0]),
                d2=np.ascontiguousarray(inc[:, 1]),
                log_cumhaz=[np.ascontiguousarray(log_h[:, k, :]) for k in range(2)],  # each (B, H)
                d1_point=tuple(float(v) for v in inc[0, 0]),
                d2_point=tuple(float(v) for v in inc[0, 1]),
                index_tuple=tuple(int(i) for i in grid.horizon_index),
                delta_linear=delta_linear,
                delta_constant=delta_constant,
            )
            self._grids[key] = cached
        return cached

    def _rows(self, X: npt.ArrayLike) -> FloatArray:
        check_is_fitted(self, "coef_")
        return checked_rows(self, X)

    def _point_cif(self, x: FloatArray, grid: _Grid) -> FloatArray:
        """(n, H) incidence of the point estimate."""
        eta1 = np.minimum(x @ self._w[0][:, 0] - self._offset[0][0], _MAX_ETA)
        eta2 = np.minimum(x @ self._w[1][:, 0] - self._offset[1][0], _MAX_ETA)
        cif = cif_from_hazards(np.exp(eta1)[:, None], np.exp(eta2)[:, None], grid.d1[:1], grid.d2[:1], grid.index)
        return cif[:, 0, :]

    def _point_and_gradients(self, x: FloatArray, grid: _Grid) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(CIF, d logit CIF / d eta_1, d logit CIF / d eta_2), each (n, H)."""
        eta1 = np.minimum(x @ self._w[0][:, 0] - self._offset[0][0], _MAX_ETA)
        eta2 = np.minimum(x @ self._w[1][:, 0] - self._offset[1][0], _MAX_ETA)
        cif, dc1, dc2 = cif_with_gradients(np.exp(eta1), np.exp(eta2), grid.d1[0], grid.d2[0], grid.index)
        q = np.clip(cif, LOGIT_EPS, 1 - LOGIT_EPS)
        scale = 1.0 / (q * (1.0 - q))
        return cif, dc1 * scale, dc2 * scale

    def replicate_cumulative_incidence(self, X: npt.ArrayLike, horizons: npt.ArrayLike) -> FloatArray:
        """(n, B + 1, H) incidence of the point estimate (index 0) and of every bootstrap replicate."""
        x = self._rows(X)
        h = check_horizons(horizons, max_years=float(self.times_[-1]))
        grid = self._grid(h)
        eta1 = np.minimum(x @ self._w[0] - self._offset[0], _MAX_ETA)
        eta2 = np.minimum(x @ self._w[1] - self._offset[1], _MAX_ETA)
        return cif_from_hazards(np.exp(eta1), np.exp(eta2), grid.d1, grid.d2, grid.index)

    def predict_cumulative_incidence(self, X: npt.ArrayLike, horizons: npt.ArrayLike) -> FloatArray:
        """(n, H) cumulative incidence of the outcome by each horizon (years), death competing."""
        x = self._rows(X)
        h = check_horizons(horizons, max_years=float(self.times_[-1]))
        return self._point_cif(x, self._grid(h))

    def predict_interval(self, X: npt.ArrayLike, horizons: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(estimate, lo, hi), each (n, H): the incidence and its 95% bootstrap interval.

        `interval="replicates"`: the bootstrap SE of logit CIF over the replicates' incidences.
        `interval="delta"` (default, the same to first order at a fraction of the cost): each replicate b
        shifts the patient's log cumulative hazards L_k(h) = log Lambda_k0,b(h) + (x - m)'b_k,b; their
        bootstrap (co)variances are exact, and the delta method carries them to logit CIF with the exact
        derivatives d logit CIF / d L_k of the point estimate (forward-mode through the grid recursion)."""
        x = self._rows(X)
        h = check_horizons(horizons, max_years=float(self.times_[-1]))
        grid = self._grid(h)
        if self.bootstrap < 2:
            est = self._point_cif(x, grid)
            return est, np.full_like(est, np.nan), np.full_like(est, np.nan)
        if self.interval == "replicates":
            est = self._point_cif(x, grid)
            cif = self.replicate_cumulative_incidence(x, h)
            lo, hi = logit_bootstrap_interval(est, cif[:, 1:, :])
            return est, lo, hi
        if x.shape[0] == 1:
            return self._delta_interval_one(x[0], grid)
        est, g1, g2 = self._point_and_gradients(x, grid)
        base = logit(est)
        e1 = x @ self._w[0][:, 1:] - self._offset[0][1:]
        e2 = x @ self._w[1][:, 1:] - self._offset[1][1:]
        e1 -= e1.mean(axis=1, keepdims=True)
        e2 -= e2.mean(axis=1, keepdims=True)
        l1 = grid.log_cumhaz[0] - grid.log_cumhaz[0].mean(axis=0)
        l2 = grid.log_cumhaz[1] - grid.log_cumhaz[1].mean(axis=0)
        dof = 1.0 / (self.bootstrap - 1)
        v11 = (np.einsum("ij,ij->i", e1, e1)[:, None] + 2 * (e1 @ l1) + np.einsum("bh,bh->h", l1, l1)) * dof
        v22 = (np.einsum("ij,ij->i", e2, e2)[:, None] + 2 * (e2 @ l2) + np.einsum("bh,bh->h", l2, l2)) * dof
        v12 = (np.einsum("ij,ij->i", e1, e2)[:, None] + e1 @ l2 + e2 @ l1 + np.einsum("bh,bh->h", l1, l2)) * dof
        se = np.sqrt(np.maximum(g1 * g1 * v11 + 2 * g1 * g2 * v12 + g2 * g2 * v22, 0.0))
        lo = np.minimum(expit(base - Z95 * se), est)
        hi = np.maximum(expit(base + Z95 * se), est)
        return est, lo, hi

    def _delta_interval_one(self, x: FloatArray, grid: _Grid) -> tuple[FloatArray, FloatArray, FloatArray]:
        """`predict_interval`'s delta method for one patient: the same quantities in Python floats, and the
        bootstrap (co)variances with the replicates factored out once per model and horizon set.

        With u = x - m, A_k the replicates' centred coefficients (p, B) and L_k their centred log baseline
        cumulative hazards (B, H): sum_b (u'A_j + L_j)_b (u'A_k + L_k)_b = u'A_j A_k'u + u'(A_j L_k + A_k L_j)
        + sum_b L_j L_k, a few (p, p) and (p, H) products instead of (B,)-long ones per patient."""
        if self._delta_quadratic is None or grid.delta_linear is None or grid.delta_constant is None:
            raise ModelArtifactError("the model has no bootstrap replicates for a delta-method interval")
        eta1 = min(float(x @ self._w[0][:, 0]) - float(self._offset[0][0]), _MAX_ETA)
        eta2 = min(float(x @ self._w[1][:, 0]) - float(self._offset[1][0]), _MAX_ETA)
        cif, dc1, dc2 = cif_with_gradients_one(
            math.exp(eta1), math.exp(eta2), grid.d1_point, grid.d2_point, grid.index_tuple
        )
        u = x - self.mean_
        quadratic = (self._delta_quadratic @ u) @ u  # (3,): pairs 11, 22, 12
        v11, v22, v12 = (
            (quadratic[:, None] + u @ grid.delta_linear + grid.delta_constant) / (self.bootstrap - 1)
        ).tolist()
        lo, hi = [], []
        for k, c in enumerate(cif):
            q = min(max(c, LOGIT_EPS), 1.0 - LOGIT_EPS)
            scale = 1.0 / (q * (1.0 - q))
            g1, g2 = dc1[k] * scale, dc2[k] * scale
            se = math.sqrt(max(g1 * g1 * v11[k] + 2 * g1 * g2 * v12[k] + g2 * g2 * v22[k], 0.0))
            base = math.log(q) - math.log1p(-q)
            lo.append(min(0.5 * (1.0 + math.tanh(0.5 * (base - Z95 * se))), c))
            hi.append(max(0.5 * (1.0 + math.tanh(0.5 * (base + Z95 * se))), c))
        return np.array([cif]), np.array([lo]), np.array([hi])

    def predict_log_hazard(self, X: npt.ArrayLike) -> FloatArray:
        """(n, 2) linear predictors (x - m)'b_k of the outcome and of death: risk scores for concordance."""
        check_is_fitted(self, "coef_")
        x = validate_data(self, X, dtype=np.float64, reset=False)
        return np.asarray((x - self.mean_) @ self.coef_.T)

    def contributions(self, X: npt.ArrayLike) -> FloatArray:
        """(n, p) log-hazard contributions b_1j (x_j - m_j) of each feature to the outcome's hazard."""
        x = self._rows(X)
        return np.asarray((x - self.mean_) * self.coef_[0])

    # ---- artifact --------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The fitted model as JSON-ready data (floats at 12 significant digits)."""
        check_is_fitted(self, "coef_")
        return {
            "format": FORMAT,
            "params": self.get_params(),
            "n_features": int(self.n_features_in_),
            "mean": _round(self.mean_),
            "scale": _round(self.scale_),
            "coef": _round(self.coef_),
            "times": _round(self.times_),
            "baseline_cumhaz": _round(self.baseline_cumhaz_),
            "log_likelihood": _round(self.log_likelihood_),
            "n_events": self.n_events_.tolist(),
            "n_iter": self.n_iter_.tolist(),
            "n_boot_penalized": int(self.n_boot_penalized_),
            "boot_coef": _round(self.boot_coef_),
            "boot_baseline_cumhaz": _round(self.boot_baseline_cumhaz_),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CauseSpecificCox:
        """Rebuild a fitted model from `to_json` data; raises `ModelArtifactError` when malformed."""
        try:
            if data.get("format") != FORMAT:
                raise ModelArtifactError(f"not a {FORMAT} model (format {data.get('format')!r})")
            model = cls(**data["params"])
            p = int(data["n_features"])
            model.n_features_in_ = p
            model.mean_ = np.asarray(data["mean"], dtype=np.float64).reshape(p)
            model.scale_ = np.asarray(data["scale"], dtype=np.float64).reshape(p)
            model.coef_ = np.asarray(data["coef"], dtype=np.float64).reshape(2, p)
            model.times_ = np.asarray(data["times"], dtype=np.float64)
            t = model.times_.size
            model.baseline_cumhaz_ = np.asarray(data["baseline_cumhaz"], dtype=np.float64).reshape(2, t)
            model.log_likelihood_ = np.asarray(data["log_likelihood"], dtype=np.float64)
            model.n_events_ = np.asarray(data["n_events"], dtype=np.int64)
            model.n_iter_ = np.asarray(data["n_iter"], dtype=np.int64)
            model.n_boot_penalized_ = int(data.get("n_boot_penalized", 0))
            b = int(model.bootstrap)
            model.boot_coef_ = np.asarray(data["boot_coef"], dtype=np.float64).reshape(b, 2, p)
            model.boot_baseline_cumhaz_ = np.asarray(data["boot_baseline_cumhaz"], dtype=np.float64).reshape(b, 2, t)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelArtifactError(f"malformed Cox model file: {exc}") from exc
        model._prepare()
        return model

    def to_artifact(self) -> tuple[dict[str, Any], dict[str, FloatArray]]:
        """(JSON part, arrays part) of the model file; a Cox model is all JSON."""
        return self.to_json(), {}

    @classmethod
    def from_artifact(cls, meta: dict[str, Any], arrays: dict[str, FloatArray]) -> CauseSpecificCox:
        return cls.from_json(meta)
