"""CT in, BoneFeatures out: reading CT series, finding vertebrae, measuring bone. Knows nothing of FHIR or models."""
