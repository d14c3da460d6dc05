"""Per-patient explanations of a predicted risk.

- Cox models: the log-hazard contribution of each term, b_j (x_j - mean_j), for the outcome's
  cause-specific hazard (mean_j: the training mean). They add up to the patient's log relative hazard
  against the mean patient, so they are exact for the hazard (not for the cumulative incidence, which
  also depends on the competing death hazard).
- Other models (forest, network): occlusion against the training median/mode: the change in log-odds of
  the 10-year (or largest-horizon) cumulative incidence when input j is replaced by its imputation value
  (a single-reference "baseline Shapley"-style attribution; Sundararajan & Najmi 2020, arXiv:1908.08474).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fusion.artifacts import LoadedModel, PatientRisk
from fusion.models.competing import logit
from fusion.types import Explanation, Outcome

FloatArray = npt.NDArray[np.float64]


def _rounded(v: float) -> float:
    return float(f"{v:.6g}")


def explain_patient(model: LoadedModel, risk: PatientRisk, outcomes: tuple[Outcome, ...]) -> list[Explanation]:
    """Explanations for each requested outcome, largest magnitude first within an outcome."""
    out: list[Explanation] = []
    for outcome in outcomes:
        est = model.survival[outcome]
        contributions_fn = getattr(est, "contributions", None)
        if contributions_fn is not None:
            contrib = contributions_fn(risk.terms)[0]
            labels = model.design.labels
            values = risk.terms[0]
        else:
            contrib = _occlusion(model, outcome, risk)
            labels = model.plan.names
            values = risk.x
        order = np.argsort(-np.abs(contrib), kind="stable").tolist()
        value_list, contrib_list = values.tolist(), contrib.tolist()  # Python floats, converted once
        out.extend(
            Explanation(
                feature=labels[j],
                value=_rounded(value_list[j]),
                contribution=_rounded(contrib_list[j]),
                outcome=outcome,
            )
            for j in order
        )
    return out


def _occlusion(model: LoadedModel, outcome: Outcome, risk: PatientRisk) -> FloatArray:
    est = model.survival[outcome]
    horizon = float(min(10.0, model.card.max_horizon_years))
    p = risk.x.size
    batch = np.repeat(risk.x[None, :], p + 1, axis=0)
    idx = np.arange(p)
    batch[idx + 1, idx] = model.plan.impute
    cif = est.predict_cumulative_incidence(model.design.transform(batch), [horizon])[:, 0]
    scores = logit(cif)
    return np.asarray(scores[0] - scores[1:])
