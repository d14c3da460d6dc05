"""The synthetic CT cohort: patients, their CT and DXA measurements, follow-up, and their true risks.

Every number comes from `fusion/data/synth_parameters.json` (with its source); this module is the
generating model. One row per patient, in the canonical cohort-table columns (fusion.cohort_table).

Generating model, in order (all vectorised, one `numpy.random.Generator` seeded by `seed`):

1. **Population.** Sex (55% women); age from a normal distribution truncated to 40-90; index date
   uniform over two years, so that the study end gives 10-12 years of administrative follow-up.
2. **Anthropometry.** Height normal by sex (minus a small loss after 50); BMI log-normal by sex
   (NHANES 2015-2018 means), falling after 70; weight = BMI x height^2.
3. **Clinical risk factors.** Smoking, alcohol, glucocorticoids, rheumatoid arthritis, secondary
   osteoporosis, falls and parental hip fracture: independent Bernoulli draws with age/sex-dependent
   logits.
4. **Bone.** A latent age- and sex-adjusted bone density z-score `true_bone_z`: higher with BMI,
   lower with glucocorticoids, secondary osteoporosis, RA, smoking and alcohol, plus a normal residual
   (total variance about 1). True L1 attenuation `true_l1_hu = mu(age, sex) + 44 * z` with mu from
   Jang 2019 (226 HU under 30, falling about 2-3 HU a year). Measured levels L1-L4 add level offsets,
   level-to-level heterogeneity and measurement error; vBMD follows from HU through a linear
   calibration (slope 0.8 mg/cm3 per HU, matching Pickhardt's HU cut points to ACR's vBMD ones) with
   per-scan slope variation. The lowest DXA T-score has NHANES-matched means by age and sex and
   correlates with the latent z (r = 0.5 within age and sex).
5. **Prior fractures** depend on age, sex and the latent z (logistic); prior hip / vertebral /
   forearm / humerus / other and recent (last 2 years) fractures are subsets (sites drawn
   independently; only hip and vertebral sites carry extra hazard). Coded osteoporosis diagnosis and treatment follow
   from DXA results and fractures.
6. **Follow-up.** Three independent latent processes given the covariates: hip fracture, non-hip
   major osteoporotic fracture, death (fusion.synth.hazards: Gompertz in attained age, with
   proportional effects). Fracture log-hazards are linear in the TRUE L1 HU (per SD of 44 HU), the
   clinical risk factors, BMI and treatment, plus a log-normal frailty shared by hip and non-hip
   fracture (the deliberate, modest unmeasured risk); a recent fracture multiplies fracture hazards
   during the first 2 years (imminent risk). Death depends on age, sex, HU and comorbidity.
   MOF time = the first of hip and non-hip fracture; hip time = the first hip fracture. Censoring:
   administrative at the study end (10-12 years) and random loss to follow-up (exponential).
   `event`: 1 MOF first, 2 death before any MOF, 0 censored; `hip_event`: 1 hip fracture first,
   2 death before any hip fracture, 0 censored (a non-hip MOF does not stop hip follow-up).
7. **Missing values** (the mechanism): CT features missing completely at random (whole CT 5%, L1 3%,
   L3-L4 15% for chest CTs, L4 5% more); weight/height/smoking/alcohol/falls/parental history missing
   completely at random; DXA measured for a minority, at random given age, sex, prior fracture and
   glucocorticoids (missing at random). Hazards always use the true (complete) values.
8. **Truth.** Each patient's true cumulative incidence of MOF and hip fracture at each horizon with
   death competing (and, for MOF, hip and non-hip fracture as one cause), from the generating
   hazards by quadrature (exact to ~1e-12), in `true_risk_{mof|hip}_{h}y`.

Reference values of the hazards (definitions, not data): age 65, L1 150 HU, BMI 27 kg/m2, woman.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import special

from fusion.cohort_table import OSTEOPOROSIS_T_SCORE, true_risk_column, validate_cohort
from fusion.errors import FusionError
from fusion.synth.hazards import GompertzProcess, cumulative_incidence
from fusion.synth.parameters import SynthParameters, default_parameters, validate_parameters

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

REFERENCE_AGE = 65.0
REFERENCE_L1_HU = 150.0
REFERENCE_BMI = 27.0
DEFAULT_TRUTH_HORIZONS: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0)
MAX_ROWS = 50_000_000
SEX_CATEGORIES = ("female", "male", "other", "unknown")
TRUE_L1_HU_RANGE = (-40.0, 420.0)
"""Bounds on the latent L1 attenuation (HU): fatty osteoporotic marrow rarely falls below about -40 HU."""


@dataclass(frozen=True)
class SynthCohort:
    """A synthetic cohort: the observable table and, row for row, the truth behind it."""

    table: pd.DataFrame
    """Canonical cohort columns (ids, features with missing values, outcomes, `osteoporosis` label)."""
    truth: pd.DataFrame
    """`patient_id`, latent `true_bone_z`, `true_l1_hu`, `true_frailty` and `true_risk_*` columns."""
    seed: int
    parameters: SynthParameters = field(repr=False)
    horizons: tuple[float, ...] = DEFAULT_TRUTH_HORIZONS

    def with_truth(self) -> pd.DataFrame:
        """The table with the truth columns appended (same rows, same order)."""
        return pd.concat([self.table, self.truth.drop(columns="patient_id")], axis=1)


@dataclass(frozen=True)
class _Streams:
    """One independent random stream per block of the model (SeedSequence.spawn), so that a block can gain
    a variable without changing any other block's draws; e.g. complete and incomplete cohorts of one
    seed hold the same patients and outcomes. New blocks go at the END of `_STREAM_NAMES`."""

    population: np.random.Generator
    anthropometry: np.random.Generator
    risk_factors: np.random.Generator
    bone: np.random.Generator
    prior_fractures: np.random.Generator
    dxa: np.random.Generator
    dxa_missing: np.random.Generator
    care: np.random.Generator
    ct: np.random.Generator
    follow_up: np.random.Generator
    missingness: np.random.Generator

    @classmethod
    def from_seed(cls, seed: int) -> _Streams:
        children = np.random.SeedSequence(seed).spawn(len(_STREAM_NAMES))
        return cls(**{name: np.random.default_rng(child) for name, child in zip(_STREAM_NAMES, children, strict=True)})


_STREAM_NAMES = (
    "population", "anthropometry", "risk_factors", "bone", "prior_fractures", "dxa", "dxa_missing", "care", "ct",
    "follow_up", "missingness",
)  # fmt: skip


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def _bernoulli(rng: np.random.Generator, p: FloatArray | float, n: int) -> BoolArray:
    draws: BoolArray = rng.random(n) < p
    return draws


def _nullable(values: BoolArray, missing: BoolArray | None = None) -> pd.arrays.IntegerArray:
    mask = np.zeros(values.shape, dtype=bool) if missing is None else missing
    return pd.arrays.IntegerArray(values.astype(np.int8), mask)


def _patient_ids(seed: int, n: int) -> npt.NDArray[np.object_]:
    """`S{seed}-0000000`, `S{seed}-0000001`, ... built as bytes (fast for millions of rows)."""
    width = max(7, len(str(max(n - 1, 0))))
    prefix = np.frombuffer(f"S{seed}-".encode(), dtype=np.uint8)
    digits = (np.arange(n, dtype=np.int64)[:, None] // 10 ** np.arange(width - 1, -1, -1)) % 10
    raw = np.concatenate([np.broadcast_to(prefix, (n, prefix.size)), (digits + ord("0")).astype(np.uint8)], axis=1)
    ids: npt.NDArray[np.object_] = np.ascontiguousarray(raw).view(f"S{raw.shape[1]}").ravel().astype(str).astype(object)
    return ids


def _masked(values: FloatArray, missing: BoolArray) -> FloatArray:
    out: FloatArray = np.where(missing, np.nan, values)
    return out


def synth_cohort(
    n: int,
    seed: int,
    *,
    horizons: Sequence[float] = DEFAULT_TRUTH_HORIZONS,
    truth: bool = True,
    missing_values: bool = True,
    parameters: SynthParameters | None = None,
) -> SynthCohort:
    """Generate `n` patients deterministically from `seed` (see the module docstring for the model).

    - `horizons`: years at which true cumulative incidences are computed (1-10 years is the model
      range; any positive horizon works).
    - `truth`: compute the true risks (the latent columns are always returned); False skips the
      quadrature for speed.
    - `missing_values`: False gives complete data (every feature observed, DXA for everyone).
    - `parameters`: override the published-figure defaults (e.g. `dataclasses.replace`).
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 1 <= n <= MAX_ROWS:
        raise FusionError(f"n must be an integer between 1 and {MAX_ROWS:,}, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise FusionError(f"seed must be a non-negative integer, got {seed!r}")
    horizon_tuple = tuple(float(h) for h in horizons)
    if not horizon_tuple or any(not np.isfinite(h) or h <= 0 or h > 50 for h in horizon_tuple):
        raise FusionError(f"horizons must be positive years (at most 50), got {list(horizons)}")
    p = parameters if parameters is not None else default_parameters()
    validate_parameters(p)
    n = int(n)
    streams = _Streams.from_seed(int(seed))

    # 1. population
    pop = p.population
    female = _bernoulli(streams.population, pop.female_fraction, n)
    male = ~female
    lo, hi = special.ndtr((np.array([pop.age_min, pop.age_max]) - pop.age_mean) / pop.age_sd)
    age = pop.age_mean + pop.age_sd * special.ndtri(streams.population.uniform(lo, hi, n))
    age = np.clip(age, pop.age_min, pop.age_max)
    index_offset_years = streams.population.uniform(0.0, pop.index_years_span, n)
    first_index = np.datetime64(f"{pop.index_year_first:04d}-01-01")
    index_days = np.floor(index_offset_years * 365.25).astype("int64")
    index_date = first_index + index_days.astype("timedelta64[D]")
    administrative = pop.study_end_years_after_first_index - index_days / 365.25

    # 2. anthropometry
    an = p.anthropometry
    height = np.where(female, an.height_female_cm, an.height_male_cm)
    height = height - an.height_loss_cm_per_year_after_50 * np.maximum(age - 50.0, 0.0)
    height = height + an.height_sd_cm * streams.anthropometry.standard_normal(n)
    bmi_mean = np.where(female, an.bmi_mean_female, an.bmi_mean_male)
    bmi_sd = np.where(female, an.bmi_sd_female, an.bmi_sd_male)
    sigma2 = np.log1p((bmi_sd / bmi_mean) ** 2)
    bmi = np.exp(np.log(bmi_mean) - sigma2 / 2 + np.sqrt(sigma2) * streams.anthropometry.standard_normal(n))
    bmi = np.clip(bmi - an.bmi_decline_per_year_after_70 * np.maximum(age - 70.0, 0.0), 15.0, 65.0)
    height = np.clip(height, 130.0, 210.0)
    weight = bmi * (height / 100.0) ** 2

    # 3. clinical risk factors
    rf = p.risk_factor_prevalence
    smoker_p = special.expit(
        _logit(rf.smoker_at_60) + rf.smoker_log_odds_per_year * (age - 60) + np.log(rf.smoker_odds_ratio_male) * male
    )
    smoker = _bernoulli(streams.risk_factors, smoker_p, n)
    alcohol = _bernoulli(streams.risk_factors, np.where(female, rf.alcohol_female, rf.alcohol_male), n)
    glucocorticoids = _bernoulli(streams.risk_factors, rf.glucocorticoids, n)
    ra_p = np.where(female, rf.rheumatoid_arthritis_female, rf.rheumatoid_arthritis_male)
    rheumatoid = _bernoulli(streams.risk_factors, ra_p, n)
    secondary = _bernoulli(streams.risk_factors, rf.secondary_osteoporosis, n)
    falls = _bernoulli(
        streams.risk_factors,
        special.expit(
            _logit(rf.falls_at_70)
            + rf.falls_log_odds_per_year * (age - 70)
            + np.log(rf.falls_odds_ratio_female) * female
        ),
        n,
    )
    parental = _bernoulli(streams.risk_factors, rf.parental_hip_fracture, n)

    # 4. bone: latent z (centred on the population, variance about 1 within age and sex)
    bo = p.bone
    alcohol_p = np.where(female, rf.alcohol_female, rf.alcohol_male)
    explained = (
        bo.bone_sd_per_bmi_unit * (bmi - bmi_mean)
        + bo.bone_sd_glucocorticoids * (glucocorticoids - rf.glucocorticoids)
        + bo.bone_sd_secondary_osteoporosis * (secondary - rf.secondary_osteoporosis)
        + bo.bone_sd_rheumatoid_arthritis * (rheumatoid - ra_p)
        + bo.bone_sd_smoker * (smoker - smoker_p)
        + bo.bone_sd_alcohol * (alcohol - alcohol_p)
    )
    explained_var = (
        bo.bone_sd_per_bmi_unit**2 * bmi_sd**2
        + bo.bone_sd_glucocorticoids**2 * rf.glucocorticoids * (1 - rf.glucocorticoids)
        + bo.bone_sd_secondary_osteoporosis**2 * rf.secondary_osteoporosis * (1 - rf.secondary_osteoporosis)
        + bo.bone_sd_rheumatoid_arthritis**2 * ra_p * (1 - ra_p)
        + bo.bone_sd_smoker**2 * smoker_p * (1 - smoker_p)
        + bo.bone_sd_alcohol**2 * alcohol_p * (1 - alcohol_p)
    )
    bone_z = explained + np.sqrt(np.clip(1.0 - explained_var, 0.25, 1.0)) * streams.bone.standard_normal(n)
    mu_hu = np.where(
        female,
        bo.l1_hu_young_adult
        + bo.l1_hu_slope_female_before_50 * (np.minimum(age, 50.0) - 30.0)
        + bo.l1_hu_slope_female_after_50 * np.maximum(age - 50.0, 0.0),
        bo.l1_hu_young_adult_male + bo.l1_hu_slope_male * (age - 30.0),
    )
    # physiological range of trabecular attenuation; only the far normal tail (|z| > ~4) is affected
    true_l1_hu = np.clip(mu_hu + bo.l1_hu_sd * bone_z, TRUE_L1_HU_RANGE[0], TRUE_L1_HU_RANGE[1])

    # 5. prior fractures, DXA, diagnosis, treatment
    prior = _bernoulli(
        streams.prior_fractures,
        special.expit(
            _logit(rf.prior_fracture_at_65_female)
            + rf.prior_fracture_log_odds_per_year * (age - 65)
            + np.log(rf.prior_fracture_odds_ratio_male) * male
            + rf.prior_fracture_log_odds_per_sd_bone * bone_z
        ),
        n,
    )
    hip_share = np.clip(rf.prior_hip_given_prior_at_65 + rf.prior_hip_given_prior_per_year * (age - 65), 0.02, 0.5)
    prior_hip = prior & _bernoulli(streams.prior_fractures, hip_share, n)
    prior_vertebral = prior & _bernoulli(streams.prior_fractures, rf.prior_vertebral_given_prior, n)
    recent = prior & _bernoulli(streams.prior_fractures, rf.recent_given_prior, n)
    prior_forearm = prior & _bernoulli(streams.prior_fractures, rf.prior_forearm_given_prior, n)
    prior_humerus = prior & _bernoulli(streams.prior_fractures, rf.prior_humerus_given_prior, n)
    prior_other = prior & _bernoulli(streams.prior_fractures, rf.prior_other_given_prior, n)

    rho = bo.dxa_ct_correlation_within_age_sex
    t_mean = np.where(
        female,
        bo.dxa_t_mean_female_50 + bo.dxa_t_slope_female * (age - 50.0),
        bo.dxa_t_mean_male_50 + bo.dxa_t_slope_male * (age - 50.0),
    )
    dxa_t = t_mean + bo.dxa_t_sd * (rho * bone_z + np.sqrt(1 - rho**2) * streams.dxa.standard_normal(n))
    dxa_t = np.clip(dxa_t, -7.5, 5.5)

    mi = p.missingness
    dxa_base = np.where(
        female,
        np.where(age >= 65, mi.dxa_women_65_plus, mi.dxa_women_under_65),
        np.where(age >= 65, mi.dxa_men_65_plus, mi.dxa_men_under_65),
    )
    dxa_logit = (
        special.logit(dxa_base)
        + np.log(mi.dxa_odds_ratio_prior_fracture) * prior
        + np.log(mi.dxa_odds_ratio_glucocorticoids) * glucocorticoids
    )
    dxa_done = (
        _bernoulli(streams.dxa_missing, special.expit(dxa_logit), n) if missing_values else np.ones(n, dtype=bool)
    )
    dxa_osteoporosis = dxa_t <= OSTEOPOROSIS_T_SCORE

    dt = p.diagnosis_and_treatment
    diagnosis_p = np.where(
        dxa_done,
        np.where(
            dxa_osteoporosis,
            dt.diagnosis_given_dxa_osteoporosis,
            np.where(prior & (dxa_t <= -1.0), dt.diagnosis_given_dxa_osteopenia_and_fracture, dt.diagnosis_background),
        ),
        np.where(prior, dt.diagnosis_without_dxa_given_fracture, dt.diagnosis_background),
    )
    diagnosis = _bernoulli(streams.care, diagnosis_p, n)
    treatment_p = np.where(
        diagnosis,
        dt.treatment_given_diagnosis,
        np.where(prior, dt.treatment_given_fracture_without_diagnosis, dt.treatment_background),
    )
    treatment = _bernoulli(streams.care, treatment_p, n)

    # CT measurements
    measurement = bo.ct_measurement_sd_hu
    hu = {"hu_l1": true_l1_hu + measurement * streams.ct.standard_normal(n)}
    offsets = {"hu_l2": bo.level_offset_l2_hu, "hu_l3": bo.level_offset_l3_hu, "hu_l4": bo.level_offset_l4_hu}
    for name, offset in offsets.items():
        spread = np.hypot(bo.level_deviation_sd_hu, measurement)
        hu[name] = true_l1_hu + offset + spread * streams.ct.standard_normal(n)
    vbmd_slope = bo.vbmd_per_hu + bo.vbmd_slope_sd * streams.ct.standard_normal(n)
    vbmd_noise = bo.vbmd_noise_sd * streams.ct.standard_normal(n)

    # 6. follow-up: three latent processes
    fr = p.fracture
    frailty = np.exp(fr.frailty_sd * streams.follow_up.standard_normal(n))
    sd_lower = -(true_l1_hu - REFERENCE_L1_HU) / bo.l1_hu_sd
    shared = np.log(fr.hr_prior_fracture) * prior + np.log(fr.hr_osteoporosis_treatment) * treatment + np.log(frailty)
    boost = np.where(recent, fr.hr_recent_fracture_first_2y, 1.0)
    log_nonhip = (
        np.log(fr.nonhip_mof_hazard_ref)
        + fr.nonhip_mof_log_hazard_per_year * (age - REFERENCE_AGE)
        + np.log(fr.nonhip_mof_hr_male) * male
        + np.log(fr.nonhip_mof_hr_per_sd_lower_hu) * sd_lower
        + np.log(fr.nonhip_mof_hr_prior_vertebral_extra) * prior_vertebral
        + np.log(fr.nonhip_mof_hr_parental_hip) * parental
        + np.log(fr.nonhip_mof_hr_glucocorticoids) * glucocorticoids
        + np.log(fr.nonhip_mof_hr_smoker) * smoker
        + np.log(fr.nonhip_mof_hr_alcohol) * alcohol
        + np.log(fr.nonhip_mof_hr_rheumatoid_arthritis) * rheumatoid
        + np.log(fr.nonhip_mof_hr_per_bmi_unit) * (bmi - REFERENCE_BMI)
        + np.log(fr.nonhip_mof_hr_falls) * falls
        + shared
    )
    log_hip = (
        np.log(fr.hip_hazard_ref)
        + fr.hip_log_hazard_per_year * (age - REFERENCE_AGE)
        + np.log(fr.hip_hr_male) * male
        + np.log(fr.hip_hr_per_sd_lower_hu) * sd_lower
        + np.log(fr.hip_hr_prior_hip_extra) * prior_hip
        + np.log(fr.hip_hr_parental_hip) * parental
        + np.log(fr.hip_hr_glucocorticoids) * glucocorticoids
        + np.log(fr.hip_hr_smoker) * smoker
        + np.log(fr.hip_hr_alcohol) * alcohol
        + np.log(fr.hip_hr_rheumatoid_arthritis) * rheumatoid
        + np.log(fr.hip_hr_per_bmi_unit) * (bmi - REFERENCE_BMI)
        + np.log(fr.hip_hr_falls) * falls
        + shared
    )
    mo = p.mortality
    log_death = (
        np.log(np.where(female, mo.hazard_female_65, mo.hazard_male_65))
        + mo.gompertz_slope_per_year * (age - REFERENCE_AGE)
        + np.log(mo.hr_per_sd_lower_hu) * sd_lower
        + np.log(mo.hr_prior_fracture) * prior
        + np.log(mo.hr_smoker) * smoker
        + np.log(mo.hr_glucocorticoids) * glucocorticoids
        + np.log(mo.hr_rheumatoid_arthritis) * rheumatoid
        + np.log(mo.hr_secondary_osteoporosis) * secondary
        + np.log(mo.hr_alcohol) * alcohol
        + np.log(mo.hr_falls) * falls
    )
    window = fr.recent_fracture_window_years
    nonhip_process = GompertzProcess(np.exp(log_nonhip), fr.nonhip_mof_log_hazard_per_year, boost, window)
    hip_process = GompertzProcess(np.exp(log_hip), fr.hip_log_hazard_per_year, boost, window)
    death_process = GompertzProcess(np.exp(log_death), mo.gompertz_slope_per_year, np.ones(n), 0.0)
    t_nonhip = nonhip_process.sample(streams.follow_up.standard_exponential(n))
    t_hip = hip_process.sample(streams.follow_up.standard_exponential(n))
    t_death = death_process.sample(streams.follow_up.standard_exponential(n))
    loss = streams.follow_up.standard_exponential(n) / p.censoring.loss_to_follow_up_per_year
    censor = np.minimum(administrative, loss)
    t_mof = np.minimum(t_nonhip, t_hip)
    time_years = np.minimum.reduce([t_mof, t_death, censor])
    event = np.select([t_mof <= time_years, t_death <= time_years], [1, 2], 0)
    hip_time_years = np.minimum.reduce([t_hip, t_death, censor])
    hip_event = np.select([t_hip <= hip_time_years, t_death <= hip_time_years], [1, 2], 0)

    # 7. missing values (mechanism in the module docstring)
    if missing_values:
        ct_missing = _bernoulli(streams.missingness, mi.ct_missing, n)
        l1_missing = ct_missing | _bernoulli(streams.missingness, mi.l1_missing, n)
        l3_l4_missing = ct_missing | _bernoulli(streams.missingness, mi.l3_l4_missing, n)
        l4_missing = l3_l4_missing | _bernoulli(streams.missingness, mi.l4_missing, n)
        weight_missing = _bernoulli(streams.missingness, mi.weight_missing, n)
        height_missing = _bernoulli(streams.missingness, mi.height_missing, n)
        parental_missing = _bernoulli(streams.missingness, mi.parental_hip_fracture_missing, n)
        falls_missing = _bernoulli(streams.missingness, mi.falls_missing, n)
        smoker_missing = _bernoulli(streams.missingness, mi.smoker_missing, n)
        alcohol_missing = _bernoulli(streams.missingness, mi.alcohol_missing, n)
    else:
        ct_missing = l1_missing = l3_l4_missing = l4_missing = np.zeros(n, dtype=bool)
        weight_missing = height_missing = parental_missing = falls_missing = np.zeros(n, dtype=bool)
        smoker_missing = alcohol_missing = np.zeros(n, dtype=bool)
    level_missing = {"hu_l1": l1_missing, "hu_l2": ct_missing, "hu_l3": l3_l4_missing, "hu_l4": l4_missing}
    observed_hu = {name: _masked(values, level_missing[name]) for name, values in hu.items()}
    stacked = np.column_stack(list(observed_hu.values()))
    counts = np.sum(~np.isnan(stacked), axis=1)
    mean_l1_l4 = np.where(counts > 0, np.nansum(stacked, axis=1) / np.maximum(counts, 1), np.nan)
    l1_l2 = stacked[:, :2]
    l1_l2_counts = np.sum(~np.isnan(l1_l2), axis=1)
    mean_l1_l2 = np.where(l1_l2_counts > 0, np.nansum(l1_l2, axis=1) / np.maximum(l1_l2_counts, 1), np.nan)
    vbmd = vbmd_slope * mean_l1_l2 + bo.vbmd_intercept_mg_cm3 + vbmd_noise

    table = pd.DataFrame(
        {
            "patient_id": _patient_ids(int(seed), n),
            "index_date": index_date.astype("datetime64[ns]"),
            "age_years": np.round(age, 2),
            "sex": pd.Categorical(np.where(male, "male", "female"), categories=SEX_CATEGORIES),
            "weight_kg": np.round(_masked(weight, weight_missing), 1),
            "height_cm": np.round(_masked(height, height_missing), 1),
            "bmi_kg_m2": np.round(_masked(bmi, weight_missing | height_missing), 2),
            "prior_fragility_fracture": _nullable(prior),
            "prior_hip_fracture": _nullable(prior_hip),
            "prior_vertebral_fracture": _nullable(prior_vertebral),
            "prior_forearm_fracture": _nullable(prior_forearm),
            "prior_humerus_fracture": _nullable(prior_humerus),
            "prior_other_fracture": _nullable(prior_other),
            "recent_fracture_2y": _nullable(recent),
            "falls_last_12m": _nullable(falls, falls_missing),
            "parental_hip_fracture": _nullable(parental, parental_missing),
            "current_smoker": _nullable(smoker, smoker_missing),
            "glucocorticoids": _nullable(glucocorticoids),
            "rheumatoid_arthritis": _nullable(rheumatoid),
            "secondary_osteoporosis": _nullable(secondary),
            "alcohol_3_or_more_units_day": _nullable(alcohol, alcohol_missing),
            "dxa_t_score_min": np.round(_masked(dxa_t, ~dxa_done), 1),
            "osteoporosis_diagnosis": _nullable(diagnosis),
            "osteoporosis_treatment": _nullable(treatment),
            "l1_hu": np.round(observed_hu["hu_l1"], 1),
            "mean_hu_l1_l4": np.round(mean_l1_l4, 1),
            "vbmd_l1_l2_mg_cm3": np.round(vbmd, 1),
            **{name: np.round(values, 1) for name, values in observed_hu.items()},
            "time_years": time_years,
            "event": pd.array(event.astype(np.int8), dtype="Int8"),
            "hip_time_years": hip_time_years,
            "hip_event": pd.array(hip_event.astype(np.int8), dtype="Int8"),
            "osteoporosis": _nullable(np.round(dxa_t, 1) <= OSTEOPOROSIS_T_SCORE, ~dxa_done),
        }
    )
    truth_frame = pd.DataFrame(
        {
            "patient_id": table["patient_id"],
            "true_bone_z": bone_z,
            "true_l1_hu": true_l1_hu,
            "true_frailty": frailty,
        }
    )
    if truth:
        mof = cumulative_incidence([hip_process, nonhip_process], [death_process], horizon_tuple)
        hip = cumulative_incidence([hip_process], [death_process], horizon_tuple)
        for j, h in enumerate(horizon_tuple):
            truth_frame[true_risk_column("mof", h)] = mof[:, j]
        for j, h in enumerate(horizon_tuple):
            truth_frame[true_risk_column("hip", h)] = hip[:, j]
    return SynthCohort(table=table, truth=truth_frame, seed=int(seed), parameters=p, horizons=horizon_tuple)


def check_synth_cohort(cohort: SynthCohort) -> None:
    """Validate a generated cohort against the canonical spec (used by tests and the CLI)."""
    validate_cohort(cohort.with_truth(), require=("survival", "diagnosis"))
