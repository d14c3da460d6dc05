"""Parameters of the synthetic cohort generator, read from `fusion/data/synth_parameters.json`.

Every number lives in the data file next to its unit and its source (paper with DOI, survey, or
"assumption" with the argument for its size); this module only types them. Override single values
with `dataclasses.replace`, e.g. `replace(p, fracture=replace(p.fracture, frailty_sd=0.0))`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources
from typing import Any, TypeVar

from fusion.errors import FusionError

_T = TypeVar("_T")


@dataclass(frozen=True)
class Population:
    """The `population` section (units and sources: the data file)."""

    female_fraction: float
    age_mean: float
    age_sd: float
    age_min: float
    age_max: float
    index_year_first: int
    index_years_span: float
    study_end_years_after_first_index: float


@dataclass(frozen=True)
class Anthropometry:
    """The `anthropometry` section (units and sources: the data file)."""

    height_female_cm: float
    height_male_cm: float
    height_sd_cm: float
    height_loss_cm_per_year_after_50: float
    bmi_mean_female: float
    bmi_mean_male: float
    bmi_sd_female: float
    bmi_sd_male: float
    bmi_decline_per_year_after_70: float


@dataclass(frozen=True)
class RiskFactorPrevalence:
    """The `risk_factor_prevalence` section (units and sources: the data file)."""

    prior_fracture_at_65_female: float
    prior_fracture_odds_ratio_male: float
    prior_fracture_log_odds_per_year: float
    prior_fracture_log_odds_per_sd_bone: float
    prior_hip_given_prior_at_65: float
    prior_hip_given_prior_per_year: float
    prior_vertebral_given_prior: float
    prior_forearm_given_prior: float
    prior_humerus_given_prior: float
    prior_other_given_prior: float
    recent_given_prior: float
    falls_at_70: float
    falls_log_odds_per_year: float
    falls_odds_ratio_female: float
    parental_hip_fracture: float
    smoker_at_60: float
    smoker_log_odds_per_year: float
    smoker_odds_ratio_male: float
    glucocorticoids: float
    rheumatoid_arthritis_female: float
    rheumatoid_arthritis_male: float
    secondary_osteoporosis: float
    alcohol_female: float
    alcohol_male: float


@dataclass(frozen=True)
class Bone:
    """The `bone` section (units and sources: the data file)."""

    l1_hu_young_adult: float
    l1_hu_sd: float
    l1_hu_slope_female_before_50: float
    l1_hu_slope_female_after_50: float
    l1_hu_young_adult_male: float
    l1_hu_slope_male: float
    bone_sd_per_bmi_unit: float
    bone_sd_glucocorticoids: float
    bone_sd_secondary_osteoporosis: float
    bone_sd_rheumatoid_arthritis: float
    bone_sd_smoker: float
    bone_sd_alcohol: float
    ct_measurement_sd_hu: float
    level_offset_l2_hu: float
    level_offset_l3_hu: float
    level_offset_l4_hu: float
    level_deviation_sd_hu: float
    vbmd_per_hu: float
    vbmd_intercept_mg_cm3: float
    vbmd_slope_sd: float
    vbmd_noise_sd: float
    dxa_t_mean_female_50: float
    dxa_t_slope_female: float
    dxa_t_mean_male_50: float
    dxa_t_slope_male: float
    dxa_t_sd: float
    dxa_ct_correlation_within_age_sex: float


@dataclass(frozen=True)
class Fracture:
    """The `fracture` section (units and sources: the data file)."""

    nonhip_mof_hazard_ref: float
    hip_hazard_ref: float
    nonhip_mof_log_hazard_per_year: float
    hip_log_hazard_per_year: float
    nonhip_mof_hr_male: float
    hip_hr_male: float
    nonhip_mof_hr_per_sd_lower_hu: float
    hip_hr_per_sd_lower_hu: float
    hr_prior_fracture: float
    nonhip_mof_hr_prior_vertebral_extra: float
    hip_hr_prior_hip_extra: float
    hr_recent_fracture_first_2y: float
    recent_fracture_window_years: float
    nonhip_mof_hr_parental_hip: float
    hip_hr_parental_hip: float
    nonhip_mof_hr_glucocorticoids: float
    hip_hr_glucocorticoids: float
    nonhip_mof_hr_smoker: float
    hip_hr_smoker: float
    nonhip_mof_hr_alcohol: float
    hip_hr_alcohol: float
    nonhip_mof_hr_rheumatoid_arthritis: float
    hip_hr_rheumatoid_arthritis: float
    nonhip_mof_hr_per_bmi_unit: float
    hip_hr_per_bmi_unit: float
    nonhip_mof_hr_falls: float
    hip_hr_falls: float
    hr_osteoporosis_treatment: float
    frailty_sd: float


@dataclass(frozen=True)
class Mortality:
    """The `mortality` section (units and sources: the data file)."""

    hazard_female_65: float
    hazard_male_65: float
    gompertz_slope_per_year: float
    hr_per_sd_lower_hu: float
    hr_prior_fracture: float
    hr_smoker: float
    hr_glucocorticoids: float
    hr_rheumatoid_arthritis: float
    hr_secondary_osteoporosis: float
    hr_alcohol: float
    hr_falls: float


@dataclass(frozen=True)
class Censoring:
    """The `censoring` section (units and sources: the data file)."""

    loss_to_follow_up_per_year: float


@dataclass(frozen=True)
class Missingness:
    """The `missingness` section (units and sources: the data file)."""

    ct_missing: float
    l1_missing: float
    l3_l4_missing: float
    l4_missing: float
    weight_missing: float
    height_missing: float
    parental_hip_fracture_missing: float
    falls_missing: float
    smoker_missing: float
    alcohol_missing: float
    dxa_women_65_plus: float
    dxa_women_under_65: float
    dxa_men_65_plus: float
    dxa_men_under_65: float
    dxa_odds_ratio_prior_fracture: float
    dxa_odds_ratio_glucocorticoids: float


@dataclass(frozen=True)
class DiagnosisAndTreatment:
    """The `diagnosis_and_treatment` section (units and sources: the data file)."""

    diagnosis_given_dxa_osteoporosis: float
    diagnosis_given_dxa_osteopenia_and_fracture: float
    diagnosis_without_dxa_given_fracture: float
    diagnosis_background: float
    treatment_given_diagnosis: float
    treatment_given_fracture_without_diagnosis: float
    treatment_background: float


@dataclass(frozen=True)
class SynthParameters:
    """All generator parameters, one typed section per section of the data file."""

    population: Population
    anthropometry: Anthropometry
    risk_factor_prevalence: RiskFactorPrevalence
    bone: Bone
    fracture: Fracture
    mortality: Mortality
    censoring: Censoring
    missingness: Missingness
    diagnosis_and_treatment: DiagnosisAndTreatment

    def source(self, section: str, name: str) -> str:
        """The citation of one parameter, e.g. `source("fracture", "hip_hr_per_sd_lower_hu")`."""
        entry = _document().get(section, {}).get(name)
        if entry is None:
            raise KeyError(f"unknown synthetic-cohort parameter {section}.{name}")
        return str(entry["source"])


_SECTIONS: dict[str, type] = {
    "population": Population,
    "anthropometry": Anthropometry,
    "risk_factor_prevalence": RiskFactorPrevalence,
    "bone": Bone,
    "fracture": Fracture,
    "mortality": Mortality,
    "censoring": Censoring,
    "missingness": Missingness,
    "diagnosis_and_treatment": DiagnosisAndTreatment,
}


@cache
def _document() -> dict[str, Any]:
    text = resources.files("fusion").joinpath("data/synth_parameters.json").read_text()
    document: dict[str, Any] = json.loads(text)
    return document


def _section(name: str, cls: type[_T], entries: dict[str, Any]) -> _T:
    expected = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    given = set(entries)
    if expected != given:
        raise FusionError(
            f"synth_parameters.json section {name!r}: "
            f"missing {sorted(expected - given)}, unknown {sorted(given - expected)}"
        )
    values = {key: entry["value"] for key, entry in entries.items()}
    for key, entry in entries.items():
        if not str(entry.get("source", "")).strip():
            raise FusionError(f"synth_parameters.json: {name}.{key} has no source")
    return cls(**values)


@cache
def default_parameters() -> SynthParameters:
    """The published-figure parameters of the data file (validated)."""
    document = _document()
    sections: dict[str, Any] = {name: _section(name, cls, document[name]) for name, cls in _SECTIONS.items()}
    parameters = SynthParameters(**sections)
    validate_parameters(parameters)
    return parameters


def validate_parameters(parameters: SynthParameters) -> None:
    """Refuse impossible values: probabilities outside [0, 1], non-positive ratios, hazards or slopes."""
    problems: list[str] = []
    for section_name in _SECTIONS:
        section = getattr(parameters, section_name)
        for f in fields(section):
            value = getattr(section, f.name)
            label = f"{section_name}.{f.name}={value!r}"
            if not isinstance(value, int | float) or value != value:
                problems.append(f"{label} is not a number")
                continue
            probability = section_name in ("missingness", "diagnosis_and_treatment", "risk_factor_prevalence") and not (
                "odds" in f.name or "per_year" in f.name or "per_sd" in f.name
            )
            if section_name == "population" and f.name == "female_fraction":
                probability = True
            if probability and not 0.0 <= value <= 1.0:
                problems.append(f"{label} must be a probability in [0, 1]")
            positive = (
                ("hr_" in f.name and section_name in ("fracture", "mortality"))
                or "hazard_ref" in f.name
                or "odds_ratio" in f.name
                or f.name.startswith("hazard_")
                or f.name in ("gompertz_slope_per_year", "l1_hu_sd", "dxa_t_sd", "age_sd")
            )
            if positive and not value > 0:
                problems.append(f"{label} must be positive")
            if f.name.endswith(("_sd", "_sd_hu", "_sd_cm")) and value < 0:
                problems.append(f"{label} must not be negative")
    if not -1.0 < parameters.bone.dxa_ct_correlation_within_age_sex < 1.0:
        problems.append("bone.dxa_ct_correlation_within_age_sex must lie in (-1, 1)")
    if parameters.population.age_min >= parameters.population.age_max:
        problems.append("population.age_min must be below age_max")
    if problems:
        raise FusionError("invalid synthetic-cohort parameters: " + "; ".join(problems))
