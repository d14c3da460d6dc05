"""One contract over every estimator we ship (scikit-learn conventions): `__init__` stores hyperparameters
only, `fit` validates and returns self, learned state ends in `_`, predicting before fitting raises
NotFittedError, cloning and refitting with the same seed give the same predictions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import check_no_attributes_set_in_init, check_parameters_default_constructible

from fusion.models.calibration import CalibratedClassifier
from fusion.models.cox import CauseSpecificCox
from fusion.models.logistic import LogisticClassifier
from tests.fusion.model_helpers import exponential_competing


def _survival_data() -> tuple[np.ndarray, np.ndarray]:
    return exponential_competing(600, 5, np.array([0.4, -0.2, 0.1]), np.array([0.1, 0.3, 0.0]))


def _class_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 3))
    y = (rng.random(400) < 1 / (1 + np.exp(-(x @ [1.0, -0.5, 0.2])))).astype(int)
    return x, y


def _survival_predict(est: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(est.predict_interval(x, [1.0, 5.0]))


def _class_predict(est: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(est.predict_proba(x))


def _estimators() -> list[
    tuple[Any, Callable[[], tuple[np.ndarray, np.ndarray]], Callable[[Any, np.ndarray], np.ndarray]]
]:
    cases: list[Any] = [
        (CauseSpecificCox(bootstrap=4, random_state=1), _survival_data, _survival_predict),
        (LogisticClassifier(), _class_data, _class_predict),
        (CalibratedClassifier(method="isotonic", cv=3, random_state=1), _class_data, _class_predict),
    ]
    from fusion.models.forest import CauseSpecificForest, is_available

    if is_available():
        cases.append(
            (CauseSpecificForest(n_estimators=8, bootstrap=2, random_state=1), _survival_data, _survival_predict)
        )
    from fusion.models.net import DeepHitNet

    cases.append((DeepHitNet(epochs=3, bootstrap=2, random_state=1), _survival_data, _survival_predict))
    return cases


CASES = _estimators()


@pytest.mark.parametrize(("estimator", "data", "predict"), CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_estimator_contract(
    estimator: Any,
    data: Callable[[], tuple[np.ndarray, np.ndarray]],
    predict: Callable[[Any, np.ndarray], np.ndarray],
) -> None:
    name = type(estimator).__name__
    check_parameters_default_constructible(name, estimator)
    check_no_attributes_set_in_init(name, estimator)
    params = estimator.get_params()
    assert not [k for k in vars(estimator) if k.endswith("_")], "learned state set in __init__"
    x, y = data()
    with pytest.raises(NotFittedError):
        predict(estimator, x[:3])
    before = set(vars(estimator))
    assert estimator.fit(x, y) is estimator
    learned = set(vars(estimator)) - before
    assert learned and all(k.endswith("_") or k.startswith("_") for k in learned), learned
    assert estimator.get_params() == params  # fit does not touch hyperparameters
    twin = clone(estimator).fit(x, y)
    np.testing.assert_allclose(predict(twin, x[:20]), predict(estimator, x[:20]), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError):
        predict(estimator, x[:3, :2])  # wrong number of features
