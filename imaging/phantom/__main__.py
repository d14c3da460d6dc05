"""`python -m imaging.phantom --out DIR --seed N --format dicom|nifti`: write a phantom with its truth.

Writes DIR/ct/ (a DICOM series) or DIR/ct.nii.gz, DIR/labels.nii.gz (vertebrae, TotalSegmentator ids unless
the anatomy needs VerSe ids) and DIR/truth.json (the PhantomTruth).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless

from imaging.phantom.generator import make_phantom
from imaging.phantom.writers import write_dicom_series, write_nifti

_SYNTAXES = {
    "explicit": ExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpeg2000": JPEG2000Lossless,
    "jpegls": JPEGLSLossless,
}


def _fracture(text: str) -> tuple[str, tuple[str, int]]:
    try:
        level, shape, grade = text.split(":")
        return level, (shape, int(grade))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--fracture takes LEVEL:SHAPE:GRADE, e.g. L1:wedge:2, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imaging.phantom", description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=("dicom", "nifti"), default="dicom")
    parser.add_argument("--transfer-syntax", choices=sorted(_SYNTAXES), default="explicit")
    parser.add_argument("--shape", type=int, nargs=2, default=(256, 256), metavar=("NX", "NY"))
    parser.add_argument("--spacing", type=float, nargs=3, default=(1.4, 1.4, 2.0), metavar=("DX", "DY", "DZ"))
    parser.add_argument("--contrast", action="store_true")
    parser.add_argument("--fracture", type=_fracture, action="append", default=[])
    parser.add_argument("--transitional", choices=("13_rib_pairs", "11_rib_pairs", "lumbarised_s1", "sacralised_l5"))
    parser.add_argument("--metal", choices=("pedicle_screws", "hip_prosthesis"))
    parser.add_argument("--noise-sd", type=float, default=12.0)
    args = parser.parse_args(argv)

    phantom = make_phantom(
        seed=args.seed,
        shape=tuple(args.shape),
        spacing=tuple(args.spacing),
        contrast=args.contrast,
        fractures=dict(args.fracture),
        transitional=args.transitional,
        metal=args.metal,
        noise_sd=args.noise_sd,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    if args.format == "dicom":
        write_dicom_series(
            phantom,
            args.out / "ct",
            transfer_syntax=_SYNTAXES[args.transfer_syntax],
            seed=args.seed,
            contrast_agent="IOHEXOL" if args.contrast else None,
        )
    else:
        write_nifti(phantom, args.out / "ct.nii.gz")
    write_nifti(phantom.labels, args.out / "labels.nii.gz")
    truth = dataclasses.asdict(phantom.truth)
    (args.out / "truth.json").write_text(json.dumps(truth, indent=1, default=str) + "\n")
    print(f"wrote {args.format} phantom {phantom.volume.shape} (seed {args.seed}) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
