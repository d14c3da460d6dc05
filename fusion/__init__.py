"""(ClinicalRecord, BoneFeatures) -> RiskReport: models, training, evaluation, cohorts, model artifacts."""
