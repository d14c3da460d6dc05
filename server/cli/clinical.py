"""`osteorisk clinical SOURCE [--patient ID] [--index-date YYYY-MM-DD] [--json]`: a ClinicalRecord from FHIR.

SOURCE is a FHIR Bundle JSON file, a Bulk Data NDJSON directory or an http(s) FHIR base URL.
`--patient` may be left out when the source holds exactly one Patient. The index date defaults to today
(said on stderr). Without --json, a readable table; with --json, the `osteorisk.clinical/1` contract.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from typing import Any

from clinical.extract import build_record
from clinical.sources.base import open_source, single_patient_id
from clinical.types import ClinicalRecord, ClinicalVariables
from server.errors import RequestError


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "clinical", help="clinical risk factors from FHIR (ClinicalRecord)", description=__doc__
    )
    parser.add_argument("source", help="FHIR Bundle file, bulk NDJSON directory or http(s) base URL")
    parser.add_argument("--patient", help="Patient logical id (optional when the source holds one Patient)")
    parser.add_argument("--index-date", help="YYYY-MM-DD (default: today)")
    parser.add_argument(
        "--allow-undated-death",
        action="store_true",
        help="accept a patient recorded as deceased without a date (retrospective cohorts)",
    )
    parser.add_argument("--json", action="store_true", help="print the osteorisk.clinical/1 JSON")
    parser.set_defaults(func=run)


def _index_date(text: str | None) -> date:
    if text is None:
        today = date.today()
        print(f"osteorisk clinical: no --index-date given; using today, {today.isoformat()}", file=sys.stderr)
        return today
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise RequestError("index_date", "INVALID_DATE", f"--index-date {text!r} is not a date (YYYY-MM-DD)") from None


def _format_value(value: object, unit: str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        text = f"{value:.1f}" if unit in {"kg", "cm", "kg/m2", "a"} else f"{value:.2f}"
        return f"{text} {unit}" if unit and unit != "a" else text
    return str(value)


def render_table(record: ClinicalRecord) -> str:
    """The record as an aligned text table, then its warnings."""
    rows = [("variable", "value", "status", "effective", "sources")]
    for name in ClinicalVariables.names():
        variable = record.variables.get(name)
        sources = ", ".join(variable.sources[:2]) + (
            f" (+{len(variable.sources) - 2})" if len(variable.sources) > 2 else ""
        )
        rows.append(
            (
                name,
                _format_value(variable.value, variable.unit),
                variable.status,
                variable.effective.isoformat() if variable.effective else "-",
                sources or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"patient {record.patient_id} at index date {record.index_date.isoformat()}", ""]
    for row in rows:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])
    if record.warnings:
        lines.append("")
        lines.append("warnings:")
        lines.extend(f"  - {warning}" for warning in record.warnings)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    index_date = _index_date(args.index_date)
    source = open_source(args.source)
    try:
        patient_id = args.patient or single_patient_id(source)
        record = build_record(source, patient_id, index_date, allow_undated_death=args.allow_undated_death)
    finally:
        source.close()
    if args.json:
        print(record.model_dump_json(indent=2))
    else:
        print(render_table(record))
    return 0
