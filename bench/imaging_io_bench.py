"""Benchmark of `imaging.io.load_ct`: a 512x512x300 phantom DICOM series, uncompressed and JPEG 2000.

Also times `make_phantom` at its default size (256x256x~180). Writes the series to a temporary folder,
then times `load_ct` (median of a few runs) in a fresh process per transfer syntax and reports that
process's peak RSS (VmHWM) and the volume's shape.
Usage: .venv/bin/python bench/imaging_io_bench.py [--runs N] [--slices N]
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
import json, resource, statistics, sys, time
from pathlib import Path
from imaging.io import load_ct
folder, runs = Path(sys.argv[1]), int(sys.argv[2])


def peak_mb():
    # VmHWM: this process's peak resident set (ru_maxrss would include the parent's peak across exec).
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024
def cpu():
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


times, cpus = [], []
for _ in range(runs):
    t, c = time.perf_counter(), cpu()
    volume = load_ct(folder)
    times.append(time.perf_counter() - t)
    cpus.append(cpu() - c)
    shape = volume.shape
    del volume
print(json.dumps({"median_s": statistics.median(times), "min_s": min(times), "shape": shape,
                  "median_cpu_s": statistics.median(cpus),
                  "peak_rss_mb": peak_mb()}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slices", type=int, default=300)
    args = parser.parse_args()

    from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

    from imaging.phantom import make_phantom, write_dicom_series

    timings, cpu_times = [], []
    for seed in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        default = make_phantom(seed=seed)
        timings.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    print(
        f"make_phantom default {default.volume.shape}: median {sorted(timings)[1]:.2f} s wall, "
        f"{sorted(cpu_times)[1]:.2f} s CPU (3 seeds)"
    )
    t0 = time.perf_counter()
    dz = 1.0
    phantom = make_phantom(
        seed=1, shape=(512, 512), spacing=(0.78, 0.78, dz), z_extent_mm=(-40.0, -40.0 + dz * (args.slices - 1))
    )
    print(f"phantom {phantom.volume.shape} in {time.perf_counter() - t0:.1f} s")
    root = Path(os.environ.get("OSTEORISK_BENCH_TMP", tempfile.gettempdir()))
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        results = {}
        for name, ts in (("uncompressed", ExplicitVRLittleEndian), ("jpeg2000", JPEG2000Lossless)):
            folder = Path(tmp) / name
            t0 = time.perf_counter()
            write_dicom_series(phantom, folder, transfer_syntax=ts, shuffle_names=True)
            size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
            print(f"wrote {name}: {size_mb:.0f} MB in {time.perf_counter() - t0:.1f} s")
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, str(folder), str(args.runs)],
                check=True,
                capture_output=True,
                text=True,
                cwd=Path(__file__).resolve().parent.parent,
            )
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[name]
            print(
                f"load_ct {name}: median {r['median_s']:.2f} s wall (min {r['min_s']:.2f} s, {args.runs} runs), "
                f"{r['median_cpu_s']:.2f} s CPU incl. workers, peak RSS {r['peak_rss_mb']:.0f} MB, "
                f"volume {tuple(r['shape'])}"
            )
        print(json.dumps({"cpus": os.cpu_count(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
