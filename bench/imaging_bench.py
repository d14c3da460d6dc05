"""Benchmark of `imaging.pipeline.extract_features`: CT to BoneFeatures, end to end and per step.

Cases (each in a fresh process, so that its peak RSS is its own):
- a 512x512x300 phantom DICOM series (uncompressed, written to a temporary folder) with the `builtin`
  backend (read + segment + measure + calibrate + QC), and with the `labels` backend (the phantom's own
  label map: the cost of the measurement without the segmentation);
- the shared example scans with their TotalSegmentator label maps (NIfTI 122x101x30; DICOM 512x512x20).
Each child reports the end-to-end wall time (median of `--runs`), its peak RSS (VmHWM), and a split of
one run into read / segment / measure / calibrate+QC+summary.

Usage: .venv/bin/python bench/imaging_bench.py [--runs N] [--slices N] [--skip-large]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = """
import json, statistics, sys, time
from pathlib import Path
from imaging.io import load_ct, load_label_map
from imaging.measure.vertebra import measure_levels
from imaging.pipeline import extract_features
from imaging.segmentation.registry import get_backend

ct, labels, backend, runs = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
labels = Path(labels) if labels != "-" else None


def peak_mb():
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


times = []
for _ in range(runs):
    t = time.perf_counter()
    features = extract_features(ct, labels=labels, backend=backend)
    times.append(time.perf_counter() - t)
t0 = time.perf_counter(); volume = load_ct(ct)
t1 = time.perf_counter()
options = {"label_map": load_label_map(labels, reference=volume)} if backend == "labels" else {}
segmentation = get_backend(backend, **options).segment(volume)
t2 = time.perf_counter(); measure_levels(volume, segmentation)
t3 = time.perf_counter()
label_map = options.get("label_map")
t4 = time.perf_counter(); extract_features(volume, labels=label_map, backend=backend)
from_volume = time.perf_counter() - t4
print(json.dumps({
    "median_s": statistics.median(times), "min_s": min(times), "peak_rss_mb": peak_mb(),
    "read_s": t1 - t0, "segment_s": t2 - t1, "measure_s": t3 - t2,
    "rest_s": from_volume - (t3 - t1),
    "shape": list(volume.shape), "levels": [m.level for m in features.levels],
    "l1_hu": features.summary.l1_hu,
}))
"""


def _child(ct: Path, labels: Path | None, backend: str, runs: int) -> dict[str, object]:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(ct), str(labels) if labels else "-", backend, str(runs)],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=900,
    )
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no output"
        return {"error": last}
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _row(name: str, r: dict[str, object]) -> str:
    if "error" in r:
        return f"| {name} | failed: {r['error']} | | | | | | |"
    return (
        f"| {name} | {r['median_s']:.2f} s | {r['read_s']:.2f} s | {r['segment_s']:.2f} s | {r['measure_s']:.2f} s "
        f"| {r['rest_s']:.2f} s | {r['peak_rss_mb']:.0f} MB | {', '.join(r['levels'])} |"  # type: ignore[arg-type]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--skip-large", action="store_true", help="only the shared example scans")
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    shared = Path(os.environ.get("OSTEORISK_SHARED_DATA", root.parent / "shared" / "data")) / "ct" / "totalseg"
    print("| case | end to end (median) | read | segment | measure | calibrate+QC+summary | peak RSS | levels |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        _row(
            "example_ct_sm.nii.gz + labels",
            _child(shared / "example_ct_sm.nii.gz", shared / "example_seg.nii.gz", "labels", args.runs),
        )
    )
    print(
        _row(
            "example_ct_dicom (JPEG 2000) + labels",
            _child(shared / "example_ct_dicom", shared / "example_seg_dicom.nii.gz", "labels", args.runs),
        )
    )
    if args.skip_large:
        return
    from imaging.phantom import make_phantom, write_dicom_series, write_nifti

    with tempfile.TemporaryDirectory(prefix="osteorisk-bench-") as tmp:
        t = time.perf_counter()
        spacing_z = 300.0 / args.slices
        phantom = make_phantom(
            seed=7, shape=(512, 512), spacing=(0.75, 0.75, spacing_z), z_extent_mm=(0.0, args.slices * spacing_z - 1e-3)
        )
        folder = write_dicom_series(phantom, Path(tmp) / "series").folder
        labels = write_nifti(phantom.labels, Path(tmp) / "labels.nii.gz")
        print(f"\n(phantom {phantom.volume.shape} written in {time.perf_counter() - t:.1f} s)\n")
        del phantom
        for backend in ("builtin", "labels"):
            result = _child(folder, labels if backend == "labels" else None, backend, args.runs)
            print(_row(f"phantom DICOM {args.slices} slices, {backend}", result))


if __name__ == "__main__":
    main()
