"""Model directories: hashes verified before anything is parsed, safe formats only, byte-identical rebuilds,
and `LoadedModel.predict_frame` as the cohort engineer and the service call it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fusion.artifacts import MANIFEST, MODEL_JSON, LoadedModel, load_model
from fusion.bundled import MODEL_DIR_ENV, build_default_model, default_model_dir
from fusion.errors import ModelArtifactError, ModelInputError
from tests.fusion.model_helpers import small_cohort, trained_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_model_dir(tmp_path_factory.mktemp("artifacts"), bootstrap=6)


@pytest.fixture(scope="module")
def model(model_dir: Path) -> LoadedModel:
    return load_model(model_dir)


def _copy(model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(model_dir, target)
    return target


def test_manifest_lists_every_file_with_its_hash(model_dir: Path, model: LoadedModel) -> None:
    card = json.loads((model_dir / MANIFEST).read_text())
    assert set(card["files"]) == {p.name for p in model_dir.iterdir()} - {MANIFEST}
    assert card["kind"] == "cox" and card["not_for_clinical_use"] is True
    assert [f["name"] for f in card["features"]][:2] == ["age_years", "sex"]
    assert all("unit" in f and "impute_value" in f for f in card["features"])
    assert card["features"][0]["required"] is True
    assert card["training_data_sha256"] and len(model.sha256) == 64
    assert model.outcomes == ("major_osteoporotic_fracture", "hip_fracture")
    assert model.diagnosis is not None and card["diagnosis_features"]
    assert 0.6 < card["metrics"]["diagnosis_cv_auc_osteoporosis"] <= 1.0


def test_a_modified_file_is_refused_before_parsing(model_dir: Path, tmp_path: Path) -> None:
    copy = _copy(model_dir, tmp_path)
    data = json.loads((copy / MODEL_JSON).read_text())
    data["outcomes"]["major_osteoporotic_fracture"]["model"]["coef"][0][0] += 0.5
    (copy / MODEL_JSON).write_text(json.dumps(data))
    with pytest.raises(ModelArtifactError, match="does not match the manifest") as info:
        load_model(copy)
    assert info.value.reason == "HASH_MISMATCH"


def test_an_unlisted_or_missing_file_is_refused(model_dir: Path, tmp_path: Path) -> None:
    copy = _copy(model_dir, tmp_path)
    (copy / "extra.pkl").write_bytes(b"\x80\x04not a model")
    with pytest.raises(ModelArtifactError, match=r"not listed in the manifest: extra\.pkl"):
        load_model(copy)
    (copy / "extra.pkl").unlink()
    (copy / MODEL_JSON).unlink()
    with pytest.raises(ModelArtifactError, match="missing"):
        load_model(copy)


def test_bad_manifests_and_directories_are_refused(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelArtifactError, match="not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelArtifactError, match=r"no manifest\.json"):
        load_model(tmp_path / "empty")
    copy = _copy(model_dir, tmp_path)
    (copy / MANIFEST).write_text("{not json")
    with pytest.raises(ModelArtifactError, match="not a valid model card"):
        load_model(copy)
    card = json.loads((model_dir / MANIFEST).read_text())
    card["files"]["../escape.json"] = "0" * 64
    (copy / MANIFEST).write_text(json.dumps(card))
    with pytest.raises(ModelArtifactError, match="invalid file name"):
        load_model(copy)


def test_a_consistent_but_malformed_model_file_is_an_artifact_error(model_dir: Path, tmp_path: Path) -> None:
    import hashlib

    copy = _copy(model_dir, tmp_path)
    (copy / MODEL_JSON).write_text(json.dumps({"format": "osteorisk.model/1", "kind": "cox"}))
    card = json.loads((copy / MANIFEST).read_text())
    card["files"][MODEL_JSON] = hashlib.sha256((copy / MODEL_JSON).read_bytes()).hexdigest()
    (copy / MANIFEST).write_text(json.dumps(card))
    with pytest.raises(ModelArtifactError, match="malformed"):
        load_model(copy)


def test_writing_refuses_to_clobber_a_foreign_directory(model_dir: Path, tmp_path: Path) -> None:
    from fusion.artifacts import write_model_dir

    foreign = tmp_path / "data"
    foreign.mkdir()
    (foreign / "precious.csv").write_text("x")
    card = load_model(model_dir).card
    with pytest.raises(ModelArtifactError, match="refusing to overwrite"):
        write_model_dir(foreign, card, {MODEL_JSON: b"{}"})
    assert (foreign / "precious.csv").exists()


def test_rebuilding_gives_byte_identical_files(tmp_path: Path) -> None:
    """The bundled model's code path at small n: same seed -> same bytes -> same manifest hash."""
    first = build_default_model(n=2500, seed=77, bootstrap=4, heldout_n=1500).save(tmp_path / "a")
    second = build_default_model(n=2500, seed=77, bootstrap=4, heldout_n=1500).save(tmp_path / "b")
    for name in sorted(p.name for p in first.iterdir()):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    a, b = load_model(first), load_model(second)
    assert a.sha256 == b.sha256
    assert a.card.created.year == 1970 or a.card.created == b.card.created
    assert "synthetic" in a.card.trained_on and "NOT FOR CLINICAL USE" in a.card.intended_use
    assert a.card.not_for_clinical_use
    assert a.card.metrics["heldout_seed"] == 78 and 0.5 < a.card.metrics["heldout_harrell_c_hip_10y"] < 1
    assert "heldout_oracle_harrell_c_mof_10y" in a.card.metrics and "heldout_oe_mof_10y" in a.card.metrics


