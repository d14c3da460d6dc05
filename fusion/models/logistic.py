"""Logistic regression by maximum likelihood (Newton-Raphson / IRLS), binary or multinomial.

Binary:      logit P(y = 1 | x) = b0 + x'b.
Multinomial: P(y = k | x) = exp(b0k + x'b_k) / sum_j exp(b0j + x'b_j), with the first class as reference
             (b_0 = 0), i.e. the baseline-category logit model (Agresti, Categorical Data Analysis, 3rd ed.,
             ch. 8; Hosmer, Lemeshow & Sturdivant, Applied Logistic Regression, 3rd ed., ch. 8).

Unpenalised by default, so the coefficients are the textbook maximum-likelihood estimates (GLOW500's
reference fit is reproduced to 3 decimals in the tests, cross-checked with statsmodels); `penalty` adds
a ridge on standardised coefficients (intercepts free). `cov_` is the inverse observed information,
for Wald intervals.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from fusion.errors import CohortError, ModelArtifactError
from fusion.models.base import checked_rows

FloatArray = npt.NDArray[np.float64]
FORMAT = "osteorisk.logistic/1"


def _softmax_full(eta: FloatArray) -> FloatArray:
    """(n, K-1) non-reference linear predictors -> (n, K) probabilities (reference class first)."""
    full = np.concatenate([np.zeros((eta.shape[0], 1)), eta], axis=1)
    full -= full.max(axis=1, keepdims=True)
    e = np.exp(full)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


class LogisticClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Maximum-likelihood logistic regression (binary or multinomial) fitted by Newton-Raphson.

    Parameters (keyword-only): `penalty` ridge strength on standardised coefficients (0: maximum
    likelihood); `max_iter` Newton iterations; `tol` convergence on the largest parameter step.
    """

    def __init__(self, *, penalty: float = 0.0, max_iter: int = 100, tol: float = 1e-10) -> None:
        self.penalty = penalty
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> Self:
        if self.penalty < 0 or self.max_iter < 1 or self.tol <= 0:
            raise ValueError("penalty must be >= 0, max_iter >= 1 and tol > 0")
        x = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        labels = np.asarray(y)
        if labels.shape[0] != x.shape[0]:
            raise CohortError(f"X has {x.shape[0]} rows but y has {labels.shape[0]}")
        self.classes_, codes = np.unique(labels, return_inverse=True)
        k = self.classes_.size
        if k < 2:
            raise CohortError(f"the target has a single class ({self.classes_.tolist()}): nothing to learn")
        n, p = x.shape
        scale = x.std(axis=0)
        if np.any(scale == 0):
            raise CohortError(f"feature columns {np.flatnonzero(scale == 0).tolist()} are constant")
        z = np.concatenate([np.ones((n, 1)), x], axis=1)
        onehot = np.eye(k)[codes][:, 1:]  # (n, K-1)
        pen = np.concatenate([[0.0], self.penalty * scale**2])
        m = k - 1
        theta = np.zeros((m, p + 1))
        theta[:, 0] = np.log((onehot.mean(axis=0) + 1e-9) / (1.0 - onehot.sum(axis=1).mean() + 1e-9))

        def loglik(th: FloatArray) -> float:
            probs = _softmax_full(z @ th.T)
            return float(np.sum(np.log(np.clip(probs[np.arange(n), codes], 1e-300, None)))) - 0.5 * float(
                np.sum(pen * th * th)
            )

        ll = loglik(theta)
        converged = False
        for it in range(1, self.max_iter + 1):
            probs = _softmax_full(z @ theta.T)[:, 1:]
            grad = ((onehot - probs).T @ z - pen * theta).ravel()
            hess = np.empty((m * (p + 1), m * (p + 1)))
            for a in range(m):
                for b in range(m):
                    w = probs[:, a] * ((a == b) - probs[:, b])
                    block = -(z * w[:, None]).T @ z
                    if a == b:
                        block -= np.diag(pen)
                    hess[a * (p + 1) : (a + 1) * (p + 1), b * (p + 1) : (b + 1) * (p + 1)] = block
            try:
                step = np.linalg.solve(-hess, grad).reshape(m, p + 1)
            except np.linalg.LinAlgError:
                raise CohortError(
                    "the logistic information matrix is singular: collinear features or complete separation"
                ) from None
            scale_step = 1.0
            while True:
                trial = theta + scale_step * step
                ll_t = loglik(trial)
                if np.isfinite(ll_t) and ll_t >= ll - 1e-12 * abs(ll):
                    break
                scale_step *= 0.5
                if scale_step < 1e-8:
                    break
            theta, ll = trial, ll_t
            self.n_iter_ = it
            if float(np.max(np.abs(scale_step * step))) < self.tol:
                converged = True
                break
        if not converged or np.max(np.abs(theta[:, 1:] * scale)) > 30:
            raise CohortError(
                "the logistic fit did not converge: (quasi-)complete separation by some feature; drop it or "
                "set a penalty"
            )
        self.intercept_ = theta[:, 0].copy()
        self.coef_ = theta[:, 1:].copy()
        self.log_likelihood_ = float(ll)
        probs = _softmax_full(z @ theta.T)[:, 1:]
        info = np.zeros((m * (p + 1), m * (p + 1)))
        for a in range(m):
            for b in range(m):
                w = probs[:, a] * ((a == b) - probs[:, b])
                info[a * (p + 1) : (a + 1) * (p + 1), b * (p + 1) : (b + 1) * (p + 1)] = (z * w[:, None]).T @ z
        self.cov_ = np.linalg.pinv(info + np.diag(np.tile(pen, m)))
        return self

    def decision_function(self, X: npt.ArrayLike) -> FloatArray:
        """Linear predictors: (n,) log-odds for a binary model, (n, K-1) against the reference class."""
        check_is_fitted(self, "coef_")
        x = checked_rows(self, X)
        eta = x @ self.coef_.T + self.intercept_
        return np.asarray(eta[:, 0] if self.classes_.size == 2 else eta)

    def predict_proba(self, X: npt.ArrayLike) -> FloatArray:
        """(n, K) class probabilities, columns in `classes_` order."""
        check_is_fitted(self, "coef_")
        x = checked_rows(self, X)
        return _softmax_full(x @ self.coef_.T + self.intercept_)

    def predict(self, X: npt.ArrayLike) -> npt.NDArray[Any]:
        return np.asarray(self.classes_[np.argmax(self.predict_proba(X), axis=1)])

    def wald_interval(self, X: npt.ArrayLike, *, z: float = 1.959963984540054) -> tuple[FloatArray, FloatArray]:
        """95% Wald interval of P(y = classes_[1]) for a binary model, on the logit scale: (lo, hi)."""
        check_is_fitted(self, "coef_")
        if self.classes_.size != 2:
            raise ValueError("wald_interval is defined for binary models")
        x = validate_data(self, X, dtype=np.float64, reset=False)
        zx = np.concatenate([np.ones((x.shape[0], 1)), x], axis=1)
        eta = zx @ np.concatenate([self.intercept_, self.coef_[0]])
        se = np.sqrt(np.einsum("ij,jk,ik->i", zx, self.cov_, zx))
        return 1.0 / (1.0 + np.exp(-(eta - z * se))), 1.0 / (1.0 + np.exp(-(eta + z * se)))

    def to_json(self) -> dict[str, Any]:
        check_is_fitted(self, "coef_")
        return {
            "format": FORMAT,
            "params": self.get_params(),
            "classes": [c.item() if hasattr(c, "item") else c for c in self.classes_],
            "intercept": self.intercept_.tolist(),
            "coef": self.coef_.tolist(),
            "cov": self.cov_.tolist(),
            "log_likelihood": self.log_likelihood_,
            "n_iter": int(self.n_iter_),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LogisticClassifier:
        try:
            if data.get("format") != FORMAT:
                raise ModelArtifactError(f"not a {FORMAT} model (format {data.get('format')!r})")
            model = cls(**data["params"])
            model.classes_ = np.asarray(data["classes"])
            model.intercept_ = np.asarray(data["intercept"], dtype=np.float64)
            model.coef_ = np.asarray(data["coef"], dtype=np.float64)
            if model.coef_.ndim != 2 or model.coef_.shape[0] != model.classes_.size - 1:
                raise ValueError(f"coef shape {model.coef_.shape} does not fit {model.classes_.size} classes")
            model.n_features_in_ = model.coef_.shape[1]
            model.cov_ = np.asarray(data["cov"], dtype=np.float64)
            model.log_likelihood_ = float(data["log_likelihood"])
            model.n_iter_ = int(data["n_iter"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelArtifactError(f"malformed logistic model file: {exc}") from exc
        return model
