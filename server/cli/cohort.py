"""`osteorisk cohort score | features | report`: batch work for epidemiologists."""

from __future__ import annotations

import argparse
from typing import Any

from server.errors import NotImplementedYetError


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "cohort", help="score, measure and report whole cohorts", description=__doc__
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedYetError("cohort: batch scoring has not landed yet")
