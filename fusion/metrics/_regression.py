"""Small weighted logistic regression (IRLS) and restricted cubic splines for calibration curves.

Restricted cubic splines as in Harrell, Regression Modeling Strategies, 2nd ed. (2015), section 2.4.5
(linear beyond the outer knots; knots at quantiles 0.05, 0.35, 0.65, 0.95 for four knots).
"""

from __future__ import annotations

import numpy as np

from fusion.metrics._inputs import FloatArray

_KNOT_QUANTILES = {3: (0.10, 0.50, 0.90), 4: (0.05, 0.35, 0.65, 0.95), 5: (0.05, 0.275, 0.50, 0.725, 0.95)}


def logit(p: FloatArray, eps: float = 1e-9) -> FloatArray:
    q = np.clip(p, eps, 1.0 - eps)
    result: FloatArray = np.log(q / (1.0 - q))
    return result


def expit(x: FloatArray) -> FloatArray:
    result: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * x))
    return result


def fit_logistic(
    x: FloatArray,
    y: FloatArray,
    weights: FloatArray | None = None,
    *,
    offset: FloatArray | None = None,
    max_iter: int = 50,
    tol: float = 1e-10,
) -> FloatArray:
    """Weighted maximum-likelihood logistic regression of y (in [0, 1]) on the columns of `x` (add your own
    intercept column), by iteratively reweighted least squares with a tiny ridge for stability.

    Returns NaNs when the fit does not converge (e.g. perfectly separated data, where the maximum
    likelihood estimate does not exist): a metric built on it is then reported as not estimable."""
    n, q = x.shape
    w = np.ones(n) if weights is None else weights
    off = np.zeros(n) if offset is None else offset
    beta = np.zeros(q)
    ridge = 1e-10 * np.eye(q)
    for _ in range(max_iter):
        eta = off + x @ beta
        p = expit(eta)
        v = w * p * (1.0 - p)
        gradient = x.T @ (w * (y - p))
        hessian = (x * v[:, None]).T @ x + ridge
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(hessian, gradient, rcond=None)[0]
        beta = beta + step
        if not np.all(np.isfinite(beta)):
            return np.full(q, np.nan)
        if np.max(np.abs(step)) < tol:
            break
    else:
        return np.full(q, np.nan)
    if not np.all(np.isfinite(beta)):
        return np.full(q, np.nan)
    return beta


def rcs_knots(x: FloatArray, n_knots: int = 4) -> FloatArray:
    quantiles = _KNOT_QUANTILES.get(n_knots)
    if quantiles is None:
        raise ValueError(f"n_knots must be one of {sorted(_KNOT_QUANTILES)}")
    knots = np.unique(np.quantile(x, quantiles))
    return knots


def rcs_basis(x: FloatArray, knots: FloatArray) -> FloatArray:
    """Columns [x, s_1(x), ..., s_{k-2}(x)] of a restricted cubic spline (Harrell 2015, eq. 2.25), scaled."""
    k = knots.size
    if k < 3:
        return x[:, None]
    scale = (knots[-1] - knots[0]) ** 2
    columns = [x]
    last, before_last = knots[-1], knots[-2]
    for j in range(k - 2):
        tj = knots[j]
        term = (
            np.maximum(x - tj, 0.0) ** 3
            - np.maximum(x - before_last, 0.0) ** 3 * (last - tj) / (last - before_last)
            + np.maximum(x - last, 0.0) ** 3 * (before_last - tj) / (last - before_last)
        )
        columns.append(term / scale)
    return np.column_stack(columns)
