"""`osteorisk features CT_PATH`: bone features of one CT series (BoneFeatures JSON or a readable table).

    osteorisk features ct_folder/ --labels seg.nii.gz --qa-png qa.png --json

Without --json a table: one row per level (trabecular median HU, vBMD, heights, Genant grade, QC), then
the summary, the calibration and the warnings. Errors (unreadable CT, label map not aligned, unknown
backend, ...) are one line on stderr with exit status 1 (see `server.cli.main`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from imaging.conventions import convention_names
from imaging.errors import ImageInputError
from imaging.pipeline import extract_features
from imaging.types import BoneFeatures

_BACKENDS = ("builtin", "labels", "monai", "totalsegmentator")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "features",
        help="measure the vertebrae of a CT (BoneFeatures)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("ct_path", type=Path, help="DICOM folder, DICOM file or NIfTI")
    parser.add_argument("--labels", type=Path, metavar="LABELMAP", help="vertebra label map (NIfTI) of the CT")
    parser.add_argument(
        "--label-convention",
        choices=convention_names(),
        default="totalsegmentator",
        help="label ids of --labels (default: totalsegmentator)",
    )
    parser.add_argument(
        "--backend",
        choices=_BACKENDS,
        help="segmentation backend (default: labels when --labels is given, else builtin)",
    )
    parser.add_argument("--monai-model", type=Path, metavar="DIR", help="with --backend monai: the network's directory")
    parser.add_argument(
        "--monai-label-mapping", type=Path, metavar="FILE", help="with --backend monai: output label -> level (JSON)"
    )
    parser.add_argument("--qa-png", type=Path, metavar="OUT.png", help="write the QA picture here")
    parser.add_argument("--json", action="store_true", help="print the BoneFeatures JSON")
    parser.set_defaults(func=run)


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_table(features: BoneFeatures) -> str:
    """The readable report of `osteorisk features` without --json."""
    src = features.source
    lines = [
        f"CT: {src.kind}, series {src.series_uid or '?'}, {src.kvp or '?'} kVp, contrast {src.contrast}, "
        f"segmentation {features.segmentation.backend}",
        "",
        f"{'level':<6}{'HU med':>8}{'HU sd':>7}{'vBMD':>7}{'H ant':>7}{'H mid':>7}{'H post':>7}{'Genant':>7}"
        f"{'conf':>6}  QC",
    ]
    for m in features.levels:
        qc = ", ".join(m.qc) + (" [excluded]" if m.excluded else "")
        lines.append(
            f"{m.level:<6}{_num(m.hu_median):>8}{_num(m.hu_sd):>7}{_num(m.vbmd_mg_cm3):>7}"
            f"{_num(m.height_anterior_mm, 1):>7}{_num(m.height_middle_mm, 1):>7}{_num(m.height_posterior_mm, 1):>7}"
            f"{_num(m.genant_grade):>7}{m.confidence:>6.2f}  {qc}"
        )
    s = features.summary
    lines += [
        "",
        f"L1 HU {_num(s.l1_hu)}; mean L1-L4 HU {_num(s.mean_hu_l1_l4)}; vBMD L1-L2 {_num(s.vbmd_l1_l2_mg_cm3)} mg/cm3; "
        f"ACR category {s.acr_category or '-'}; levels used: {', '.join(s.levels_used) or 'none'}",
    ]
    cal = features.calibration
    if cal is not None:
        lines.append(
            f"calibration {cal.status}: vBMD = {cal.slope:.3f} * HU + {cal.intercept:.1f} (r2 {cal.r2:.4f}; "
            f"references {', '.join(f'{r.tissue} {r.hu:.0f} HU' for r in cal.references) or 'none'})"
            + (f" - {cal.reason}" if cal.reason else "")
        )
    if features.warnings:
        lines += ["", "warnings:", *(f"  {w}" for w in features.warnings)]
    return "\n".join(lines)


def backend_options(args: argparse.Namespace) -> dict[str, object]:
    """Options of the chosen backend from the command line (only the MONAI backend takes any)."""
    if args.backend != "monai":
        if args.monai_model or args.monai_label_mapping:
            raise ImageInputError("--monai-model and --monai-label-mapping go with --backend monai")
        return {}
    if args.monai_model is None:
        raise ImageInputError("--backend monai needs --monai-model DIR (a network or bundle directory of yours)")
    options: dict[str, object] = {"model_dir": args.monai_model}
    if args.monai_label_mapping is not None:
        options["label_mapping"] = args.monai_label_mapping
    return options


def run(args: argparse.Namespace) -> int:
    features = extract_features(
        args.ct_path,
        labels=args.labels,
        label_convention=args.label_convention,
        backend=args.backend,
        backend_options=backend_options(args),
        qa_png=args.qa_png,
    )
    if args.json:
        sys.stdout.write(features.model_dump_json(indent=2) + "\n")
    else:
        sys.stdout.write(render_table(features) + "\n")
    return 0
