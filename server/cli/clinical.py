"""`osteorisk clinical SOURCE [--patient ID] [--index-date YYYY-MM-DD] [--json]`: a ClinicalRecord from FHIR.

SOURCE is a FHIR Bundle JSON file, a Bulk Data NDJSON directory or an http(s) FHIR base URL.
`--patient` may be left out when the source holds exactly one Patient. The index date defaults to today
(said on stderr). Without --json, a readable table; with --json, the `osteorisk.clinical/1` contract.

A FHIR server is read without credentials, with a static bearer token (`--token-file`: the token on the
file's first line) or with SMART Backend Services (`--smart-client-id` + `--smart-private-key`, a PEM or
private-JWK file; `--smart-alg`, `--smart-scope`, `--smart-token-url`, `--smart-kid` optional). Secrets
are read from files, never from the command line. When no credential option is given, the
`OSTEORISK_FHIR_*` environment variables are used (`clinical.sources.auth.AUTH_ENVIRONMENT`).
`--timeout` bounds each request to the server (seconds; default 30).

    osteorisk clinical https://fhir.example.org/r4 --patient 123 --index-date 2024-05-01 \\
        --smart-client-id osteorisk --smart-private-key client.pem --json
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any

from clinical.extract import build_record
from clinical.sources.auth import AUTH_ENVIRONMENT, SMART_ALGORITHMS, auth_from_env, make_auth
from clinical.sources.base import is_server_url, open_source, single_patient_id
from clinical.types import ClinicalRecord, ClinicalVariables
from server.errors import RequestError


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "clinical",
        help="clinical risk factors from FHIR (ClinicalRecord)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    server = parser.add_argument_group(
        "FHIR server options (SOURCE is an http(s) base URL)",
        "Without credential options, the OSTEORISK_FHIR_* environment variables are used "
        f"({', '.join(sorted(AUTH_ENVIRONMENT.values()))}).",
    )
    server.add_argument("--token-file", type=Path, help="file holding a static bearer token (first line)")
    server.add_argument("--smart-client-id", help="SMART Backend Services client id")
    server.add_argument(
        "--smart-private-key", type=Path, help="the SMART client's private key: PEM or private JWK file"
    )
    server.add_argument("--smart-alg", choices=SMART_ALGORITHMS, help="client assertion signing algorithm (RS384)")
    server.add_argument("--smart-scope", help="scopes to ask for (default system/*.read)")
    server.add_argument("--smart-token-url", help="token endpoint (default: discovered from the server)")
    server.add_argument("--smart-kid", help="key id of the client's key (default: its RFC 7638 thumbprint)")
    server.add_argument("--timeout", type=_seconds, help="seconds allowed for each request to the server (30)")
    parser.set_defaults(func=run)


_CREDENTIAL_OPTIONS = {
    "token_file": "--token-file",
    "smart_client_id": "--smart-client-id",
    "smart_private_key": "--smart-private-key",
    "smart_alg": "--smart-alg",
    "smart_scope": "--smart-scope",
    "smart_token_url": "--smart-token-url",
    "smart_kid": "--smart-kid",
}


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def source_options(args: argparse.Namespace) -> dict[str, Any]:
    """`open_source` keyword arguments for the server options; refused for a file or directory SOURCE."""
    given = {name: getattr(args, name) for name in _CREDENTIAL_OPTIONS if getattr(args, name) is not None}
    if not is_server_url(args.source):
        flags = [_CREDENTIAL_OPTIONS[name] for name in given] + (["--timeout"] if args.timeout is not None else [])
        if flags:
            raise RequestError(
                "source",
                "OPTION_NEEDS_SERVER",
                f"{', '.join(flags)} apply to a FHIR server URL; SOURCE {args.source!r} is a file or directory",
            )
        return {}
    options: dict[str, Any] = {"auth": make_auth(**given) if given else auth_from_env(os.environ)}
    if args.timeout is not None:
        options["timeout_s"] = args.timeout
    return options


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
    source = open_source(args.source, **source_options(args))
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
