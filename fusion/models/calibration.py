"""Probability calibration on held-out folds (cross-fitting), for the diagnosis classifier.

The base classifier is refitted on k-1 folds and scores the held-out fold; a calibration map is learned
on those out-of-fold scores and applied on top of the base classifier fitted to all the data (the
"ensemble=False" scheme of scikit-learn's CalibratedClassifierCV):

- `platt`: logistic regression of the outcome on the out-of-fold log-odds (Platt 1999; a calibration
  slope below 1 shrinks the overfitted base model);
- `isotonic`: a monotone step function of the out-of-fold probability (Zadrozny & Elkan 2002).

Multiclass: one-vs-rest maps per class, renormalised to sum to 1. The reported coefficients are those of
the base model; `none` applies no map.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_is_fitted, validate_data

from fusion.errors import CohortError, ModelArtifactError
from fusion.models.base import checked_rows
from fusion.models.logistic import LogisticClassifier

FloatArray = npt.NDArray[np.float64]
FORMAT = "osteorisk.calibrated_classifier/1"
_EPS = 1e-9


def _logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, _EPS, 1 - _EPS)
    return np.asarray(np.log(q / (1 - q)))


class CalibratedClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A `LogisticClassifier` with a cross-fitted calibration map (`method`: platt | isotonic | none)."""

    def __init__(
        self,
        *,
        estimator: LogisticClassifier | None = None,
        method: str = "platt",
        cv: int = 5,
        random_state: int = 0,
    ) -> None:
        self.estimator = estimator
        self.method = method
        self.cv = cv
        self.random_state = random_state

    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> Self:
        if self.method not in ("platt", "isotonic", "none"):
            raise ValueError(f"method must be platt, isotonic or none, got {self.method!r}")
        if self.cv < 2:
            raise ValueError(f"cv must be >= 2, got {self.cv!r}")
        x = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        labels = np.asarray(y)
        base = self.estimator if self.estimator is not None else LogisticClassifier()
        self.base_ = clone(base).fit(x, labels)
        self.classes_ = self.base_.classes_
        self.maps_: list[dict[str, Any]] = []
        if self.method == "none":
            return self
        counts = np.array([(labels == c).sum() for c in self.classes_])
        if counts.min() < self.cv:
            raise CohortError(f"calibration with {self.cv} folds needs >= {self.cv} cases of each class; got {counts}")
        oof = np.zeros((x.shape[0], self.classes_.size))
        folds = StratifiedKFold(n_splits=self.cv, shuffle=True, random_state=self.random_state)
        for train, test in folds.split(x, labels):
            fold_model = clone(base).fit(x[train], labels[train])
            if fold_model.classes_.size != self.classes_.size:
                raise CohortError("a calibration fold lacks a class; use fewer folds")
            oof[test] = fold_model.predict_proba(x[test])
        columns = [1] if self.classes_.size == 2 else list(range(self.classes_.size))
        for k in columns:
            target = (labels == self.classes_[k]).astype(np.float64)
            self.maps_.append(self._fit_map(oof[:, k], target))
        return self

    def _fit_map(self, prob: FloatArray, target: FloatArray) -> dict[str, Any]:
        if self.method == "platt":
            platt = LogisticClassifier().fit(_logit(prob)[:, None], target)
            return {"kind": "platt", "intercept": float(platt.intercept_[0]), "slope": float(platt.coef_[0, 0])}
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(prob, target)
        return {"kind": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}

    @staticmethod
    def _apply(mapping: dict[str, Any], prob: FloatArray) -> FloatArray:
        if mapping["kind"] == "platt":
            eta = mapping["intercept"] + mapping["slope"] * _logit(prob)
            return np.asarray(1.0 / (1.0 + np.exp(-eta)))
        return np.asarray(np.interp(prob, mapping["x"], mapping["y"]))

    def predict_proba(self, X: npt.ArrayLike) -> FloatArray:
        """(n, K) calibrated probabilities, columns in `classes_` order."""
        check_is_fitted(self, "base_")
        x = checked_rows(self, X)
        raw = self.base_.predict_proba(x)
        if not self.maps_:
            return raw
        if self.classes_.size == 2:
            p1 = self._apply(self.maps_[0], raw[:, 1])
            return np.stack([1.0 - p1, p1], axis=1)
        cal = np.stack([self._apply(m, raw[:, k]) for k, m in enumerate(self.maps_)], axis=1)
        cal = np.clip(cal, _EPS, None)
        return np.asarray(cal / cal.sum(axis=1, keepdims=True))

    def predict(self, X: npt.ArrayLike) -> npt.NDArray[Any]:
        return np.asarray(self.classes_[np.argmax(self.predict_proba(X), axis=1)])

    def to_json(self) -> dict[str, Any]:
        check_is_fitted(self, "base_")
        return {
            "format": FORMAT,
            "method": self.method,
            "cv": self.cv,
            "random_state": self.random_state,
            "base": self.base_.to_json(),
            "maps": self.maps_,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CalibratedClassifier:
        try:
            if data.get("format") != FORMAT:
                raise ModelArtifactError(f"not a {FORMAT} model (format {data.get('format')!r})")
            base = LogisticClassifier.from_json(data["base"])
            model = cls(
                estimator=clone(base), method=data["method"], cv=int(data["cv"]), random_state=int(data["random_state"])
            )
            model.base_ = base
            model.classes_ = base.classes_
            model.n_features_in_ = base.n_features_in_
            model.maps_ = list(data["maps"])
            for mapping in model.maps_:
                if mapping.get("kind") not in ("platt", "isotonic"):
                    raise ValueError(f"unknown calibration map {mapping.get('kind')!r}")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelArtifactError(f"malformed calibrated classifier file: {exc}") from exc
        return model
