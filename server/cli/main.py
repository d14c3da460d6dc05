"""`osteorisk`: the command-line entry point. Each subcommand lives in its own module of this package.

Exit status: 0 success; 1 bad input or a failed job (one clear line on stderr); 2 usage error;
70 internal error (a bug: rerun with --debug for the traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from clinical.errors import ClinicalError
from fusion.errors import FusionError
from imaging.errors import ImagingError
from server.cli import assess, clinical, cohort, evaluate, features, models, serve, synth
from server.client import RemoteError
from server.config import ConfigError
from server.errors import RequestError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERNAL = 70

_EXPECTED_ERRORS = (
    ImagingError,
    ClinicalError,
    FusionError,
    ConfigError,
    RequestError,
    RemoteError,
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)

_SUBCOMMAND_MODULES = (features, clinical, assess, models, evaluate, synth, cohort, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="osteorisk",
        description="Opportunistic bone health from routine CT: bone features, clinical risk factors, "
        "osteoporosis diagnosis and time-to-fracture risk.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _SUBCOMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.func(args)
        return code
    except _EXPECTED_ERRORS as exc:
        if args.debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"osteorisk {args.command}: error: {message}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"osteorisk {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"osteorisk {args.command}: internal error ({type(exc).__name__}); rerun with --debug for the traceback",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
