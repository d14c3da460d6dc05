"""Cohorts: batch scoring, batch CT features and cohort reports, on one machine or on a Dask cluster.

Modules (import what you need from each; nothing is re-exported here):
- `fusion.cohort.scoring`: `score_cohort(...)` streams a cohort table (Parquet, CSV, a folder of Parquet
  files) or a FHIR Bulk Data export joined with a CT features table through a model in chunks; resumable.
- `fusion.cohort.features_batch`: `measure_studies(...)` BoneFeatures of many CT studies in parallel,
  failures recorded per study; resumable.
- `fusion.cohort.report`: `build_report(...)` Kaplan-Meier, Aalen-Johansen, Cox hazard ratios, calibration
  by decile, score and missingness distributions as PNGs and one self-contained HTML file.
- `fusion.cohort.engines`: where the chunks run: local processes or a Dask distributed cluster.
- `fusion.cohort.flags`: diagnosis category and screening flags of a whole frame at once (vectorised
  `fusion.rules`).
- `fusion.cohort.sources`, `fusion.cohort.workdir`: chunked input readers; work directories with a
  manifest, atomic parts and input fingerprints.
"""