def test_default_model_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)
    assert default_model_dir().parts[-2:] == ("models", "default")
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    assert default_model_dir() == tmp_path


def test_predict_frame_columns_and_warnings(model: LoadedModel) -> None:
    cohort = small_cohort().head(40).copy()
    cohort.loc[cohort.index[0], "mean_hu_l1_l4"] = np.nan
    out = model.predict_frame(cohort, horizons=(1, 2.5, 10))
    expected = ["patient_id"]
    for prefix in ("mof", "hip"):
        for h in ("1", "2.5", "10"):
            expected += [f"risk_{prefix}_{h}y", f"risk_{prefix}_{h}y_lo", f"risk_{prefix}_{h}y_hi"]
    assert list(out.columns) == [*expected, "warnings"]
    assert list(out["patient_id"]) == list(cohort["patient_id"])
    assert "mean_hu_l1_l4" in out["warnings"].iloc[0]
    risks = out[[c for c in out.columns if c.startswith("risk_")]].to_numpy()
    assert np.all((risks >= 0) & (risks <= 1))
    assert np.all(out["risk_mof_1y"] <= out["risk_mof_10y"])
    assert np.all((out["risk_mof_10y_lo"] <= out["risk_mof_10y"]) & (out["risk_mof_10y"] <= out["risk_mof_10y_hi"]))


def test_predict_frame_agrees_with_the_per_patient_path(model: LoadedModel) -> None:
    cohort = small_cohort().head(5)
    out = model.predict_frame(cohort)
    from fusion.features import frame_features

    raw = frame_features(cohort, model.plan.names)
    for i in range(5):
        values = {n: (None if np.isnan(v) else float(v)) for n, v in zip(model.plan.names, raw[i], strict=True)}
        est, _, hi = model.predict_patient(values, (1, 2, 5, 10)).risks["hip_fracture"]
        assert out["risk_hip_5y"].iloc[i] == pytest.approx(est[2], rel=1e-12)
        assert out["risk_hip_5y_hi"].iloc[i] == pytest.approx(hi[2], rel=1e-12)


def test_invalid_rows_are_refused_or_skipped_with_a_reason(model: LoadedModel) -> None:
    cohort = small_cohort().head(6).copy()
    cohort["mean_hu_l1_l4"] = cohort["mean_hu_l1_l4"].astype(float)
    cohort.loc[cohort.index[1], "mean_hu_l1_l4"] = 5000.0
    cohort.loc[cohort.index[2], "age_years"] = np.nan
    with pytest.raises(ModelInputError, match="2 of 6 rows cannot be scored"):
        model.predict_frame(cohort)
    out = model.predict_frame(cohort, skip_invalid=True)
    assert np.isnan(out["risk_mof_10y"].iloc[1]) and "mean_hu_l1_l4 = 5000" in out["warnings"].iloc[1]
    assert "age_years required but missing" in out["warnings"].iloc[2]
    assert out["risk_mof_10y"].iloc[[0, 3, 4, 5]].notna().all()
    with pytest.raises(ModelInputError, match="horizons"):
        model.predict_frame(cohort.iloc[[0]], horizons=(15,))


def test_large_frames_are_scored_in_parallel_chunks_identically(model: LoadedModel) -> None:
    cohort = pd.concat([small_cohort()] * 7, ignore_index=True)  # 21,000 rows > one chunk
    out = model.predict_frame(cohort, horizons=(10,))
    single = model.predict_frame(cohort.tail(3), horizons=(10,))
    np.testing.assert_allclose(out["risk_mof_10y_hi"].tail(3), single["risk_mof_10y_hi"], rtol=1e-12)
