"""Synthetic CT cohorts with known truth, from published figures (see `fusion.synth.generate`).

>>> from fusion.synth import synth_cohort
>>> cohort = synth_cohort(10_000, seed=7)
>>> cohort.table        # canonical cohort columns
>>> cohort.truth        # latent values and true_risk_{mof,hip}_{1,2,5,10}y
"""

from fusion.synth.generate import DEFAULT_TRUTH_HORIZONS, SynthCohort, check_synth_cohort, synth_cohort
from fusion.synth.parameters import SynthParameters, default_parameters

__all__ = [
    "DEFAULT_TRUTH_HORIZONS",
    "SynthCohort",
    "SynthParameters",
    "check_synth_cohort",
    "default_parameters",
    "synth_cohort",
]
