"""`osteorisk assess`: one patient's diagnosis, screening flags and fracture risk (RiskReport)."""

from __future__ import annotations

import argparse
from typing import Any

from server.errors import NotImplementedYetError


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "assess", help="assess one patient (RiskReport)", description=__doc__
    )
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedYetError("assess: the fusion models have not landed yet")
