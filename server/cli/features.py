"""`osteorisk features CT_PATH`: bone features of one CT series (BoneFeatures JSON)."""

from __future__ import annotations

import argparse
from typing import Any

from server.errors import NotImplementedYetError


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "features", help="measure the vertebrae of a CT (BoneFeatures)", description=__doc__
    )
    parser.add_argument("ct_path", help="DICOM folder, DICOM file or NIfTI")
    parser.add_argument("--json", action="store_true", help="print the BoneFeatures JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise NotImplementedYetError("features: the imaging pipeline has not landed yet")
