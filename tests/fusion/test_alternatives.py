"""The alternatives to Cox (cause-specific forests, the multimodal network): trained through the same path,
saved in safe formats (safetensors, no pickle), reloaded to the same predictions, explained by occlusion."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from clinical.types import ClinicalRecord, ClinicalVariables, Variable
from fusion.artifacts import load_model
from fusion.assess import assess
from fusion.errors import FusionError
from fusion.models import forest
from fusion.training import TrainConfig, train_model
from tests.fusion.model_helpers import TEST_FEATURES, small_cohort

KINDS = ["net", pytest.param("forest", marks=pytest.mark.skipif(not forest.is_available(), reason="no sksurv"))]


@pytest.mark.parametrize("kind", KINDS)
def test_train_save_load_predict_explain(kind: str, tmp_path: Path) -> None:
    params = {"n_estimators": 10, "trees_per_replicate": 3} if kind == "forest" else {"epochs": 4}
    config = TrainConfig(kind=kind, features=TEST_FEATURES, bootstrap=2, diagnosis=False, estimator_params=params)  # type: ignore[arg-type]
    trained = train_model(small_cohort(2000), config)
    path = trained.save(tmp_path / kind)
    assert sorted(p.name for p in path.iterdir()) == [
        "hip.safetensors",
        "manifest.json",
        "model.json",
        "mof.safetensors",
    ]
    model = load_model(path)
    cohort = small_cohort(2000).head(50)
    out = model.predict_frame(cohort)
    risks = out[[c for c in out.columns if c.startswith("risk_")]].to_numpy()
    assert np.all((risks >= 0) & (risks <= 1))
    assert np.all(out["risk_mof_1y"] <= out["risk_mof_10y"] + 1e-12)
    assert np.all((out["risk_hip_5y_lo"] <= out["risk_hip_5y"]) & (out["risk_hip_5y"] <= out["risk_hip_5y_hi"]))
    again = load_model(trained.save(tmp_path / f"{kind}-again")).predict_frame(cohort)
    np.testing.assert_allclose(again["risk_mof_10y_hi"], out["risk_mof_10y_hi"], rtol=1e-12)
    variables = ClinicalVariables(
        age_years=Variable(value=70.0, status="observed"), sex=Variable(value="female", status="observed")
    )
    record = ClinicalRecord(patient_id="p", index_date=date(2024, 1, 1), variables=variables)
    report = assess(model, patient_id="p", index_date=date(2024, 1, 1), clinical=record, bone=None)
    explained = {e.feature for e in report.explanations if e.outcome == "hip_fracture"}
    assert explained == set(model.plan.names)
    reference = dict(zip(model.plan.names, model.plan.impute, strict=True))
    for e in report.explanations:  # occlusion: an input at its reference (median) value contributes nothing
        assert np.isfinite(e.contribution)
        if isinstance(e.value, float) and e.value == float(f"{reference[e.feature]:.6g}"):
            assert abs(e.contribution) < 1e-9, e


def test_forest_without_scikit_survival_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forest, "is_available", lambda: False)
    with pytest.raises(FusionError, match=r"osteorisk\[forest\]"):
        forest.CauseSpecificForest().fit(np.zeros((10, 2)), np.zeros(10))
