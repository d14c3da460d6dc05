"""`osteorisk train | predict`: fit risk models on cohort tables and score cohort tables with them."""

from __future__ import annotations

import argparse
from typing import Any

from server.errors import NotImplementedYetError


def register(subparsers: Any) -> None:
    for name, help_text in (
        ("train", "train a model on a cohort table"),
        ("predict", "score a cohort table with a model"),
    ):
        parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text, description=help_text)
        parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedYetError(f"{args.command}: the fusion models have not landed yet")
