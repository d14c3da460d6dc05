"""A multimodal discrete-time competing-risks network (an alternative that must earn its place).

Follow-up is cut into J intervals (bins) of `bin_years` up to `max_time_years`. The network outputs, for
each patient, a probability mass over the 2J + 1 outcomes "cause k in bin j" and "no event by the last
bin" (softmax), and is trained by the DeepHit log-likelihood (Lee, Zame, Yoon & van der Schaar, AAAI 2018,
https://ojs.aaai.org/index.php/AAAI/article/view/11842):

    event of cause k in bin j:   log P(k, j | x)
    censored in bin j:           log (1 - sum_k sum_{i < j} P(k, i | x) - 0.5 sum_k P(k, j | x))

(half of the censoring bin counted as survived, the usual discrete-time correction), without DeepHit's
ranking term so that the probabilities stay calibrated. The cumulative incidence is
CIF_k(t | x) = sum of P(k, i | x) over the bins up to t, linear within a bin.

Architecture: a CT branch (the imaging inputs: L1-L4 attenuation, vBMD) and a clinical branch (everything
else), each a small ReLU layer on standardised inputs, concatenated into a shared ReLU layer and the
softmax head. Trained with torch (Adam, seeded, deterministic on CPU); the weights are stored as
safetensors and the forward pass at prediction time is plain numpy (no torch needed to score).

Intervals: `bootstrap` networks trained on multinomial resamples; logit-scale bootstrap standard error as
for the Cox model (`fusion.models.competing`).
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from fusion.errors import CohortError, ModelArtifactError
from fusion.models.competing import (
    FloatArray,
    ReplicateIntervals,
    bootstrap_weights,
    check_horizons,
    split_target,
)

FORMAT = "osteorisk.deephit_net/1"
_LAYERS = ("ct", "clinical", "shared", "head")


class DeepHitNet(ReplicateIntervals, BaseEstimator):  # type: ignore[misc]
    """Discrete-time competing-risks network with CT and clinical branches (see module docstring)."""

    def __init__(
        self,
        *,
        ct_columns: tuple[int, ...] = (),
        ct_units: int = 8,
        clinical_units: int = 32,
        shared_units: int = 32,
        bin_years: float = 0.5,
        max_time_years: float = 10.0,
        epochs: int = 20,
        batch_size: int = 512,
        learning_rate: float = 2e-3,
        weight_decay: float = 1e-4,
        bootstrap: int = 5,
        random_state: int = 0,
    ) -> None:
        self.ct_columns = ct_columns
        self.ct_units = ct_units
        self.clinical_units = clinical_units
        self.shared_units = shared_units
        self.bin_years = bin_years
        self.max_time_years = max_time_years
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.bootstrap = bootstrap
        self.random_state = random_state

    # ---- training (torch) ------------------------------------------------------------------------

    def _train_one(self, z: FloatArray, event: npt.NDArray[np.int8], bins: npt.NDArray[np.int64],
                   weights: FloatArray, seed: int) -> dict[str, FloatArray]:  # fmt: skip
        import torch
        from torch import nn

        torch.manual_seed(seed)
        ct = list(self._ct)
        clin = [j for j in range(z.shape[1]) if j not in self._ct]
        n_bins = self.n_bins_

        class _Net(nn.Module):
            def __init__(self, outer: DeepHitNet) -> None:
                super().__init__()
                self.ct = nn.Linear(max(len(ct), 1), outer.ct_units)
                self.clinical = nn.Linear(max(len(clin), 1), outer.clinical_units)
                self.shared = nn.Linear(outer.ct_units + outer.clinical_units, outer.shared_units)
                self.head = nn.Linear(outer.shared_units, 2 * n_bins + 1)

            def forward(self, x_ct: torch.Tensor, x_cl: torch.Tensor) -> torch.Tensor:
                h = torch.cat([torch.relu(self.ct(x_ct)), torch.relu(self.clinical(x_cl))], dim=1)
                return torch.log_softmax(self.head(torch.relu(self.shared(h))), dim=1)

        net = _Net(self).double()
        opt = torch.optim.Adam(net.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        x_ct = torch.from_numpy(z[:, ct] if ct else np.zeros((z.shape[0], 1)))
        x_cl = torch.from_numpy(z[:, clin] if clin else np.zeros((z.shape[0], 1)))
        ev = torch.from_numpy(event.astype(np.int64))
        jb = torch.from_numpy(bins)
        w = torch.from_numpy(weights)
        gen = torch.Generator().manual_seed(seed)
        n = z.shape[0]
        for _ in range(self.epochs):
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                logp = net(x_ct[idx], x_cl[idx])
                e, j, wb = ev[idx], jb[idx], w[idx]
                p = logp.exp()
                col = torch.where(e > 0, (e - 1) * n_bins + j, torch.zeros_like(j))
                ll_event = logp.gather(1, col[:, None])[:, 0]
                mass = p[:, : 2 * n_bins].reshape(-1, 2, n_bins).sum(dim=1)  # (b, J): either cause per bin
                before = torch.cumsum(mass, dim=1) - mass
                surv = 1 - before.gather(1, j[:, None])[:, 0] - 0.5 * mass.gather(1, j[:, None])[:, 0]
                ll_cens = torch.log(surv.clamp_min(1e-12))
                ll = torch.where(e > 0, ll_event, ll_cens)
                loss = -(wb * ll).sum() / wb.sum().clamp_min(1.0)
                opt.zero_grad()
                loss.backward()
                opt.step()
        return {f"{name}.{kind}": getattr(getattr(net, name), kind).detach().numpy().copy()
                for name in _LAYERS for kind in ("weight", "bias")}  # fmt: skip

    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike) -> Self:
        if self.epochs < 1 or self.batch_size < 1 or self.bin_years <= 0 or self.max_time_years <= 0:
            raise ValueError("epochs, batch_size, bin_years and max_time_years must be positive")
        if self.bootstrap < 0 or self.bootstrap == 1:
            raise ValueError(f"bootstrap must be 0 or >= 2, got {self.bootstrap!r}")
        x = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        event, time = split_target(y)
        if not ((event == 1).any() and (event == 2).any()):
            raise CohortError("the network needs events of both causes (1 and 2) in the training data")
        bad = [c for c in self.ct_columns if not 0 <= c < x.shape[1]]
        if bad:
            raise ValueError(f"ct_columns {bad} are not columns of X ({x.shape[1]})")
        self._ct = tuple(sorted(set(self.ct_columns)))
        self.n_bins_ = int(np.ceil(self.max_time_years / self.bin_years - 1e-9))
        self.mean_ = x.mean(axis=0)
        self.scale_ = np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
        z = (x - self.mean_) / self.scale_
        bins = np.minimum((time / self.bin_years).astype(np.int64), self.n_bins_ - 1)
        beyond = time >= self.n_bins_ * self.bin_years
        ev = np.where(beyond, 0, event).astype(np.int8)  # events after the last bin: survived it
        import torch

        weights = np.ones(x.shape[0])
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small layers: one thread is fastest, and deterministic
        try:
            replicas = [self._train_one(z, ev, bins, weights, self.random_state)]
            for b, w in enumerate(bootstrap_weights(x.shape[0], self.bootstrap, self.random_state)):
                replicas.append(self._train_one(z, ev, bins, w, self.random_state + 1 + b))
        finally:
            torch.set_num_threads(threads)
        self.weights_ = replicas
        return self

    # ---- prediction (numpy) ----------------------------------------------------------------------

    def _forward(self, z: FloatArray, params: dict[str, FloatArray]) -> FloatArray:
        ct = list(getattr(self, "_ct", ()))
        clin = [j for j in range(z.shape[1]) if j not in ct]
        x_ct = z[:, ct] if ct else np.zeros((z.shape[0], 1))
        x_cl = z[:, clin] if clin else np.zeros((z.shape[0], 1))

        def dense(name: str, v: FloatArray) -> FloatArray:
            return np.asarray(v @ params[f"{name}.weight"].T + params[f"{name}.bias"])

        h = np.concatenate([np.maximum(dense("ct", x_ct), 0), np.maximum(dense("clinical", x_cl), 0)], axis=1)
        logits = dense("head", np.maximum(dense("shared", h), 0))
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return np.asarray(p / p.sum(axis=1, keepdims=True))

    def _cif(self, X: npt.ArrayLike, horizons: npt.ArrayLike, replicates: int) -> FloatArray:
        check_is_fitted(self, "weights_")
        x = validate_data(self, X, dtype=np.float64, reset=False)
        h = check_horizons(horizons, max_years=self.n_bins_ * self.bin_years)
        z = (x - self.mean_) / self.scale_
        edges = np.asarray(np.arange(self.n_bins_ + 1) * self.bin_years, dtype=np.float64)
        out = np.empty((x.shape[0], replicates, h.size))
        for b in range(replicates):
            p = self._forward(z, self.weights_[b])
            cum = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(p[:, : self.n_bins_], axis=1)], axis=1)
            cum = np.asarray(cum, dtype=np.float64)
            for k, hz in enumerate(h):
                out[:, b, k] = _interp_rows(edges, cum, float(hz))
        return out

    # ---- artifact --------------------------------------------------------------------------------

    def to_artifact(self) -> tuple[dict[str, Any], dict[str, FloatArray]]:
        check_is_fitted(self, "weights_")
        params = self.get_params()
        params["ct_columns"] = list(self.ct_columns)
        meta = {
            "format": FORMAT,
            "params": params,
            "n_features": int(self.n_features_in_),
            "n_bins": self.n_bins_,
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
        }
        arrays = {f"r{b}.{k}": v for b, w in enumerate(self.weights_) for k, v in w.items()}
        return meta, arrays

    @classmethod
    def from_artifact(cls, meta: dict[str, Any], arrays: dict[str, FloatArray]) -> DeepHitNet:
        try:
            if meta.get("format") != FORMAT:
                raise ModelArtifactError(f"not a {FORMAT} model (format {meta.get('format')!r})")
            params = dict(meta["params"])
            params["ct_columns"] = tuple(params.get("ct_columns", ()))
            model = cls(**params)
            model.n_features_in_ = int(meta["n_features"])
            model.n_bins_ = int(meta["n_bins"])
            model.mean_ = np.asarray(meta["mean"], dtype=np.float64)
            model.scale_ = np.asarray(meta["scale"], dtype=np.float64)
            model._ct = tuple(sorted(set(model.ct_columns)))
            model.weights_ = [
                {
                    f"{name}.{kind}": np.asarray(arrays[f"r{b}.{name}.{kind}"], dtype=np.float64)
                    for name in _LAYERS
                    for kind in ("weight", "bias")
                }
                for b in range(model.bootstrap + 1)
            ]
            if model.weights_[0]["head.bias"].shape[0] != 2 * model.n_bins_ + 1:
                raise ValueError("head size does not match the number of bins")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelArtifactError(f"malformed network model: {exc}") from exc
        return model


def _interp_rows(edges: FloatArray, cum: FloatArray, t: float) -> FloatArray:
    """Row-wise linear interpolation of cumulative masses at one time t."""
    j = int(np.clip(np.searchsorted(edges, t, side="right") - 1, 0, edges.size - 2))
    w = (t - edges[j]) / (edges[j + 1] - edges[j])
    return np.asarray(cum[:, j] * (1 - w) + cum[:, j + 1] * w)
