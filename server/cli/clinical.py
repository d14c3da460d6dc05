"""`osteorisk clinical SOURCE --patient ID --index-date YYYY-MM-DD`: a ClinicalRecord from FHIR."""

from __future__ import annotations

import argparse
from typing import Any

from server.errors import NotImplementedYetError


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "clinical", help="clinical risk factors from FHIR (ClinicalRecord)", description=__doc__
    )
    parser.add_argument("source", help="FHIR Bundle file, bulk NDJSON directory or http(s) base URL")
    parser.add_argument("--patient", help="Patient logical id")
    parser.add_argument("--index-date", help="YYYY-MM-DD")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedYetError("clinical: the FHIR extraction has not landed yet")
