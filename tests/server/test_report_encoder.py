"""The fast report encoder gives exactly the generic translation's message, on rich and on real reports."""

from __future__ import annotations

from fusion.types import AssessmentInputs, RiskReport
from server import convert
from server.report_encoder import encode_risk_report
from tests.server.test_convert import rich_report


def _same(report: RiskReport) -> None:
    fast = encode_risk_report(report)
    generic = convert.risk_report_to_proto(report)
    assert fast == generic
    assert fast.SerializeToString(deterministic=True) == generic.SerializeToString(deterministic=True)


def test_rich_report() -> None:
    _same(rich_report())


def test_report_without_optional_parts() -> None:
    _same(rich_report().model_copy(update={"fhir_risk_assessment": None, "explanations": [], "warnings": []}))


def test_bare_report() -> None:
    """No flags, predictions, explanations, inputs or FHIR resource: the sub-messages still match."""
    bare = {"inputs": AssessmentInputs(), "screening_flags": [], "predictions": [], "fhir_risk_assessment": None}
    _same(rich_report().model_copy(update={**bare, "explanations": [], "warnings": []}))
