"""Batch CT features (`fusion.cohort.features_batch`, `osteorisk cohort features`) on phantom CTs with known
truth, a corrupt file and a missing path: one row per study, failures with their reason, results journalled
as they finish, an interrupted run resumed without measuring finished studies again, Dask identical."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fusion.cohort.engines import DaskEngine
from fusion.cohort.features_batch import JOURNAL, measure_studies, read_studies
from fusion.cohort.sources import FeaturesTable
from fusion.cohort.workdir import CRASH_EXIT_CODE, CRASH_HOOK_ENV
from fusion.errors import CohortError
from imaging.phantom import make_phantom, write_nifti
from tests.cli import run_cli

LEVELS = ("T12", "L1", "L2", "L3", "L4")
HU = {0: 180.0, 1: 120.0, 2: 75.0}


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three phantom CTs (NIfTI + label maps) with set trabecular HU, a corrupt CT and a missing path."""
    folder = tmp_path_factory.mktemp("studies")
    lines = ["patient_id,ct,labels,index_date"]
    for i, hu in HU.items():
        phantom = make_phantom(
            seed=40 + i, levels=LEVELS, shape=(112, 112), spacing=(2.2, 2.2, 2.5), trabecular_hu=hu, noise_sd=8.0
        )
        write_nifti(phantom, folder / f"ct{i}.nii.gz")
        write_nifti(phantom.labels, folder / f"seg{i}.nii.gz")
        lines.append(f"P{i},ct{i}.nii.gz,seg{i}.nii.gz,2023-0{i + 1}-15")
    (folder / "corrupt.nii.gz").write_bytes(b"\x1f\x8b\x08\x00 truncated gzip, not a CT")
    lines.append("P7,corrupt.nii.gz,,2023-05-01")
    lines.append("P8,missing/ct.nii.gz,,2023-06-01")
    (folder / "studies.csv").write_text("\n".join(lines) + "\n")
    return folder / "studies.csv"


@pytest.fixture(scope="module")
def measured(studies: Path) -> Path:
    out = studies.parent / "features.parquet"
    summary = measure_studies(studies, out, workers=1, qa_dir=studies.parent / "qa")
    assert (summary.studies, summary.ok, summary.failed) == (5, 3, 2)
    assert summary.failures_by_reason["NOT_FOUND"] == 1 and sum(summary.failures_by_reason.values()) == 2
    return out


