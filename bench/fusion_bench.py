"""Fusion benchmarks: scoring throughput, Cox training time, per-patient latency, held-out acceptance of the
default model against the oracle, and the forest/network alternatives against Cox on held-out data.

    .venv/bin/python bench/fusion_bench.py [--skip-compare] [--rows 1000000]

Every figure is printed with the machine's load average (others may share the CPUs). The held-out cohorts
use seeds that no model was tuned on (HELDOUT_SEED, COMPARE_*_SEED).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from clinical.types import ClinicalRecord, ClinicalVariables, Variable  # noqa: E402
from fusion.artifacts import LoadedModel, load_model  # noqa: E402
from fusion.assess import assess  # noqa: E402
from fusion.bundled import DEFAULT_FEATURES, build_default_model  # noqa: E402
from fusion.metrics import calibration_slope, harrell_c, integrated_brier_score, observed_expected  # noqa: E402
from fusion.synth import default_parameters, synth_cohort  # noqa: E402
from fusion.training import TrainConfig, train_model  # noqa: E402
from imaging.types import BoneFeatures, FeatureSummary, ImageSource, SegmentationInfo  # noqa: E402

HELDOUT_SEED = 918_273
COMPARE_TRAIN_SEED = 55_501
COMPARE_TEST_SEED = 55_502
COVERAGE_TRAIN_SEED = 66_601
COVERAGE_TEST_SEED = 66_602
OUTCOMES = (("mof", "time_years", "event"), ("hip", "hip_time_years", "hip_event"))


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load avg {one:.1f}/{five:.1f} on {os.cpu_count()} CPUs"


def bench_scoring(model: LoadedModel, rows: int) -> None:
    base = synth_cohort(min(rows, 200_000), 31, truth=False).table
    cohort = pd.concat([base] * int(np.ceil(rows / len(base))), ignore_index=True).iloc[:rows]
    cohort["patient_id"] = np.arange(rows).astype(str)
    model.predict_frame(cohort.head(1000))  # warm the horizon grid caches
    wall, cpu = time.perf_counter(), time.process_time()
    out = model.predict_frame(cohort)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"scoring {rows:,} rows (MOF + hip, 1/2/5/10 y, with 95% intervals): {wall:.2f} s wall, {cpu:.2f} s CPU, "
        f"{rows / wall:,.0f} rows/s [{load()}]"
    )
    assert out["risk_mof_10y_hi"].notna().all()


def bench_training(rows: int) -> None:
    cohort = synth_cohort(rows, 32, truth=False).table
    for bootstrap in (0, 50):
        start, cpu = time.perf_counter(), time.process_time()
        train_model(cohort, TrainConfig(features=DEFAULT_FEATURES, bootstrap=bootstrap, diagnosis=False))
        print(
            f"training Cox (MOF + hip, 2 cause-specific models each) on {rows:,} rows, bootstrap {bootstrap}: "
            f"{time.perf_counter() - start:.1f} s wall, {time.process_time() - cpu:.1f} s CPU [{load()}]"
        )


def bench_assess(model: LoadedModel, calls: int = 5000) -> None:
    index = date(2024, 5, 1)
    variables = ClinicalVariables(
        age_years=Variable(value=71.0, status="derived", sources=["Patient/p"]),
        sex=Variable(value="female", status="observed", sources=["Patient/p"]),
        bmi_kg_m2=Variable(value=24.0, status="observed", sources=["Observation/b"]),
        prior_fragility_fracture=Variable(value=True, status="observed", sources=["Condition/c"]),
    )
    record = ClinicalRecord(patient_id="p", index_date=index, variables=variables)
    bone = BoneFeatures(
        source=ImageSource(kind="dicom", series_uid="1.2.3", study_date=index),
        segmentation=SegmentationInfo(backend="labels"),
        summary=FeatureSummary(l1_hu=98.0, mean_hu_l1_l4=104.0),
    )
    values = {"age_years": 71.0, "sex": 1.0, "bmi_kg_m2": 24.0, "prior_fragility_fracture": 1.0, "mean_hu_l1_l4": 104.0}

    def model_only() -> object:
        return model.predict_patient(values, (1, 2, 5, 10))

    def full() -> object:
        return assess(model, patient_id="p", index_date=index, clinical=record, bone=bone)

    for label, call in (
        ("model only (predict_patient: 2 outcomes x 4 horizons with intervals)", model_only),
        ("assess (full RiskReport)", full),
    ):
        for _ in range(200):
            call()
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        times.sort()
        print(
            f"per-patient {label}: median {statistics.median(times) * 1e3:.3f} ms, "
            f"p99 {times[int(0.99 * len(times))] * 1e3:.3f} ms [{load()}]"
        )


def evaluate(name: str, predicted: dict[str, pd.DataFrame], cohort: pd.DataFrame) -> None:
    grid = [float(h) for h in range(1, 11)]
    for prefix, tc, ec in OUTCOMES:
        p = predicted[prefix]
        c = harrell_c(cohort[tc], cohort[ec], p[f"risk_{prefix}_10y"], horizon=10.0).c
        oe = observed_expected(cohort[tc], cohort[ec], p[f"risk_{prefix}_10y"], horizon=10.0)
        slope = calibration_slope(cohort[tc], cohort[ec], p[f"risk_{prefix}_10y"], horizon=10.0).slope
        ibs = integrated_brier_score(
            cohort[tc], cohort[ec], p[[f"risk_{prefix}_{int(h)}y" for h in grid]].to_numpy(), grid
        )
        print(
            f"  {name:8s} {prefix}: Harrell C(10y) {c:.4f}, IBS(1-10y) {ibs:.5f}, calibration slope(10y) "
            f"{slope:.3f}, O/E(10y) {oe.ratio:.3f} [{oe.ratio_ci[0]:.3f}, {oe.ratio_ci[1]:.3f}]"
        )


def _oracle(truth: pd.DataFrame) -> dict[str, pd.DataFrame]:
    out = {}
    for prefix, _, _ in OUTCOMES:
        out[prefix] = pd.DataFrame({f"risk_{prefix}_{h}y": truth[f"true_risk_{prefix}_{h}y"] for h in range(1, 11)})
    return out


def _scores(model: LoadedModel, cohort: pd.DataFrame) -> dict[str, pd.DataFrame]:
    frame = model.predict_frame(cohort, horizons=tuple(float(h) for h in range(1, 11)))
    return {prefix: frame for prefix, _, _ in OUTCOMES}


def bench_acceptance(model: LoadedModel, n: int = 20_000) -> None:
    held = synth_cohort(n, HELDOUT_SEED, horizons=tuple(float(h) for h in range(1, 11)))
    print(f"held-out acceptance: default model vs oracle on {n:,} synthetic patients (seed {HELDOUT_SEED})")
    evaluate("oracle", _oracle(held.truth), held.table)
    evaluate("default", _scores(model, held.table), held.table)
    frame = model.predict_frame(held.table, horizons=(10.0,))
    for prefix, _, _ in OUTCOMES:
        true = held.truth[f"true_risk_{prefix}_10y"].to_numpy()
        covered = (frame[f"risk_{prefix}_10y_lo"] <= true) & (true <= frame[f"risk_{prefix}_10y_hi"])
        print(f"  95% interval contains the true 10-year {prefix} risk for {covered.mean():.1%} of patients")


def bench_coverage(n_train: int = 60_000, n_test: int = 5_000) -> None:
    """Interval coverage of the true risk where the model can know it: no frailty, no CT measurement error,
    complete data (the remaining misspecification: imminent risk is a time-limited effect, and MOF is the
    first of two processes with different covariate effects, so not exactly proportional hazards)."""
    p = default_parameters()
    p = replace(
        p,
        fracture=replace(p.fracture, frailty_sd=0.0),
        bone=replace(p.bone, ct_measurement_sd_hu=0.0, level_deviation_sd_hu=0.0),
    )
    train = synth_cohort(n_train, COVERAGE_TRAIN_SEED, truth=False, missing_values=False, parameters=p).table
    test = synth_cohort(n_test, COVERAGE_TEST_SEED, missing_values=False, parameters=p)
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(features=DEFAULT_FEATURES, bootstrap=50, diagnosis=False, seed=5)
        model = load_model(train_model(train, config).save(Path(tmp) / "m"))
    frame = model.predict_frame(test.table, horizons=(1.0, 5.0, 10.0))
    print(f"interval coverage of the true risk without latent noise (train {n_train:,}, test {n_test:,}):")
    for prefix, _, _ in OUTCOMES:
        parts = []
        for h in (1, 5, 10):
            true = test.truth[f"true_risk_{prefix}_{h}y"].to_numpy()
            lo, hi = frame[f"risk_{prefix}_{h}y_lo"].to_numpy(), frame[f"risk_{prefix}_{h}y_hi"].to_numpy()
            parts.append(f"{h}y {np.mean((lo <= true) & (true <= hi)):.1%}")
        print(f"  {prefix}: " + ", ".join(parts))


def bench_compare(n_train: int = 30_000, n_test: int = 20_000) -> None:
    train = synth_cohort(n_train, COMPARE_TRAIN_SEED, truth=False).table
    test = synth_cohort(n_test, COMPARE_TEST_SEED, horizons=tuple(float(h) for h in range(1, 11)))
    print(
        f"alternatives on held-out data: trained on {n_train:,} (seed {COMPARE_TRAIN_SEED}), "
        f"tested on {n_test:,} (seed {COMPARE_TEST_SEED})"
    )
    evaluate("oracle", _oracle(test.truth), test.table)
    with tempfile.TemporaryDirectory() as tmp:
        for kind, bootstrap in (("cox", 10), ("forest", 2), ("net", 2)):
            start = time.perf_counter()
            config = TrainConfig(kind=kind, features=DEFAULT_FEATURES, bootstrap=bootstrap, diagnosis=False, seed=3)  # type: ignore[arg-type]
            path = train_model(train, config).save(Path(tmp) / kind)
            fitted = time.perf_counter() - start
            model = load_model(path)
            start = time.perf_counter()
            scores = _scores(model, test.table)
            print(f"  {kind}: trained in {fitted:.0f} s, scored {n_test:,} in {time.perf_counter() - start:.1f} s")
            evaluate(kind, scores, test.table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument("--skip-compare", action="store_true")
    args = parser.parse_args()
    print(f"== fusion bench {date.today()} on {platform.node()} ({os.cpu_count()} CPUs) [{load()}]")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model = load_model(build_default_model().save(Path(tmp) / "default"))
        print(f"default model (synthetic, n=60,000, 50 bootstrap refits) built in {time.perf_counter() - start:.1f} s")
        bench_assess(model)
        bench_scoring(model, args.rows)
        bench_training(args.train_rows)
        bench_acceptance(model)
    bench_coverage()
    if not args.skip_compare:
        bench_compare()
    return 0


if __name__ == "__main__":
    sys.exit(main())
