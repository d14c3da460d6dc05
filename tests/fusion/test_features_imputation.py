"""Feature rows and imputation: encodings, provenance, required inputs, plausible ranges (property-based)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clinical.types import ClinicalRecord, ClinicalVariables, Variable
from fusion.errors import ModelInputError
from fusion.features import encode_column, encode_value, feature_info, feature_row, parse_column_map
from fusion.imputation import InputPlan, build_specs
from imaging.types import BoneFeatures, FeatureSummary, ImageSource, SegmentationInfo, VertebraMeasurement


def test_encodings() -> None:
    assert encode_value("sex", "female") == 1.0 and encode_value("sex", "M") == 0.0
    assert encode_value("sex", "unknown") is None
    assert encode_value("current_smoker", True) == 1.0 and encode_value("current_smoker", "no") == 0.0
    assert encode_value("age_years", "71.5") == 71.5 and encode_value("age_years", float("nan")) is None
    for name, bad in (("sex", "x"), ("current_smoker", "maybe"), ("age_years", "old")):
        with pytest.raises(ModelInputError):
            encode_value(name, bad)
    column = pd.Series(pd.Categorical(["female", None, "male"], categories=["female", "male", "other", "unknown"]))
    np.testing.assert_array_equal(encode_column("sex", column), [1.0, np.nan, 0.0])
    assert feature_info("l1_hu") is not None and feature_info("l1_hu").unit == "[hnsf'U]"  # type: ignore[union-attr]
    assert feature_info("RATERISK") is None
    assert parse_column_map("A=a, B=b") == {"A": "a", "B": "b"}
    with pytest.raises(ModelInputError, match="OLD=NEW"):
        parse_column_map("A")


def test_feature_row_uses_non_excluded_levels_and_keeps_provenance() -> None:
    record = ClinicalRecord(
        patient_id="p",
        index_date=date(2024, 1, 1),
        variables=ClinicalVariables(
            age_years=Variable(value=70.0, status="derived", sources=["Patient/p"]),
            bmi_kg_m2=Variable(value=25.0, status="imputed"),
        ),
        warnings=["W_CLIN"],
    )
    bone = BoneFeatures(
        source=ImageSource(kind="nifti"),
        segmentation=SegmentationInfo(backend="labels"),
        levels=[
            VertebraMeasurement(level="L1", hu_median=120.0, hu_mean=125.0, confidence=0.9),
            VertebraMeasurement(level="L2", hu_mean=130.0, confidence=0.9),
            VertebraMeasurement(level="L3", hu_median=40.0, confidence=0.1, excluded=True),
        ],
        summary=FeatureSummary(l1_hu=120.0, mean_hu_l1_l4=125.0),
        warnings=["W_CT"],
    )
    row = feature_row(record, bone)
    assert row.values["hu_l1"] == 120.0 and row.values["hu_l2"] == 130.0
    assert row.values["hu_l3"] is None and row.values["hu_l4"] is None
    assert row.values["age_years"] == 70.0 and row.values["sex"] is None
    assert row.defaulted == ("bmi_kg_m2",) and row.clinical_sources == ("Patient/p",)
    assert row.warnings == ("W_CLIN", "W_CT")


def _plan() -> InputPlan:
    rng = np.random.default_rng(0)
    train = np.column_stack([rng.uniform(50, 90, 200), rng.integers(0, 2, 200), rng.normal(150, 40, 200)])
    train[::7, 2] = np.nan
    specs = build_specs(["age_years", "sex", "l1_hu"], train, required=["age_years"])
    assert specs[0].required and not specs[2].required
    assert specs[2].impute_value == pytest.approx(np.nanmedian(train[:, 2]), rel=1e-9)
    assert specs[1].impute_value in (0.0, 1.0)
    return InputPlan.from_specs(specs)


@settings(max_examples=200, deadline=None)
@given(
    age=st.one_of(st.none(), st.floats(-50, 200, allow_nan=False)),
    sex=st.one_of(st.none(), st.sampled_from([0.0, 1.0])),
    hu=st.one_of(st.none(), st.floats(-1000, 3000, allow_nan=False)),
)
def test_a_row_is_scored_only_when_complete_enough_and_plausible(
    age: float | None, sex: float | None, hu: float | None
) -> None:
    plan = _plan()
    values = {"age_years": age, "sex": sex, "l1_hu": hu}
    implausible = (age is not None and not 0 <= age <= 120) or (hu is not None and not -200 <= hu <= 700)
    if age is None or implausible:
        with pytest.raises(ModelInputError):
            plan.row(values)
        return
    x, imputed = plan.row(values)
    assert np.all(np.isfinite(x))
    assert {plan.names[j] for j in imputed} == {n for n, v in values.items() if v is None}
    for j in imputed:
        assert x[j] == plan.impute[j]


def test_matrix_refuses_rows_with_reasons() -> None:
    plan = _plan()
    raw = np.array([[70.0, 1.0, 100.0], [np.nan, 1.0, 100.0], [70.0, np.nan, 900.0], [70.0, 0.0, np.nan]])
    x, imputed, reasons = plan.matrix(raw)
    assert reasons[0] is None and reasons[3] is None
    assert reasons[1] == "age_years required but missing"
    assert reasons[2] is not None and "l1_hu = 900 outside [-200, 700]" in reasons[2]
    assert np.isnan(x[1]).all() and imputed[3].tolist() == [False, False, True]


def test_conditional_means_use_the_other_inputs_and_stay_in_range() -> None:
    from fusion.imputation import ConditionalMeans

    rng = np.random.default_rng(4)
    age = rng.uniform(50, 90, 3000)
    hu = 300 - 2.5 * age + rng.normal(0, 20, 3000)  # attenuation falls with age (Jang 2019)
    raw = np.column_stack([age, hu])
    raw[::5, 1] = np.nan
    specs = build_specs(["age_years", "l1_hu"], raw, required=["age_years"])
    plan = InputPlan.from_specs(specs, ConditionalMeans.fit(raw, InputPlan.from_specs(specs).impute))
    x_old, imputed = plan.row({"age_years": 88.0, "l1_hu": None})
    x_young, _ = plan.row({"age_years": 52.0, "l1_hu": None})
    assert imputed == [1]
    assert x_old[1] == pytest.approx(300 - 2.5 * 88, abs=5) and x_young[1] == pytest.approx(300 - 2.5 * 52, abs=5)
    assert "conditional mean" in plan.warning(1, float(x_old[1]))
    again = ConditionalMeans.from_json(plan.conditional.to_json(), 2)  # type: ignore[union-attr]
    np.testing.assert_allclose(again.coef, plan.conditional.coef, rtol=1e-10)  # type: ignore[union-attr]
    extreme = InputPlan.from_specs(specs, ConditionalMeans(intercept=np.array([0.0, 5000.0]), coef=np.zeros((2, 2))))
    assert extreme.row({"age_years": 70.0, "l1_hu": None})[0][1] == 700.0  # clipped to the plausible range
    filled, mask, _ = plan.matrix(np.array([[88.0, np.nan], [52.0, 100.0]]))
    assert filled[0, 1] == pytest.approx(x_old[1]) and filled[1, 1] == 100.0 and mask[0, 1] and not mask[1, 1]
