"""Where FHIR resources come from: a Bundle file, a Bulk Data NDJSON export, a REST server (`base.py`)."""
