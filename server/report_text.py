"""A RiskReport as text for a person (the CLI without --json, and `make run`)."""

from __future__ import annotations

from fusion.types import RiskReport

_OUTCOME_NAMES = {"major_osteoporotic_fracture": "Major osteoporotic fracture", "hip_fracture": "Hip fracture"}


def render_report(report: RiskReport) -> str:
    lines = [
        f"Patient {report.patient_id}, assessed at {report.index_date.isoformat()}",
        f"Model {report.model.id} {report.model.version}: {report.model.intended_use}",
        "",
        f"Diagnosis: {report.diagnosis.category.upper()} ({report.diagnosis.method})",
        f"  {report.diagnosis.basis}",
    ]
    if report.diagnosis.probabilities:
        probs = ", ".join(f"{k} {v:.0%}" for k, v in sorted(report.diagnosis.probabilities.items()))
        lines.append(f"  probabilities: {probs}")
    lines += ["", "Screening flags:"]
    lines += [f"  [{f.severity}] {f.code}: {f.reason}" for f in report.screening_flags] or ["  none"]
    if report.predictions:
        horizons = sorted({p.horizon_years for p in report.predictions})
        lines += ["", "Cumulative incidence (death as a competing risk), 95% interval:"]
        lines.append("  " + "outcome".ljust(30) + "".join(f"{h:g} y".rjust(22) for h in horizons))
        for outcome in dict.fromkeys(p.outcome for p in report.predictions):
            cells = []
            for h in horizons:
                p = next((x for x in report.predictions if x.outcome == outcome and x.horizon_years == h), None)
                cells.append((f"{p.probability:6.1%} ({p.ci95[0]:.1%}-{p.ci95[1]:.1%})" if p else "-").rjust(22))
            lines.append("  " + _OUTCOME_NAMES.get(outcome, outcome).ljust(30) + "".join(cells))
    if report.explanations:
        lines += ["", "Largest contributions (log-hazard):"]
        for e in report.explanations[:6]:
            lines.append(f"  {e.feature:<32} {e.value!s:>10}   {e.contribution:+.3f}")
    if report.inputs.series_uid or report.inputs.imaging is not None:
        lines += ["", f"CT series: {report.inputs.series_uid or '(no UID)'}"]
    if report.inputs.imputed:
        lines.append("Imputed inputs: " + ", ".join(report.inputs.imputed))
    if report.warnings:
        lines += ["", "Warnings:"] + [f"  - {w}" for w in report.warnings]
    return "\n".join(lines)
