"""The synthetic cohort reproduces the published figures it is built from (moderate n, loose tolerances).

Seeds used here: 17 (complete-data cohort), 19 (cohort with missing values). Nobody evaluates on them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from fusion.metrics import aalen_johansen, sensitivity_specificity
from fusion.synth import synth_cohort


@pytest.fixture(scope="module")
def complete() -> pd.DataFrame:
    return synth_cohort(40_000, seed=17, missing_values=False).with_truth()


@pytest.fixture(scope="module")
def realistic() -> pd.DataFrame:
    return synth_cohort(40_000, seed=19).with_truth()


def _cause_specific_hr(df: pd.DataFrame, time: str, event: str) -> pd.Series:
    x = pd.DataFrame(
        {
            "age": df["age_years"],
            "male": (df["sex"] == "male").astype(float),
            "hu_sd_lower": -df["l1_hu"] / 44.0,
            "bmi": df["bmi_kg_m2"],
            **{c: df[c].astype(float) for c in (
                "prior_fragility_fracture", "parental_hip_fracture", "glucocorticoids", "current_smoker",
                "alcohol_3_or_more_units_day", "rheumatoid_arthritis", "falls_last_12m", "osteoporosis_treatment",
            )},
        }
    )  # fmt: skip
    x["T"] = df[time]
    x["E"] = (df[event] == 1).astype(int)
    fit = CoxPHFitter().fit(x, "T", "E")
    hr: pd.Series = np.exp(fit.params_)
    return hr


def test_gradient_of_risk_and_risk_factors_are_recovered(complete: pd.DataFrame) -> None:
    hip = _cause_specific_hr(complete, "hip_time_years", "hip_event")
    mof = _cause_specific_hr(complete, "time_years", "event")
    # Marshall 1996 / Johnell 2005: hip ~2.6 per SD (2.4 here), MOF 1.5-2.0
    assert 2.0 < hip["hu_sd_lower"] < 2.9
    assert 1.5 < mof["hu_sd_lower"] < 2.1
    # Kanis 2004: prior fracture 1.86; parental hip fracture 1.54 (MOF) / 2.27 (hip); glucocorticoids 1.66 / 2.25
    assert 1.5 < mof["prior_fragility_fracture"] < 2.3
    assert 1.6 < hip["parental_hip_fracture"] < 3.1 and 1.25 < mof["parental_hip_fracture"] < 1.85
    assert 1.25 < mof["glucocorticoids"] < 2.2
    assert 0.9 < mof["bmi"] < 1.02 and hip["bmi"] < 1.0


def test_incidence_and_truth_agree(realistic: pd.DataFrame) -> None:
    women65 = realistic[(realistic["sex"] == "female") & (realistic["age_years"] >= 65)]
    mof10 = float(aalen_johansen(women65["time_years"], women65["event"])(10.0))
    hip10 = float(aalen_johansen(women65["hip_time_years"], women65["hip_event"])(10.0))
    assert 0.10 < mof10 < 0.20 and 0.03 < hip10 < 0.08
    for prefix, time, event in (("mof", "time_years", "event"), ("hip", "hip_time_years", "hip_event")):
        cif = aalen_johansen(realistic[time], realistic[event])
        for h in (1, 2, 5, 10):
            se = np.sqrt(cif.variance(h))
            assert abs(float(cif(h)) - realistic[f"true_risk_{prefix}_{h}y"].mean()) < 3.5 * se, (prefix, h)


def test_bone_measurements_match_published_figures(complete: pd.DataFrame, realistic: pd.DataFrame) -> None:
    women = complete[complete["sex"] == "female"]
    # Jang 2019: 226 HU under 30, falling ~2.5 HU/year on average
    slope = np.polyfit(complete["age_years"], complete["true_l1_hu"], 1)[0]
    assert -3.0 < slope < -2.0
    assert 190 < women.loc[women["age_years"] < 45, "l1_hu"].mean() < 226
    # Wright 2014 (NHANES 2005-2010): osteoporosis 6.8% (women 50-59), 34.9% (women 80+), 4.3% (men 50+)
    prevalence = lambda d: float((d["dxa_t_score_min"] <= -2.5).mean())  # noqa: E731
    assert 0.03 < prevalence(women[women["age_years"].between(50, 60)]) < 0.11
    assert 0.27 < prevalence(women[women["age_years"] >= 80]) < 0.45
    men = complete[(complete["sex"] == "male") & (complete["age_years"] >= 50)]
    assert 0.03 < prevalence(men) < 0.10
    # DXA vs CT: r about 0.4-0.6 (Pickhardt 2013; Jang 2019)
    both = realistic.dropna(subset=["l1_hu", "dxa_t_score_min"])
    assert 0.4 < np.corrcoef(both["l1_hu"], both["dxa_t_score_min"])[0, 1] < 0.65
    # Pickhardt 2013 thresholds in a Pickhardt-like population (50-70): <= 160 HU ~90% sensitive, <= 110 ~90% specific
    middle = complete[complete["age_years"].between(50, 70)]
    specific, sensitive = sensitivity_specificity(
        middle["osteoporosis"], middle["l1_hu"], [110, 160], positive="at_or_below"
    )
    assert sensitive.sensitivity > 0.8 and specific.specificity > 0.8
