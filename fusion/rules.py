"""Transparent rules: diagnostic categories and screening flags from published thresholds.

The thresholds are data (`fusion/data/thresholds.json`, versioned, each with its source); this module
reads them once and applies them. Every flag names the value, the threshold and the source in its reason.

- DXA T-score (WHO 1994): T <= -2.5 osteoporosis; -2.5 < T < -1.0 osteopenia; T >= -1.0 normal.
- QCT trabecular vBMD (ACR-SPR-SSR 2018): < 80 mg/cm3 osteoporosis; 80-120 low bone density; > 120 normal.
- L1 attenuation (Pickhardt et al. 2013, doi:10.7326/0003-4819-158-8-201304160-00003): <= 110 HU probable
  osteoporosis (> 90% specific); <= 160 HU refer for DXA (90% sensitive).
- Suspected vertebral fracture: Genant semiquantitative grade >= 2 at any level (Genant 1993,
  doi:10.1002/jbmr.5650080915).
- Imminent risk: a fragility fracture in the last 2 years (Kanis 2020 IOF/ESCEO, doi:10.1007/s00198-020-05625-8;
  Johansson 2017).
- Treatment thresholds: 10-year MOF >= 20% or hip >= 3% (BHOF clinician's guide, LeBoff et al. 2022,
  doi:10.1007/s00198-021-05900-y).

Diagnosis order: DXA T-score when present (WHO), else ACR vBMD, else a calibrated classifier's
probabilities, else L1 HU thresholds, else "undetermined" with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, cast

from fusion.types import Diagnosis, DiagnosisCategory, ScreeningFlag, Severity

DIAGNOSIS_CLASSES: tuple[str, ...] = ("normal", "osteopenia", "osteoporosis")


@dataclass(frozen=True)
class Thresholds:
    """The thresholds file, parsed (see the module docstring for the meaning of each value)."""

    version: str
    sources: dict[str, str]  # source key -> short citation
    t_osteoporosis: float
    t_normal: float
    vbmd_osteoporosis_below: float
    vbmd_normal_above: float
    hu_probable: float
    hu_refer: float
    genant_grade: int
    recent_fracture_years: float
    mof_10y: float
    hip_10y: float
    treatment_horizon_years: float
    flags: dict[str, tuple[Severity, str]]

    def cite(self, key: str) -> str:
        """Short citation of a source key (e.g. 'Pickhardt 2013, doi:...')."""
        return self.sources[key]


@cache
def thresholds() -> Thresholds:
    """The packaged thresholds (read once)."""
    raw: dict[str, Any] = json.loads(
        resources.files("fusion").joinpath("data/thresholds.json").read_text(encoding="utf-8")
    )
    flags = {code: (cast(Severity, v["severity"]), str(v["source"])) for code, v in raw["flags"].items()}
    return Thresholds(
        version=raw["version"],
        sources={k: str(v["short"]) for k, v in raw["sources"].items()},
        t_osteoporosis=float(raw["dxa_t_score"]["osteoporosis_at_or_below"]),
        t_normal=float(raw["dxa_t_score"]["normal_at_or_above"]),
        vbmd_osteoporosis_below=float(raw["acr_vbmd_mg_cm3"]["osteoporosis_below"]),
        vbmd_normal_above=float(raw["acr_vbmd_mg_cm3"]["normal_above"]),
        hu_probable=float(raw["l1_hu"]["probable_osteoporosis_at_or_below"]),
        hu_refer=float(raw["l1_hu"]["refer_dxa_at_or_below"]),
        genant_grade=int(raw["vertebral_fracture"]["genant_grade_at_or_above"]),
        recent_fracture_years=float(raw["imminent_risk"]["recent_fracture_years"]),
        mof_10y=float(raw["treatment"]["mof_10y_at_or_above"]),
        hip_10y=float(raw["treatment"]["hip_10y_at_or_above"]),
        treatment_horizon_years=float(raw["treatment"]["horizon_years"]),
        flags=flags,
    )


def dxa_category(t_score: float) -> DiagnosisCategory:
    """WHO 1994 category of a DXA T-score."""
    th = thresholds()
    if t_score <= th.t_osteoporosis:
        return "osteoporosis"
    if t_score < th.t_normal:
        return "osteopenia"
    return "normal"


def acr_category(vbmd_mg_cm3: float) -> DiagnosisCategory:
    """ACR QCT category of a trabecular vBMD (osteopenia = the ACR's 'low bone density')."""
    th = thresholds()
    if vbmd_mg_cm3 < th.vbmd_osteoporosis_below:
        return "osteoporosis"
    if vbmd_mg_cm3 <= th.vbmd_normal_above:
        return "osteopenia"
    return "normal"


def l1_hu_category(l1_hu: float) -> DiagnosisCategory:
    """Screening triage by L1 attenuation: <= 110 probable osteoporosis, <= 160 low, above normal."""
    th = thresholds()
    if l1_hu <= th.hu_probable:
        return "osteoporosis"
    if l1_hu <= th.hu_refer:
        return "osteopenia"
    return "normal"


def diagnose(
    *,
    t_score: float | None,
    vbmd_mg_cm3: float | None,
    l1_hu: float | None,
    probabilities: Mapping[str, float] | None = None,
    classifier_name: str = "calibrated classifier",
) -> Diagnosis:
    """The diagnosis with its method and basis, by the first available source in the documented order."""
    th = thresholds()
    if t_score is not None:
        cat = dxa_category(t_score)
        return Diagnosis(
            category=cat,
            method="dxa_t_score_who",
            basis=f"lowest DXA T-score {t_score:.1f}: {cat} by WHO criteria (T <= {th.t_osteoporosis:g} "
            f"osteoporosis, {th.t_osteoporosis:g} < T < {th.t_normal:g} osteopenia; {th.cite('who1994')})",
        )
    if vbmd_mg_cm3 is not None:
        cat = acr_category(vbmd_mg_cm3)
        label = "low bone density" if cat == "osteopenia" else cat
        return Diagnosis(
            category=cat,
            method="qct_vbmd_acr",
            basis=f"L1-L2 trabecular vBMD {vbmd_mg_cm3:.0f} mg/cm3: {label} by ACR QCT criteria "
            f"(< {th.vbmd_osteoporosis_below:g} osteoporosis, {th.vbmd_osteoporosis_below:g}-"
            f"{th.vbmd_normal_above:g} low bone density; ACR-SPR-SSR QCT practice parameter 2018)",
        )
    if probabilities:
        return _classifier_diagnosis(probabilities, classifier_name)
    if l1_hu is not None:
        cat = l1_hu_category(l1_hu)
        return Diagnosis(
            category=cat,
            method="ct_l1_hu_thresholds",
            basis=f"L1 attenuation {l1_hu:.0f} HU: <= {th.hu_probable:g} HU probable osteoporosis, <= "
            f"{th.hu_refer:g} HU low (refer for DXA), above normal ({th.cite('pickhardt2013')}); "
            "screening thresholds, not a densitometric diagnosis",
        )
    return Diagnosis(
        category="undetermined",
        method="none",
        basis="no DXA T-score, no calibrated vBMD, no classifier inputs and no L1 attenuation were available",
    )


def _classifier_diagnosis(probabilities: Mapping[str, float], classifier_name: str) -> Diagnosis:
    probs = {k: float(v) for k, v in probabilities.items()}
    listing = ", ".join(f"P({k})={v:.2f}" for k, v in probs.items())
    if set(probs) >= set(DIAGNOSIS_CLASSES):
        cat = cast(DiagnosisCategory, max(DIAGNOSIS_CLASSES, key=lambda k: probs[k]))
        return Diagnosis(
            category=cat,
            probabilities=probs,
            method="classifier",
            basis=f"{classifier_name} (DXA-defined classes, WHO): {listing}; most probable class",
        )
    p = probs.get("osteoporosis")
    if p is None:
        return Diagnosis(category="undetermined", probabilities=probs, method="classifier", basis=listing)
    if p >= 0.5:
        return Diagnosis(
            category="osteoporosis", probabilities=probs, method="classifier", basis=f"{classifier_name}: {listing}"
        )
    return Diagnosis(
        category="undetermined",
        probabilities=probs,
        method="classifier",
        basis=f"{classifier_name}: {listing} < 0.5; a binary classifier cannot tell normal from osteopenia",
    )


def _flag(code: str, reason: str) -> ScreeningFlag:
    th = thresholds()
    severity, source = th.flags[code]
    return ScreeningFlag(code=code, severity=severity, reason=f"{reason} ({th.cite(source)})")


def screening_flags(
    *,
    t_score: float | None = None,
    vbmd_mg_cm3: float | None = None,
    l1_hu: float | None = None,
    genant_grades: Mapping[str, int] | None = None,
    recent_fracture_2y: bool | None = None,
    risk_mof_10y: float | None = None,
    risk_hip_10y: float | None = None,
) -> list[ScreeningFlag]:
    """Every flag whose rule fires, each with a reason naming value, threshold and source."""
    th = thresholds()
    flags: list[ScreeningFlag] = []
    if t_score is not None:
        if t_score <= th.t_osteoporosis:
            flags.append(_flag("DXA_OSTEOPOROSIS", f"lowest DXA T-score {t_score:.1f} <= {th.t_osteoporosis:g}"))
        elif t_score < th.t_normal:
            flags.append(
                _flag(
                    "DXA_OSTEOPENIA",
                    f"lowest DXA T-score {t_score:.1f} between {th.t_osteoporosis:g} and {th.t_normal:g}",
                )
            )
    if vbmd_mg_cm3 is not None:
        if vbmd_mg_cm3 < th.vbmd_osteoporosis_below:
            flags.append(
                _flag("ACR_VBMD_OSTEOPOROSIS", f"L1-L2 vBMD {vbmd_mg_cm3:.0f} mg/cm3 < {th.vbmd_osteoporosis_below:g}")
            )
        elif vbmd_mg_cm3 <= th.vbmd_normal_above:
            flags.append(
                _flag(
                    "ACR_VBMD_LOW_BONE_DENSITY",
                    f"L1-L2 vBMD {vbmd_mg_cm3:.0f} mg/cm3 in {th.vbmd_osteoporosis_below:g}-{th.vbmd_normal_above:g}",
                )
            )
    if l1_hu is not None:
        if l1_hu <= th.hu_probable:
            flags.append(
                _flag(
                    "PROBABLE_OSTEOPOROSIS",
                    f"L1 attenuation {l1_hu:.0f} HU <= {th.hu_probable:g} HU (> 90% specific for osteoporosis)",
                )
            )
        if l1_hu <= th.hu_refer:
            flags.append(
                _flag(
                    "REFER_DXA",
                    f"L1 attenuation {l1_hu:.0f} HU <= {th.hu_refer:g} HU (90% sensitive for "
                    "osteoporosis): confirm with DXA",
                )
            )
    if genant_grades:
        fractured = {lvl: g for lvl, g in genant_grades.items() if g >= th.genant_grade}
        if fractured:
            listing = ", ".join(f"{lvl} grade {g}" for lvl, g in sorted(fractured.items()))
            flags.append(
                _flag("SUSPECTED_VERTEBRAL_FRACTURE", f"Genant semiquantitative {listing} (>= {th.genant_grade})")
            )
    if recent_fracture_2y:
        flags.append(
            _flag(
                "IMMINENT_FRACTURE_RISK",
                f"fragility fracture in the last {th.recent_fracture_years:g} years: imminent (very high) risk",
            )
        )
    if risk_mof_10y is not None and risk_mof_10y >= th.mof_10y:
        flags.append(
            _flag(
                "HIGH_10Y_MOF_RISK",
                f"predicted 10-year major osteoporotic fracture risk {risk_mof_10y:.1%} "
                f">= {th.mof_10y:.0%} treatment threshold",
            )
        )
    if risk_hip_10y is not None and risk_hip_10y >= th.hip_10y:
        flags.append(
            _flag(
                "HIGH_10Y_HIP_RISK",
                f"predicted 10-year hip fracture risk {risk_hip_10y:.1%} >= {th.hip_10y:.0%} treatment threshold",
            )
        )
    return flags