def test_one_row_per_study_with_measurements_close_to_the_truth(measured: Path) -> None:
    table = pd.read_parquet(measured)
    assert table["patient_id"].tolist() == ["P0", "P1", "P2", "P7", "P8"]
    ok = table[table["status"] == "ok"]
    for i, hu in HU.items():
        row = ok[ok["patient_id"] == f"P{i}"].iloc[0]
        for level in ("l1", "l2", "l3", "l4"):
            assert row[f"hu_{level}"] == pytest.approx(hu, abs=15), (i, level)
        assert row["l1_hu"] == pytest.approx(hu, abs=15)
        assert row["mean_hu_l1_l4"] == pytest.approx(hu, abs=12)
        assert row["levels_used"].startswith("L1")
        assert row["index_date"] == f"2023-0{i + 1}-15"
        assert row["segmentation_backend"] == "labels" and row["n_warnings"] >= 1
        assert Path(row["qa_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert ok["l1_hu"].is_monotonic_decreasing
    failed = table[table["status"] == "failed"].set_index("patient_id")
    assert failed.loc["P8", "error_reason"] == "NOT_FOUND" and "missing/ct.nii.gz" in failed.loc["P8", "error"]
    assert failed.loc["P7", "error_reason"] not in (None, "INTERNAL_ERROR") and failed.loc["P7", "error"]
    assert failed["l1_hu"].isna().all()


def test_the_table_feeds_cohort_scoring(measured: Path) -> None:
    features = FeaturesTable(measured)
    assert len(features) == 3, "failed studies are not used"
    assert features.index_dates()["P1"].isoformat() == "2023-02-15"
    chunk = pd.DataFrame({"patient_id": ["P1", "P9"], "age_years": [70.0, 71.0]})
    joined = features.join(chunk)
    assert joined.loc[0, "l1_hu"] == pytest.approx(HU[1], abs=15) and pd.isna(joined.loc[1, "l1_hu"])
    dated = features.join(chunk.assign(index_date=pd.to_datetime(["2023-01-01", "2023-01-01"])))
    assert dated["l1_hu"].isna().all(), "a CT after the index date is not used"


def test_an_interrupted_batch_resumes_without_measuring_finished_studies_again(
    studies: Path, measured: Path, tmp_path: Path
) -> None:
    out = tmp_path / "features.csv"
    args = ["cohort", "features", "--studies", str(studies), "--out", str(out), "--workers", "1", "--quiet"]
    args += ["--keep-work", "--json"]
    crashed = run_cli(args, {CRASH_HOOK_ENV: "2"})
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr
    journal = tmp_path / "features.csv.work" / JOURNAL
    first = journal.read_text().splitlines()
    assert len(first) == 2 and not out.exists()
    resumed = run_cli(args)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed"] == 2
    lines = journal.read_text().splitlines()
    assert lines[:2] == first and len(lines) == 5, "finished studies were measured again"
    got = pd.read_csv(out, dtype={"patient_id": str})
    expected = pd.read_parquet(measured)
    text = ["patient_id", "status", "error_reason"]
    pd.testing.assert_frame_equal(got[text].astype("string"), expected[text].astype("string"))
    numbers = ["l1_hu", "hu_l2", "mean_hu_l1_l4", "genant_grade_max"]
    pd.testing.assert_frame_equal(got[numbers].astype("float64"), expected[numbers].astype("float64"))


def test_a_torn_journal_line_is_dropped_and_the_study_measured_again(studies: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.parquet"
    measure_studies(studies, out, workers=1, keep_work=True)
    journal = tmp_path / "f.parquet.work" / JOURNAL
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines[:3]) + "\n" + lines[3][:25])  # a crash in the middle of a write
    summary = measure_studies(studies, out, workers=1, keep_work=True)
    assert summary.resumed == 3 and (summary.ok, summary.failed) == (3, 2)
    assert len(journal.read_text().splitlines()) == 5
    retried = measure_studies(studies, out, workers=1, retry_failed=True)
    assert retried.resumed == 3, "with --retry-failed only the failures run again"


def test_dask_workers_measure_the_same(studies: Path, measured: Path, tmp_path: Path) -> None:
    with DaskEngine(workers=2, processes=False) as engine:
        summary = measure_studies(studies, tmp_path / "dask.parquet", engine_instance=engine)
    assert summary.engine == "dask"
    got = pd.read_parquet(tmp_path / "dask.parquet").drop(columns=["seconds", "qa_png"])
    pd.testing.assert_frame_equal(got, pd.read_parquet(measured).drop(columns=["seconds", "qa_png"]))


def test_study_lists_in_text_form_and_bad_lists(tmp_path: Path) -> None:
    text = tmp_path / "list.txt"
    text.write_text("# patient  ct  [labels]\nA1 scans/a.nii.gz\n\n'B 2' 'scans/b c.nii.gz' seg.nii.gz  # quoted\n")
    parsed = read_studies(text)
    assert [(s.patient_id, s.ct, s.labels) for s in parsed] == [
        ("A1", "scans/a.nii.gz", None),
        ("B 2", "scans/b c.nii.gz", "seg.nii.gz"),
    ]
    cases = {
        "no_header.csv": ("P1,a.nii.gz\n", "needs a header with patient_id and ct"),
        "empty.csv": ("patient_id,ct\n", "the study list is empty"),
        "half.csv": ("patient_id,ct\nP1,\n", "line 2: patient_id and ct must both be given"),
        "date.csv": ("patient_id,ct,index_date\nP1,a.nii.gz,15/02/2023\n", "is not a date"),
        "twice.csv": ("patient_id,path\nP1,a.nii.gz\nP1,a.nii.gz\n", "study 2 repeats study 1"),
        "fields.txt": ("P1 a b c\n", r"expected 'PATIENT_ID PATH \[LABELS\]'"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(content)
        with pytest.raises(CohortError, match=message) as info:
            read_studies(tmp_path / name)
        assert info.value.reason == "BAD_STUDY_LIST"
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(CohortError, match="not a text file"):
        read_studies(tmp_path / "binary.txt")
    with pytest.raises(CohortError, match=r"written as \.parquet, \.csv or \.tsv"):
        measure_studies(text, tmp_path / "out.xlsx")
