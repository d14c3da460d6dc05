"""Transparent rules: thresholds are data with sources; categories at the boundaries; every flag's reason
names the value, the threshold and the source; the diagnosis order."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from fusion.rules import acr_category, diagnose, dxa_category, l1_hu_category, screening_flags, thresholds


def test_thresholds_are_versioned_data_with_sources() -> None:
    raw = json.loads(resources.files("fusion").joinpath("data/thresholds.json").read_text())
    assert raw["version"]
    for section in ("dxa_t_score", "acr_vbmd_mg_cm3", "l1_hu", "vertebral_fracture", "imminent_risk", "treatment"):
        assert raw[section]["source"] in raw["sources"]
    for code, flag in raw["flags"].items():
        assert flag["source"] in raw["sources"], code
    assert "doi:10.7326/0003-4819-158-8-201304160-00003" in raw["sources"]["pickhardt2013"]["full"]
    assert "doi:10.1002/jbmr.5650080915" in raw["sources"]["genant1993"]["full"]
    assert "doi:10.1007/s00198-021-05900-y" in raw["sources"]["bhof2022"]["full"]
    th = thresholds()
    assert (th.hu_probable, th.hu_refer, th.mof_10y, th.hip_10y) == (110.0, 160.0, 0.20, 0.03)


@pytest.mark.parametrize(
    ("t", "category"),
    [(-2.5, "osteoporosis"), (-2.6, "osteoporosis"), (-2.4, "osteopenia"), (-1.0, "normal"), (0.5, "normal")],
)
def test_who_categories(t: float, category: str) -> None:
    assert dxa_category(t) == category


@pytest.mark.parametrize(
    ("vbmd", "category"), [(79.9, "osteoporosis"), (80.0, "osteopenia"), (120.0, "osteopenia"), (120.1, "normal")]
)
def test_acr_categories(vbmd: float, category: str) -> None:
    assert acr_category(vbmd) == category


@pytest.mark.parametrize(
    ("hu", "category"), [(110, "osteoporosis"), (111, "osteopenia"), (160, "osteopenia"), (161, "normal")]
)
def test_l1_hu_triage(hu: float, category: str) -> None:
    assert l1_hu_category(hu) == category


def test_diagnosis_order_dxa_then_vbmd_then_classifier_then_hu() -> None:
    probs = {"normal": 0.1, "osteopenia": 0.3, "osteoporosis": 0.6}
    d = diagnose(t_score=-1.5, vbmd_mg_cm3=70, l1_hu=90, probabilities=probs)
    assert (d.category, d.method) == ("osteopenia", "dxa_t_score_who") and "-1.5" in d.basis
    d = diagnose(t_score=None, vbmd_mg_cm3=70, l1_hu=200, probabilities=probs)
    assert (d.category, d.method) == ("osteoporosis", "qct_vbmd_acr") and "70 mg/cm3" in d.basis
    d = diagnose(t_score=None, vbmd_mg_cm3=None, l1_hu=200, probabilities=probs)
    assert (d.category, d.method) == ("osteoporosis", "classifier") and d.probabilities == probs
    d = diagnose(t_score=None, vbmd_mg_cm3=None, l1_hu=105, probabilities=None)
    assert (d.category, d.method) == ("osteoporosis", "ct_l1_hu_thresholds") and "105 HU" in d.basis
    d = diagnose(t_score=None, vbmd_mg_cm3=None, l1_hu=None)
    assert d.category == "undetermined" and "no DXA" in d.basis


def test_binary_classifier_below_half_does_not_claim_normal() -> None:
    d = diagnose(t_score=None, vbmd_mg_cm3=None, l1_hu=None, probabilities={"osteoporosis": 0.2, "other": 0.8})
    assert d.category == "undetermined"


def test_every_flag_names_value_threshold_and_source() -> None:
    flags = screening_flags(
        t_score=-2.7,
        vbmd_mg_cm3=75.0,
        l1_hu=100.0,
        genant_grades={"L1": 2, "L2": 1, "T12": 3},
        recent_fracture_2y=True,
        risk_mof_10y=0.25,
        risk_hip_10y=0.031,
    )
    by_code = {f.code: f for f in flags}
    assert set(by_code) == {
        "DXA_OSTEOPOROSIS",
        "ACR_VBMD_OSTEOPOROSIS",
        "PROBABLE_OSTEOPOROSIS",
        "REFER_DXA",
        "SUSPECTED_VERTEBRAL_FRACTURE",
        "IMMINENT_FRACTURE_RISK",
        "HIGH_10Y_MOF_RISK",
        "HIGH_10Y_HIP_RISK",
    }
    assert "-2.7" in by_code["DXA_OSTEOPOROSIS"].reason and "-2.5" in by_code["DXA_OSTEOPOROSIS"].reason
    assert "100 HU <= 110 HU" in by_code["PROBABLE_OSTEOPOROSIS"].reason
    assert "doi:10.7326/0003-4819-158-8-201304160-00003" in by_code["REFER_DXA"].reason
    assert "L1 grade 2" in by_code["SUSPECTED_VERTEBRAL_FRACTURE"].reason
    assert "T12 grade 3" in by_code["SUSPECTED_VERTEBRAL_FRACTURE"].reason
    assert "L2" not in by_code["SUSPECTED_VERTEBRAL_FRACTURE"].reason
    assert "25.0%" in by_code["HIGH_10Y_MOF_RISK"].reason and "20%" in by_code["HIGH_10Y_MOF_RISK"].reason
    assert "doi:10.1007/s00198-021-05900-y" in by_code["HIGH_10Y_HIP_RISK"].reason
    assert by_code["SUSPECTED_VERTEBRAL_FRACTURE"].severity == "critical"


def test_no_flags_below_the_thresholds() -> None:
    flags = screening_flags(
        t_score=-0.5, vbmd_mg_cm3=150, l1_hu=200, genant_grades={"L1": 1}, recent_fracture_2y=False,
        risk_mof_10y=0.199, risk_hip_10y=0.029,
    )  # fmt: skip
    assert flags == []
