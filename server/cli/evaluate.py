"""`osteorisk evaluate`: discrimination and calibration of a model on a cohort table."""

from __future__ import annotations

import argparse
from typing import Any

from server.errors import NotImplementedYetError


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "evaluate", help="evaluate a model on a cohort table", description=__doc__
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedYetError("evaluate: the evaluation tools have not landed yet")
