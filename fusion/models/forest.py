"""Cause-specific random survival forests (an alternative to the Cox model that must earn its place).

For each cause k (1 = the fracture, 2 = death without it) a random survival forest (Ishwaran et al. 2008,
doi:10.1214/08-AOAS169; scikit-survival's `RandomSurvivalForest`) is grown with the other cause as
censoring; its ensemble Nelson-Aalen estimate is the cause-specific cumulative hazard Lambda_k(t | x),
and the two are combined into cumulative incidence exactly as for the Cox model
(`fusion.models.competing`; Putter, Fiocco & Geskus 2007).

scikit-survival is GPL-3.0-or-later and an optional extra (`pip install 'osteorisk[forest]'`): it is
imported only to fit, with a clear error when absent. A fitted forest is exported to plain arrays (tree
structure and leaf cumulative hazards on a fixed time grid, float32) stored as safetensors, and predicted
here in numpy, so scoring needs neither scikit-survival nor pickle.

Intervals: `bootstrap` small forests (`trees_per_replicate` trees each) fitted on multinomial resamples;
the logit-scale bootstrap standard error as for Cox. This includes the Monte Carlo variance of small
forests and so errs on the wide side.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Self

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from fusion.errors import CohortError, FusionError, ModelArtifactError
from fusion.models.competing import (
    FloatArray,
    ReplicateIntervals,
    bootstrap_weights,
    check_horizons,
    cif_from_increments,
    grid_for_horizons,
    split_target,
)

FORMAT = "osteorisk.forest_cause_specific/1"
_CAUSES = (1, 2)


def is_available() -> bool:
    """True when scikit-survival (the optional `forest` extra) is installed."""
    return importlib.util.find_spec("sksurv") is not None


def _require_sksurv() -> Any:
    if not is_available():
        raise FusionError(
            "the forest model needs scikit-survival (GPL-3.0-or-later, an optional extra): "
            "pip install 'osteorisk[forest]'",
            reason="BACKEND_UNAVAILABLE",
        )
    from sksurv.ensemble import RandomSurvivalForest

    return RandomSurvivalForest


class _Trees:
    """Trees packed into flat arrays (node ids global over the forest) with leaf cumulative hazards."""

    def __init__(self, arrays: dict[str, npt.NDArray[Any]], prefix: str) -> None:
        self.left = arrays[f"{prefix}.left"].astype(np.int64)
        self.right = arrays[f"{prefix}.right"].astype(np.int64)
        self.feature = arrays[f"{prefix}.feature"].astype(np.int64)
        self.threshold = arrays[f"{prefix}.threshold"].astype(np.float64)
        self.roots = arrays[f"{prefix}.roots"].astype(np.int64)
        self.leaf = arrays[f"{prefix}.leaf"].astype(np.int64)  # node -> row of `chf` (-1: inner node)
        self.chf = arrays[f"{prefix}.chf"].astype(np.float64)  # (leaves, T)

    def cumhaz(self, x: FloatArray) -> FloatArray:
        """(n, T) mean over trees of the leaf cumulative hazard."""
        total = np.zeros((x.shape[0], self.chf.shape[1]))
        rows = np.arange(x.shape[0])
        for root in self.roots:
            node = np.full(x.shape[0], root)
            while True:
                inner = self.left[node] >= 0
                if not inner.any():
                    break
                feat = self.feature[node]
                go_left = x[rows, np.maximum(feat, 0)] <= self.threshold[node]
                node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
            total += self.chf[self.leaf[node]]
        return total / self.roots.size


def _interp_columns(times: FloatArray, values: FloatArray, points: FloatArray) -> FloatArray:
    """Linear interpolation of each row of `values` (n, T), sampled at `times`, at `points` -> (n, P)."""
    hi = np.clip(np.searchsorted(times, points, side="left"), 1, times.size - 1)
    lo = hi - 1
    w = np.clip((points - times[lo]) / (times[hi] - times[lo]), 0.0, 1.0)
    return np.asarray(values[:, lo] * (1 - w) + values[:, hi] * w)


def _pack(forest: Any, grid: FloatArray, prefix: str) -> dict[str, npt.NDArray[Any]]:
    lefts, rights, feats, thresholds, chfs, roots, leaves = [], [], [], [], [], [], []
    offset = 0
    leaf_offset = 0
    times = np.asarray(forest.unique_times_, dtype=np.float64)
    pos = np.searchsorted(times, grid, side="right") - 1
    for est in forest.estimators_:
        tree = est.tree_
        left = tree.children_left.astype(np.int64)
        right = tree.children_right.astype(np.int64)
        leaf = left < 0
        chf = tree.value[:, :, 0]
        sampled = np.where(pos[None, :] >= 0, chf[:, np.maximum(pos, 0)], 0.0)
        lefts.append(np.where(leaf, -1, left + offset))
        rights.append(np.where(leaf, -1, right + offset))
        feats.append(np.where(leaf, -1, tree.feature).astype(np.int64))
        thresholds.append(tree.threshold.astype(np.float64))
        chfs.append(sampled[leaf].astype(np.float32))
        leaves.append(np.where(leaf, np.cumsum(leaf) - 1 + leaf_offset, -1))
        roots.append(offset)
        offset += tree.node_count
        leaf_offset += int(leaf.sum())
    return {
        f"{prefix}.left": np.concatenate(lefts).astype(np.int32),
        f"{prefix}.right": np.concatenate(rights).astype(np.int32),
        f"{prefix}.feature": np.concatenate(feats).astype(np.int32),
        f"{prefix}.threshold": np.concatenate(thresholds),
        f"{prefix}.chf": np.concatenate(chfs),
        f"{prefix}.leaf": np.concatenate(leaves).astype(np.int32),
        f"{prefix}.roots": np.asarray(roots, dtype=np.int64),
    }


class CauseSpecificForest(ReplicateIntervals, BaseEstimator):  # type: ignore[misc]
    """Cause-specific random survival forests combined into cumulative incidence (see module docstring)."""

    def __init__(
        self,
        *,
        n_estimators: int = 50,
        min_samples_leaf: int = 30,
        max_features: str | float = "sqrt",
        max_train_rows: int = 20_000,
        bootstrap: int = 10,
        trees_per_replicate: int = 10,
        random_state: int = 0,
        time_step_years: float = 0.25,
        max_time_years: float = 10.0,
        compute_step_years: float = 0.5,
    ) -> None:
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.max_train_rows = max_train_rows
        self.bootstrap = bootstrap
        self.trees_per_replicate = trees_per_replicate
        self.random_state = random_state
        self.time_step_years = time_step_years
        self.max_time_years = max_time_years
        self.compute_step_years = compute_step_years

    def _grow(self, x: FloatArray, event: npt.NDArray[np.int8], time: FloatArray, cause: int, n: int, seed: int,
              weights: FloatArray | None) -> Any:  # fmt: skip
        from sksurv.util import Surv

        forest_cls = _require_sksurv()
        forest = forest_cls(
            n_estimators=n,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            random_state=seed,
            n_jobs=1,
            low_memory=False,
        )
        return forest.fit(x, Surv.from_arrays(event == cause, time), sample_weight=weights)

    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> Self:
        if self.n_estimators < 1 or self.min_samples_leaf < 1 or self.max_train_rows < 100:
            raise ValueError("n_estimators and min_samples_leaf must be >= 1, max_train_rows >= 100")
        if self.bootstrap < 0 or self.bootstrap == 1:
            raise ValueError(f"bootstrap must be 0 or >= 2, got {self.bootstrap!r}")
        _require_sksurv()
        x = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        event, time = split_target(y)
        for cause in _CAUSES:
            if not (event == cause).any():
                raise CohortError(f"no events of cause {cause} in the training data: the model cannot be fitted")
        rng = np.random.default_rng(np.random.SeedSequence([self.random_state, 0xF0E]))
        if x.shape[0] > self.max_train_rows:
            keep = np.sort(rng.choice(x.shape[0], self.max_train_rows, replace=False))
            x, event, time = x[keep], event[keep], time[keep]
        step = self.time_step_years
        time = np.maximum(np.ceil(time / step - 1e-9) * step, step)  # coarsen: fewer unique times
        self.times_ = np.round(np.arange(0.0, self.max_time_years + 1e-9, step), 9)
        arrays: dict[str, npt.NDArray[Any]] = {}
        for k, cause in enumerate(_CAUSES):
            forest = self._grow(x, event, time, cause, self.n_estimators, self.random_state + k, None)
            arrays.update(_pack(forest, self.times_, f"r0.c{cause}"))
        weights = bootstrap_weights(x.shape[0], self.bootstrap, self.random_state)
        for b in range(self.bootstrap):
            for k, cause in enumerate(_CAUSES):
                forest = self._grow(x, event, time, cause, self.trees_per_replicate, 1000 + 7 * b + k, weights[b])
                arrays.update(_pack(forest, self.times_, f"r{b + 1}.c{cause}"))
        self.arrays_ = arrays
        self._prepare()
        return self

    def _prepare(self) -> None:
        self._trees = [[_Trees(self.arrays_, f"r{b}.c{cause}") for cause in _CAUSES] for b in range(self.bootstrap + 1)]

    def _cif(self, X: npt.ArrayLike, horizons: npt.ArrayLike, replicates: int) -> FloatArray:
        check_is_fitted(self, "arrays_")
        x = validate_data(self, X, dtype=np.float64, reset=False)
        h = check_horizons(horizons, max_years=float(self.times_[-1]))
        grid = grid_for_horizons(h, self.compute_step_years)
        out = np.empty((x.shape[0], replicates, h.size))
        for b in range(replicates):
            haz = [_interp_columns(self.times_, t.cumhaz(x), grid.points) for t in self._trees[b]]
            d1 = np.diff(np.concatenate([np.zeros((x.shape[0], 1)), haz[0]], axis=1), axis=1).clip(min=0)
            d2 = np.diff(np.concatenate([np.zeros((x.shape[0], 1)), haz[1]], axis=1), axis=1).clip(min=0)
            out[:, b, :] = cif_from_increments(d1, d2, grid.horizon_index)
        return out

    def to_artifact(self) -> tuple[dict[str, Any], dict[str, FloatArray]]:
        check_is_fitted(self, "arrays_")
        meta = {
            "format": FORMAT,
            "params": self.get_params(),
            "n_features": int(self.n_features_in_),
            "times": self.times_.tolist(),
        }
        return meta, dict(self.arrays_)

    @classmethod
    def from_artifact(cls, meta: dict[str, Any], arrays: dict[str, FloatArray]) -> CauseSpecificForest:
        try:
            if meta.get("format") != FORMAT:
                raise ModelArtifactError(f"not a {FORMAT} model (format {meta.get('format')!r})")
            model = cls(**meta["params"])
            model.n_features_in_ = int(meta["n_features"])
            model.times_ = np.asarray(meta["times"], dtype=np.float64)
            model.arrays_ = dict(arrays)
            model._prepare()
            for reps in model._trees:
                for trees in reps:
                    nodes = trees.left.size
                    if (
                        trees.chf.shape[1] != model.times_.size
                        or int(trees.feature.max()) >= model.n_features_in_
                        or int(trees.leaf.max()) >= trees.chf.shape[0]
                        or int(max(trees.left.max(), trees.right.max(), trees.roots.max())) >= nodes
                        or not (
                            trees.right.size == trees.feature.size == trees.threshold.size == trees.leaf.size == nodes
                        )
                    ):
                        raise ValueError("tree arrays do not fit together (times, features, nodes or leaves)")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelArtifactError(f"malformed forest model: {exc}") from exc
        return model
