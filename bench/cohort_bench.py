"""Benchmark: cohort scoring at scale (`osteorisk cohort score`), Dask against local, and the report.

1. generates N synthetic patients once (`fusion.synth.synth_cohort`) into a Parquet file (not timed);
2. scores them with the local engine (`--workers W`) in a fresh `osteorisk` process: wall time, CPU time
   and peak memory (RSS of the whole process tree, sampled every 50 ms: the client and its workers);
   target: 1,000,000 patients in <= 30 s on 2 cores;
3. scores the first M patients with the local engine and with the Dask engine (a LocalCluster of W
   worker processes) and checks that the two outputs are identical frames; times both;
4. renders the report of the M-patient scores (`osteorisk cohort report`) and lists its PNGs.

    .venv/bin/python bench/cohort_bench.py [--n 1000000] [--dask-n 100000] [--workers 2]
                                           [--model models/default] [--out bench/out/cohort]

The model is the bundled default (`make model`); without it one is built into the output folder first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

from fusion.bundled import default_model_dir
from fusion.cohort_table import write_cohort
from fusion.synth import synth_cohort

REPO = Path(__file__).resolve().parent.parent

SEED = 20_261_127


class TreeMemory:
    """Peak RSS of a process and all its descendants (summed), sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_total = 0
        self.peak_single = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
                sizes = []
                for p in processes:
                    with contextlib.suppress(psutil.Error):
                        sizes.append(p.memory_info().rss)
                self.peak_total = max(self.peak_total, sum(sizes))
                self.peak_single = max(self.peak_single, max(sizes, default=0))
            except psutil.Error:
                pass
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_cli(args: list[str]) -> dict[str, Any]:
    """One `osteorisk` command in a fresh process: wall, CPU (self + children) and peak tree memory."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli.main", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    memory = TreeMemory(process.pid)
    before = os.times()
    out, err = process.communicate()
    after = os.times()
    memory.stop()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"osteorisk {' '.join(args)} failed ({process.returncode}): {err.strip()[-2000:]}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_tree_mb": memory.peak_total / 2**20,
        "peak_process_mb": memory.peak_single / 2**20,
        "stdout": out.strip(),
    }


def ensure_model(requested: Path | None, out: Path) -> Path:
    model = requested or default_model_dir()
    if (model / "manifest.json").is_file():
        return model
    built = out / "model"
    if not (built / "manifest.json").is_file():
        print(f"no model at {model}: building the default model into {built} (a few minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "fusion.bundled", "--out", str(built)], cwd=REPO, check=True)
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dask-n", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "cohort")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    model = ensure_model(args.model, out)
    print(f"machine: {platform.machine()}, {psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB;")
    print(f"load average before: {', '.join(f'{v:.1f}' for v in os.getloadavg())}; model {model}")

    cohort = out / f"cohort-{args.n}.parquet"
    if not cohort.exists():
        t0 = time.perf_counter()
        write_cohort(synth_cohort(args.n, SEED, truth=False).table, cohort)
        print(f"generated {args.n:,} patients into {cohort.name} in {time.perf_counter() - t0:.1f} s (not timed)")
    small = out / f"cohort-{args.dask_n}.parquet"
    if not small.exists():
        pd.read_parquet(cohort).iloc[: args.dask_n].to_parquet(small, index=False)

    common = ["--model", str(model), "--workers", str(args.workers), "--quiet", "--restart", "--json"]
    scores = out / f"scores-{args.n}.parquet"
    big = run_cli(["cohort", "score", "--in", str(cohort), "--out", str(scores), *common])
    summary = json.loads(big["stdout"])
    rate = summary["rows"] / big["wall_s"]
    verdict = "met" if big["wall_s"] <= 30 else "NOT met"
    print(
        f"\nlocal engine, {summary['rows']:,} patients, {args.workers} workers: {big['wall_s']:.1f} s wall "
        f"(process start included; {summary['seconds']:.1f} s inside), {rate:,.0f} patients/s, "
        f"CPU {big['cpu_s']:.1f} s, "
        f"peak RSS {big['peak_tree_mb']:.0f} MB for the tree (largest process {big['peak_process_mb']:.0f} MB); "
        f"target <= 30 s: {verdict}"
    )

    local_small = out / f"scores-{args.dask_n}-local.parquet"
    dask_small = out / f"scores-{args.dask_n}-dask.parquet"
    local = run_cli(["cohort", "score", "--in", str(small), "--out", str(local_small), *common])
    dask = run_cli(["cohort", "score", "--in", str(small), "--out", str(dask_small), "--engine", "dask", *common])
    pd.testing.assert_frame_equal(pd.read_parquet(dask_small), pd.read_parquet(local_small))
    print(
        f"{args.dask_n:,} patients: local {local['wall_s']:.1f} s "
        f"(peak RSS {local['peak_tree_mb']:.0f} MB for the tree), "
        f"Dask LocalCluster ({args.workers} worker processes) "
        f"{dask['wall_s']:.1f} s (cluster start included; {json.loads(dask['stdout'])['seconds']:.1f} s inside); "
        "outputs identical (pandas.testing.assert_frame_equal)"
    )

    report_dir = out / "report"
    report = run_cli(["cohort", "report", "--in", str(local_small), "--out", str(report_dir), "--json"])
    info = json.loads(report["stdout"])
    print(
        f"report of {info['rows']:,} patients: {report['wall_s']:.1f} s, {len(info['figures'])} PNGs in {report_dir}:"
    )
    for figure in info["figures"]:
        print(f"  {Path(figure).name}")
    print(f"load average after: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
