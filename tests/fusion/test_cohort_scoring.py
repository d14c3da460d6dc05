"""Batch scoring (`fusion.cohort.scoring`, `osteorisk cohort score`): chunked output equal to the model's own
predictions, vectorised flags and diagnosis equal to the one-patient rules, CSV/Parquet/folder inputs, bad
input, and a real interrupted run resumed without recomputing its finished chunks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from fusion.artifacts import LoadedModel, load_model
from fusion.cohort.flags import flag_codes
from fusion.cohort.scoring import read_scores_metadata, score_cohort
from fusion.cohort.workdir import CRASH_EXIT_CODE, CRASH_HOOK_ENV, LOCK
from fusion.cohort_table import write_cohort
from fusion.errors import CohortError, ModelInputError
from fusion.features import encode_value
from fusion.rules import diagnose, screening_flags
from fusion.synth import synth_cohort
from tests.cli import run_cli
from tests.fusion.model_helpers import trained_model_dir

N = 2_400
CHUNK = 500


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_model_dir(tmp_path_factory.mktemp("cohort-model"), bootstrap=4, n=2000)


@pytest.fixture(scope="module")
def model(model_dir: Path) -> LoadedModel:
    return load_model(model_dir)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic cohort (an evaluation seed, not the training one) with a few vertebral fracture grades and
    some CTs without a vBMD calibration (so that the classifier diagnoses those without DXA)."""
    table = synth_cohort(N, 9_301, truth=True).with_truth()
    rng = np.random.default_rng(5)
    table.loc[rng.random(N) < 0.15, "vbmd_l1_l2_mg_cm3"] = np.nan
    grades = rng.choice([0, 1, 2, 3], size=N, p=[0.85, 0.07, 0.05, 0.03]).astype(float)
    grades[rng.random(N) < 0.1] = np.nan
    table["genant_grade_max"] = grades
    path = tmp_path_factory.mktemp("cohort") / "cohort.parquet"
    write_cohort(table, path)
    return path


