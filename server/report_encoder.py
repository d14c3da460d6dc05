"""The hot path of every assessment: a RiskReport straight into its protobuf message.

`server.convert.risk_report_to_proto` (generic, through JSON) is the reference; this module fills the same
message field by field, in place (`add()` on repeated fields and assignment into sub-messages: a sub-message
handed to a constructor is copied), many times faster, which the service needs to answer 1,000+ assessments
a second on two cores. `tests/server/test_report_encoder.py` checks that both give identical bytes on rich
reports, so a field added to one side and not the other fails.
"""

from __future__ import annotations

from google.protobuf import struct_pb2

from clinical.types import ClinicalRecord, ClinicalVariables, Variable
from fusion.types import AssessmentInputs, RiskReport
from imaging.types import FeatureSummary
from server.fhir_risk_assessment import risk_assessment_json
from server.generated.osteorisk.v1 import bone_features_pb2, clinical_record_pb2, risk_report_pb2

_VARIABLE_NAMES = ClinicalVariables.names()


def _set_value(target: struct_pb2.Value, value: bool | float | str | None) -> None:
    """A JSON scalar into a google.protobuf.Value (None leaves it unset, as the generic translation does)."""
    if value is None:
        return
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int | float):
        target.number_value = float(value)
    else:
        target.string_value = value


def _set_variable(target: clinical_record_pb2.ClinicalVariable, variable: Variable) -> None:
    _set_value(target.value, variable.value)
    target.status = variable.status
    target.sources.extend(variable.sources)
    if variable.effective:
        target.effective = variable.effective.isoformat()
    if variable.unit:
        target.unit = variable.unit


def _set_record(target: clinical_record_pb2.ClinicalRecord, record: ClinicalRecord) -> None:
    target.schema = record.schema_id
    target.patient_id = record.patient_id
    target.index_date = record.index_date.isoformat()
    variables, out = record.variables, target.variables
    for name in _VARIABLE_NAMES:
        _set_variable(getattr(out, name), getattr(variables, name))
    target.warnings.extend(record.warnings)


def _set_summary(target: bone_features_pb2.FeatureSummary, summary: FeatureSummary) -> None:
    for name in ("l1_hu", "mean_hu_l1_l4", "vbmd_l1_l2_mg_cm3"):
        value = getattr(summary, name)
        if value is not None:
            setattr(target, name, value)
    if summary.acr_category:
        target.acr_category = summary.acr_category
    target.levels_used.extend(summary.levels_used)


def _set_inputs(target: risk_report_pb2.AssessmentInputs, inputs: AssessmentInputs) -> None:
    target.clinical_sources.extend(inputs.clinical_sources)
    target.series_uid = inputs.series_uid or ""
    target.study_uid = inputs.study_uid or ""
    target.segmentation_backend = inputs.segmentation_backend or ""
    target.features_used.update(inputs.features_used)
    target.imputed.extend(inputs.imputed)
    target.missing.extend(inputs.missing)
    if inputs.clinical is not None:
        _set_record(target.clinical, inputs.clinical)
    if inputs.imaging is not None:
        _set_summary(target.imaging, inputs.imaging)


def encode_risk_report(report: RiskReport) -> risk_report_pb2.RiskReport:
    """The protobuf message of a report (identical to the generic JSON-based translation)."""
    message = risk_report_pb2.RiskReport(
        schema=report.schema_id,
        patient_id=report.patient_id,
        index_date=report.index_date.isoformat(),
        warnings=report.warnings,
    )
    diagnosis = report.diagnosis
    message.diagnosis.category = diagnosis.category
    message.diagnosis.probabilities.update(diagnosis.probabilities)
    message.diagnosis.method = diagnosis.method
    message.diagnosis.basis = diagnosis.basis
    add_flag = message.screening_flags.add
    for f in report.screening_flags:
        add_flag(code=f.code, severity=f.severity, reason=f.reason)
    add_prediction = message.predictions.add
    for p in report.predictions:
        add_prediction(outcome=p.outcome, horizon_years=p.horizon_years, probability=p.probability, ci95=p.ci95)
    add_explanation = message.explanations.add
    for e in report.explanations:
        _set_value(
            add_explanation(feature=e.feature, contribution=e.contribution, outcome=e.outcome or "").value, e.value
        )
    model = report.model
    message.model.id = model.id
    message.model.version = model.version
    message.model.sha256 = model.sha256
    message.model.trained_on = model.trained_on
    message.model.intended_use = model.intended_use
    _set_inputs(message.inputs, report.inputs)
    if report.fhir_risk_assessment is not None:
        message.fhir_risk_assessment_json = risk_assessment_json(report.fhir_risk_assessment)
    return message
