"""FHIR R4 in, ClinicalRecord out: clinical risk factors at an index date. Knows nothing of images or models."""