@pytest.fixture(scope="module")
def scored(cohort: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scored") / "scores.parquet"
    summary = score_cohort(cohort, out, model_dir=model_dir, workers=1, chunk_rows=CHUNK)
    assert summary.rows == N and summary.chunks == -(-N // CHUNK) and summary.chunks_resumed == 0
    assert not (out.parent / "scores.parquet.work").exists(), "the work directory is removed after success"
    return out


def test_every_row_is_scored_in_input_order_as_the_model_scores_it(
    cohort: Path, scored: Path, model: LoadedModel
) -> None:
    source = pd.read_parquet(cohort)
    out = pd.read_parquet(scored)
    assert out["patient_id"].tolist() == source["patient_id"].tolist()
    assert len(pq.ParquetFile(scored).metadata.row_group(0).to_dict()["columns"]) == out.shape[1]
    direct = model.predict_frame(source, (1, 2, 5, 10), skip_invalid=True)
    for h in (1, 2, 5, 10):
        for outcome in ("mof", "hip"):
            for suffix in ("", "_lo", "_hi"):
                name = f"risk_{outcome}_{h}y{suffix}"
                np.testing.assert_array_equal(out[name].to_numpy(), direct[name].to_numpy())
        est = out[f"risk_mof_{h}y"]
        assert ((out[f"risk_mof_{h}y_lo"] <= est) & (est <= out[f"risk_mof_{h}y_hi"])).all()
    assert (out["warnings"] == direct["warnings"]).all()
    assert (out["status"] == "scored").all()
    # input columns are carried (outcomes for the report, truth for evaluation)
    for column in ("time_years", "event", "age_years", "true_risk_mof_10y", "genant_grade_max"):
        pd.testing.assert_series_equal(out[column], source[column], check_names=True)
    imputed = out["warnings"].str.count(",") + out["warnings"].str.startswith("imputed:").astype(int)
    assert (out["imputed_inputs"] == imputed).all()


def test_the_file_names_the_model_and_the_thresholds(scored: Path, model: LoadedModel) -> None:
    meta = read_scores_metadata(scored)
    assert meta["model"]["sha256"] == model.sha256
    assert meta["model"]["not_for_clinical_use"] is True
    assert meta["model"]["features"] == list(model.plan.names)
    assert meta["horizons_years"] == [1.0, 2.0, 5.0, 10.0]
    assert meta["flags"] == list(flag_codes()) and meta["thresholds_version"]


def _values(row: pd.Series) -> dict[str, float | None]:
    names = ("dxa_t_score_min", "vbmd_l1_l2_mg_cm3", "l1_hu", "recent_fracture_2y")
    return {n: encode_value(n, None if pd.isna(row[n]) else row[n]) for n in names}


def test_vectorised_flags_and_diagnosis_agree_with_the_one_patient_rules(scored: Path, model: LoadedModel) -> None:
    out = pd.read_parquet(scored)
    rng = np.random.default_rng(0)
    sample = out.iloc[rng.choice(len(out), size=400, replace=False)]
    for _, row in sample.iterrows():
        v = _values(row)
        grade = row["genant_grade_max"]
        expected = screening_flags(
            t_score=v["dxa_t_score_min"],
            vbmd_mg_cm3=v["vbmd_l1_l2_mg_cm3"],
            l1_hu=v["l1_hu"],
            genant_grades={} if pd.isna(grade) else {"L1": int(grade)},
            recent_fracture_2y=None if v["recent_fracture_2y"] is None else bool(v["recent_fracture_2y"]),
            risk_mof_10y=row["risk_mof_10y"],
            risk_hip_10y=row["risk_hip_10y"],
        )
        codes = [f.code for f in expected]
        assert (row["flags"].split(";") if row["flags"] else []) == codes
        assert sorted(c for c in flag_codes() if row[f"flag_{c}"]) == sorted(codes)
        probabilities = None
        if row["diagnosis_method"] == "classifier":
            probabilities = {c.removeprefix("diagnosis_p_"): row[c] for c in row.index if c.startswith("diagnosis_p_")}
        expected_dx = diagnose(
            t_score=v["dxa_t_score_min"],
            vbmd_mg_cm3=v["vbmd_l1_l2_mg_cm3"],
            l1_hu=v["l1_hu"],
            probabilities=probabilities,
        )
        assert (row["diagnosis_category"], row["diagnosis_method"]) == (expected_dx.category, expected_dx.method)
    assert {"dxa_t_score_who", "qct_vbmd_acr", "classifier"} <= set(out["diagnosis_method"].astype(str))
    assert out["flag_SUSPECTED_VERTEBRAL_FRACTURE"].sum() == (out["genant_grade_max"] >= 2).sum() > 0


def test_the_classifier_diagnosis_matches_the_model_component(scored: Path, cohort: Path, model: LoadedModel) -> None:
    out = pd.read_parquet(scored)
    source = pd.read_parquet(cohort)
    used = out.index[out["diagnosis_method"] == "classifier"][:25]
    assert len(used) > 0 and model.diagnosis is not None
    for i in used:
        names = model.diagnosis.plan.names
        values = {n: encode_value(n, None if pd.isna(source.at[i, n]) else source.at[i, n]) for n in names}
        probabilities, _ = model.diagnosis.probabilities(values)
        for name, p in probabilities.items():
            assert out.at[i, f"diagnosis_p_{name}"] == pytest.approx(p, abs=1e-12)
        expected = diagnose(t_score=None, vbmd_mg_cm3=None, l1_hu=None, probabilities=probabilities)
        assert out.at[i, "diagnosis_category"] == expected.category


def test_csv_folder_and_parquet_inputs_give_the_same_scores(
    cohort: Path, scored: Path, model_dir: Path, tmp_path: Path
) -> None:
    table = pd.read_parquet(cohort)
    write_cohort(table, tmp_path / "cohort.csv")
    folder = tmp_path / "parts"
    folder.mkdir()
    table.iloc[:1000].to_parquet(folder / "a.parquet", index=False, row_group_size=300)
    table.iloc[1000:].to_parquet(folder / "b.parquet", index=False, row_group_size=700)
    expected = pd.read_parquet(scored)
    risk = [c for c in expected.columns if c.startswith(("risk_", "flag_", "diagnosis_"))] + ["patient_id", "flags"]
    for source in (tmp_path / "cohort.csv", folder):
        out = tmp_path / f"{source.name}.parquet"
        score_cohort(source, out, model_dir=model_dir, workers=1, chunk_rows=CHUNK, keep_columns=("time_years",))
        got = pd.read_parquet(out)
        pd.testing.assert_frame_equal(got[risk], expected[risk], check_dtype=False, check_categorical=False)
        assert "age_years" not in got.columns and "time_years" in got.columns


def test_rows_the_model_cannot_score_are_refused_one_by_one(model_dir: Path, tmp_path: Path) -> None:
    table = synth_cohort(300, 77, truth=False).table
    table.loc[[3, 150], "age_years"] = np.nan  # a required input
    path = tmp_path / "c.parquet"
    write_cohort(table, path)
    summary = score_cohort(path, tmp_path / "s.parquet", model_dir=model_dir, workers=1, chunk_rows=100)
    out = pd.read_parquet(tmp_path / "s.parquet")
    assert summary.refused == 2 and summary.scored == 298
    assert out.loc[[3, 150], "status"].tolist() == ["refused", "refused"]
    assert out.loc[[3, 150], "risk_mof_10y"].isna().all()
    assert out.loc[3, "warnings"].startswith("refused: age_years required but missing")
    assert out.loc[3, "flag_HIGH_10Y_MOF_RISK"] == False  # noqa: E712 - no risk, no risk flag


def test_bad_values_name_the_rows_of_the_input(model_dir: Path, tmp_path: Path) -> None:
    table = synth_cohort(300, 78, truth=False).table
    path = tmp_path / "c.csv"
    write_cohort(table, path)
    text = path.read_text().splitlines()
    header = text[0].split(",")
    cells = text[251].split(",")
    cells[header.index("height_cm")] = "1.62"  # metres
    text[251] = ",".join(cells)
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(CohortError, match=r"input rows 200-299 .*height_cm.*look like metres") as info:
        score_cohort(path, tmp_path / "s.parquet", model_dir=model_dir, workers=1, chunk_rows=100)
    assert info.value.reason == "OUT_OF_RANGE"


def test_bad_inputs_and_options_are_refused_clearly(cohort: Path, model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.parquet"
    with pytest.raises(CohortError, match="must be a Parquet file"):
        score_cohort(cohort, tmp_path / "s.csv", model_dir=model_dir)
    with pytest.raises(CohortError, match="overwrite the input"):
        score_cohort(cohort, cohort, model_dir=model_dir)
    with pytest.raises(FileNotFoundError):
        score_cohort(tmp_path / "nope.parquet", out, model_dir=model_dir)
    (tmp_path / "c.xlsx").write_bytes(b"PK")
    with pytest.raises(CohortError, match="unknown cohort input") as info:
        score_cohort(tmp_path / "c.xlsx", out, model_dir=model_dir)
    assert info.value.reason == "UNSUPPORTED_FORMAT"
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(CohortError, match="cannot read as Parquet") as info:
        score_cohort(tmp_path / "broken.parquet", out, model_dir=model_dir)
    assert info.value.reason == "UNREADABLE_TABLE"
    pd.DataFrame({"id": ["a"], "age_years": [70.0]}).to_parquet(tmp_path / "noid.parquet")
    with pytest.raises(CohortError, match="no patient_id column"):
        score_cohort(tmp_path / "noid.parquet", out, model_dir=model_dir)
    with pytest.raises(ModelInputError, match="horizons"):
        score_cohort(cohort, out, model_dir=model_dir, horizons=(0.5, 10))
    with pytest.raises(CohortError, match="index_date column and --index-date"):
        score_cohort(cohort, out, model_dir=model_dir, index_date=pd.Timestamp("2024-01-01").date(), workers=1)


def test_a_work_directory_of_other_work_is_refused_unless_restarted(
    cohort: Path, model_dir: Path, tmp_path: Path
) -> None:
    table = pd.read_parquet(cohort).iloc[:600]
    source = tmp_path / "c.parquet"
    table.to_parquet(source, index=False)
    out = tmp_path / "s.parquet"
    score_cohort(source, out, model_dir=model_dir, workers=1, chunk_rows=CHUNK, keep_work=True)
    work = tmp_path / "s.parquet.work"
    assert sorted(p.name for p in work.glob("part-*")) == ["part-000000.parquet", "part-000001.parquet"]
    other = trained_model_dir(tmp_path, bootstrap=3, n=2000)
    with pytest.raises(CohortError, match="the model differs") as info:
        score_cohort(source, out, model_dir=other, workers=1, chunk_rows=CHUNK)
    assert info.value.reason == "WORK_DIR_MISMATCH"
    with pytest.raises(CohortError, match=r"the options differ \(chunk_rows\)"):
        score_cohort(source, out, model_dir=model_dir, workers=1, chunk_rows=CHUNK + 1)
    table.assign(age_years=table["age_years"] + 1).to_parquet(source, index=False)
    with pytest.raises(CohortError, match="the input changed"):
        score_cohort(source, out, model_dir=model_dir, workers=1, chunk_rows=CHUNK)
    summary = score_cohort(source, out, model_dir=model_dir, workers=1, chunk_rows=CHUNK, restart=True)
    assert summary.chunks_resumed == 0
    assert pd.read_parquet(out)["age_years"].tolist() == (table["age_years"] + 1).tolist()
    # a lock held by a live run
    work.mkdir()
    (work / "manifest.json").write_text("{}")
    (work / LOCK).write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    with pytest.raises(CohortError, match="in use by another run") as info:
        score_cohort(source, out, model_dir=model_dir, workers=1, chunk_rows=CHUNK)
    assert info.value.reason == "WORK_DIR_LOCKED"
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "thesis.docx").write_text("precious")
    with pytest.raises(CohortError, match="not a work directory"):
        score_cohort(source, out, model_dir=model_dir, work_dir=tmp_path / "foreign")
    assert (tmp_path / "foreign" / "thesis.docx").read_text() == "precious"


def test_an_interrupted_run_resumes_without_redoing_finished_chunks(
    cohort: Path, scored: Path, model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "resumed.parquet"
    args = ["cohort", "score", "--in", str(cohort), "--out", str(out), "--model", str(model_dir)]
    args += ["--chunk-rows", str(CHUNK), "--workers", "1", "--quiet", "--keep-work", "--json"]
    crashed = run_cli(args, {CRASH_HOOK_ENV: "3"})
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr
    work = tmp_path / "resumed.parquet.work"
    parts = sorted(work.glob("part-*.parquet"))
    assert len(parts) == 3 and (work / LOCK).exists() and not out.exists()
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in parts}

    resumed = run_cli(args)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["chunks_resumed"] == 3 and summary["chunks"] == -(-N // CHUNK)
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in work.glob("part-*.parquet")}
    assert {k: after[k] for k in before} == before, "finished parts were rewritten"
    assert not (work / LOCK).exists()
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(scored))


def test_the_cli_reports_one_line_and_errors_on_stderr(cohort: Path, model_dir: Path, tmp_path: Path) -> None:
    from server.cli.main import main

    out = tmp_path / "cli.parquet"
    assert (
        main(
            [
                "cohort",
                "score",
                "--in",
                str(cohort),
                "--out",
                str(out),
                "--model",
                str(model_dir),
                "--workers",
                "1",
                "--quiet",
                "--columns",
                "none",
            ]
        )
        == 0
    )
    assert pd.read_parquet(out).columns[:2].tolist() == ["patient_id", "index_date"]
    assert "age_years" not in pd.read_parquet(out).columns
    assert (
        main(["cohort", "score", "--in", str(tmp_path / "missing.csv"), "--out", str(out), "--model", str(model_dir)])
        == 1
    )


def test_a_fhir_bulk_export_joined_with_a_features_table(model_dir: Path, tmp_path: Path) -> None:
    from clinical.bulk_generator import generate_bulk_export, read_truth

    export = generate_bulk_export(tmp_path / "export", patients=60, seed=3_131)
    truth = read_truth(export.truth_path)
    ids = sorted(truth)
    with_ct = ids[:30]
    features = pd.DataFrame(
        {
            "patient_id": [*with_ct, "not-in-the-export"],
            "index_date": [truth[i]["index_date"].isoformat() for i in with_ct] + ["2024-01-01"],
            "status": "ok",
            "l1_hu": np.linspace(60, 220, 31),
            "mean_hu_l1_l4": np.linspace(70, 230, 31),
        }
    )
    features.loc[len(features)] = {"patient_id": ids[40], "index_date": "2024-01-01", "status": "failed"}
    features.to_csv(tmp_path / "features.csv", index=False)
    out = tmp_path / "scores.parquet"
    summary = score_cohort(
        export.directory, out, model_dir=model_dir, features=tmp_path / "features.csv", workers=1, keep_work=True
    )
    assert (summary.rows, summary.scored, summary.no_record) == (31, 30, 1)
    scores = pd.read_parquet(out).set_index("patient_id")
    assert scores.loc["not-in-the-export", "status"] == "no_record"
    assert "PATIENT_NOT_FOUND" in scores.loc["not-in-the-export", "warnings"]
    assert np.isnan(scores.loc["not-in-the-export", "risk_mof_10y"])
    for k, patient in enumerate(with_ct):
        row = scores.loc[patient]
        assert row["index_date"].date() == truth[patient]["index_date"], "the CT date is the index date"
        assert row["mean_hu_l1_l4"] == pytest.approx(features.loc[k, "mean_hu_l1_l4"])
        born, index = truth[patient]["birth_date"], truth[patient]["index_date"]
        completed = index.year - born.year - ((index.month, index.day) < (born.month, born.day))
        assert row["age_years"] == pytest.approx(completed, abs=1.0), "clinical values come from the export"
        assert row["sex"] == truth[patient]["sex"]
        assert row["status"] == "scored" and 0 < row["risk_mof_10y"] < 1
    manifest = json.loads((tmp_path / "scores.parquet.work" / "manifest.json").read_text())
    assert manifest["staged"]["rows"] == 31, "the staged table is kept for a resume"

    one_date = score_cohort(
        export.directory,
        tmp_path / "all.parquet",
        model_dir=model_dir,
        features=tmp_path / "features.csv",
        index_date=pd.Timestamp("2026-06-30").date(),
        workers=1,
    )
    everyone = pd.read_parquet(tmp_path / "all.parquet")
    assert one_date.rows == 60 and set(everyone["patient_id"]) == set(ids)
    assert everyone["mean_hu_l1_l4"].notna().sum() == 30, "CTs on or before the index date are joined"
    with pytest.raises(CohortError, match="needs an index date") as info:
        score_cohort(export.directory, tmp_path / "x.parquet", model_dir=model_dir, workers=1)
    assert info.value.reason == "MISSING_INDEX_DATE"
    assert not (tmp_path / "x.parquet.work").exists(), "a run that made nothing leaves no work directory"


def test_a_features_table_fills_the_ct_columns_of_a_table(
    cohort: Path, scored: Path, model_dir: Path, tmp_path: Path
) -> None:
    table = pd.read_parquet(cohort).iloc[:1_200]
    ct = ["l1_hu", "mean_hu_l1_l4", "vbmd_l1_l2_mg_cm3", "hu_l1", "hu_l2", "hu_l3", "hu_l4", "genant_grade_max"]
    features = table[["patient_id", "index_date", *ct]].assign(status="ok")
    later = features.iloc[:5].assign(index_date=features["index_date"].iloc[:5] + pd.Timedelta(days=30), l1_hu=20.0)
    pd.concat([features, later]).to_csv(tmp_path / "features.csv", index=False)
    table.drop(columns=ct).to_parquet(tmp_path / "clinical.parquet", index=False)
    out = tmp_path / "joined.parquet"
    score_cohort(tmp_path / "clinical.parquet", out, model_dir=model_dir, workers=1, features=tmp_path / "features.csv")
    got = pd.read_parquet(out)
    expected = pd.read_parquet(scored).iloc[:1_200]
    columns = [c for c in expected.columns if c.startswith(("risk_", "flag_", "diagnosis_"))] + ct
    pd.testing.assert_frame_equal(got[columns], expected[columns], check_dtype=False, check_categorical=False)
