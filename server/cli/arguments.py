"""argparse types shared by the subcommands."""

from __future__ import annotations

import argparse

MAX_HORIZON_YEARS = 50.0


def horizon_years(text: str) -> float:
    """A horizon in years, (0, 50]; use with `nargs="+"`: `--horizons 1 2 5 10`."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of years: {text!r}") from None
    if not 0 < value <= MAX_HORIZON_YEARS:
        raise argparse.ArgumentTypeError(f"horizons are years in (0, {MAX_HORIZON_YEARS:g}], got {value}")
    return value
