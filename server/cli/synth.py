"""`osteorisk synth cohort`: synthetic cohorts with known truth, from published figures."""

from __future__ import annotations

import argparse
from typing import Any

from server.errors import NotImplementedYetError


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "synth", help="generate synthetic data with known truth", description=__doc__
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedYetError("synth: the synthetic cohort generator has not landed yet")
