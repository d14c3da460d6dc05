"""The canonical cohort table: spec, dtypes, validation errors, Parquet/CSV round trips, column maps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fusion.cohort_table import (
    canonical_feature_names,
    column_spec,
    column_specs,
    describe_columns,
    feature_columns,
    read_cohort,
    required_columns,
    true_risk_column,
    truth_columns,
    validate_cohort,
    write_cohort,
)
from fusion.errors import CohortError


def _table(n: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    event = np.array([0, 1, 2, 1, 0, 2][:n])
    time = rng.uniform(0.5, 10, n)
    hip_event = np.where(event == 1, np.array([0, 1, 0, 0, 0, 0][:n]), event)
    hip_time = np.where(event == 2, time, time + np.where(hip_event == 1, 0.0, 1.0))
    return pd.DataFrame(
        {
            "patient_id": [f"P{i:03d}" for i in range(n)],
            "index_date": ["2020-01-0" + str(i + 1) for i in range(n)],
            "age_years": rng.uniform(50, 80, n),
            "sex": ["female", "male", "F", "M", "Female", "female"][:n],
            "bmi_kg_m2": rng.uniform(20, 30, n),
            "current_smoker": [0, 1, None, 0, 1, 0][:n],
            "dxa_t_score_min": [-3.0, -1.0, None, -2.5, 0.5, None][:n],
            "l1_hu": rng.uniform(60, 220, n),
            "time_years": time,
            "event": event,
            "hip_time_years": hip_time,
            "hip_event": hip_event,
            "site_label": ["a"] * n,
        }
    )


def test_spec_lists_every_design_column() -> None:
    specs = column_specs()
    for name in (
        "patient_id", "index_date", "age_years", "sex", "weight_kg", "height_cm", "bmi_kg_m2",
        "prior_fragility_fracture", "dxa_t_score_min", "l1_hu", "mean_hu_l1_l4", "vbmd_l1_l2_mg_cm3",
        "hu_l1", "hu_l2", "hu_l3", "hu_l4", "time_years", "event", "hip_time_years", "hip_event", "osteoporosis",
    ):  # fmt: skip
        assert name in specs, name
    assert specs["event"].values == (0, 1, 2)
    assert specs["l1_hu"].role == "feature" and specs["l1_hu"].source == "imaging"
    assert column_spec("true_risk_hip_2.5y") is not None and column_spec("true_risk_hip_2.5y").role == "truth"  # type: ignore[union-attr]
    assert column_spec("FRACTURE") is None
    assert true_risk_column("mof", 10.0) == "true_risk_mof_10y"
    assert required_columns("survival") == ("patient_id", "time_years", "event", "hip_time_years", "hip_event")
    assert list(describe_columns(["age_years"])["unit"]) == ["a"]


def test_clinical_feature_names_match_the_clinical_record() -> None:
    from clinical.types import ClinicalVariables

    clinical = [n for n in canonical_feature_names() if column_specs()[n].source in ("clinical", "dxa")]
    assert set(clinical) == set(ClinicalVariables.names())


def test_validate_coerces_dtypes_and_derives_the_label() -> None:
    table = validate_cohort(_table(), require=("survival", "diagnosis"))
    assert table["index_date"].dtype == "datetime64[ns]"
    assert list(table["sex"].astype(str)) == ["female", "male", "female", "male", "female", "female"]
    assert str(table["current_smoker"].dtype) == "Int8" and table["current_smoker"].isna().sum() == 1
    assert str(table["event"].dtype) == "Int8"
    assert table["osteoporosis"].tolist()[:2] == [1, 0] and table["osteoporosis"].tolist()[3] == 1
    assert pd.isna(table["osteoporosis"].iloc[2])
    assert table["site_label"].tolist() == ["a"] * 6  # unknown columns are kept
    assert feature_columns(table) == ["age_years", "sex", "bmi_kg_m2", "current_smoker", "dxa_t_score_min", "l1_hu"]
    assert truth_columns(table) == []


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("time_years", -1.0, "'time_years': 1 of 6 rows lie outside the allowed range [0, 100]"),
        ("event", 3, "'event': 1 of 6 rows hold an unknown event code"),
        ("age_years", "sixty", "'age_years': 1 of 6 rows are not numbers"),
        ("sex", "x", "'sex': 1 of 6 rows hold unknown values"),
        ("current_smoker", 2, "'current_smoker': 1 of 6 rows are not 0/1"),
        ("l1_hu", np.inf, "'l1_hu': 1 of 6 rows are infinite"),
        ("index_date", "yesterday", "'index_date': 1 of 6 rows are not dates"),
        ("patient_id", "", "'patient_id': 1 of 6 rows are empty"),
    ],
)
def test_bad_values_name_column_count_and_row(column: str, value: object, message: str) -> None:
    table = _table().astype({column: object})
    table.loc[4, column] = value
    with pytest.raises(CohortError, match="row 4") as info:
        validate_cohort(table, require="survival")
    assert message in str(info.value)


def test_units_hint_and_missing_columns() -> None:
    table = _table()
    table["height_cm"] = 1.65
    with pytest.raises(CohortError, match="look like metres"):
        validate_cohort(table)
    with pytest.raises(CohortError, match=r"needs the columns .* missing: hip_event"):
        validate_cohort(_table().drop(columns="hip_event"), require="hip")
    with pytest.raises(CohortError, match="no canonical feature column"):
        validate_cohort(pd.DataFrame({"patient_id": ["a"], "x": [1]}))
    incomplete = _table()
    incomplete.loc[2, "event"] = None
    with pytest.raises(CohortError, match="'event': 1 of 6 rows are missing"):
        validate_cohort(incomplete, require="mof")
    validate_cohort(incomplete, require="features")  # outcomes are optional for scoring


def test_inconsistent_outcomes_and_duplicates_are_refused() -> None:
    hip_without_mof = _table()
    hip_without_mof.loc[0, "hip_event"] = 1
    with pytest.raises(CohortError, match="hip fracture without a major osteoporotic fracture"):
        validate_cohort(hip_without_mof, require="survival")
    death_mismatch = _table()
    death_mismatch.loc[2, "hip_time_years"] += 1
    with pytest.raises(CohortError, match="death without fracture"):
        validate_cohort(death_mismatch, require="survival")
    duplicate = pd.concat([_table(), _table().iloc[[1]]], ignore_index=True)
    with pytest.raises(CohortError, match="'patient_id': 1 of 7 rows repeat"):
        validate_cohort(duplicate)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".tsv"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    table = validate_cohort(_table(), require="survival")
    path = write_cohort(table, tmp_path / f"cohort{suffix}")
    back = read_cohort(path, require="survival")
    pd.testing.assert_frame_equal(back[table.columns], table, check_exact=False, rtol=1e-9)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(CohortError, match="unknown cohort file type"):
        read_cohort(tmp_path / "cohort.xlsx")
    with pytest.raises(FileNotFoundError):
        read_cohort(tmp_path / "absent.csv")
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(CohortError, match="cannot read as parquet"):
        read_cohort(corrupt)
    empty = tmp_path / "empty.csv"
    empty.write_text("patient_id,age_years\n")
    with pytest.raises(CohortError, match="no rows"):
        read_cohort(empty)


def test_column_map_reads_glow500(shared_data: Callable[[str], Path]) -> None:
    path = shared_data("tabular/glow/glow500.csv")
    mapping = {
        "SUB_ID": "patient_id",
        "AGE": "age_years",
        "WEIGHT": "weight_kg",
        "HEIGHT": "height_cm",
        "BMI": "bmi_kg_m2",
        "PRIORFRAC": "prior_fragility_fracture",
        "MOMFRAC": "parental_hip_fracture",
        "SMOKE": "current_smoker",
    }
    glow = read_cohort(path, column_map=mapping)
    assert len(glow) == 500
    assert glow["patient_id"].iloc[0] == "1"
    assert str(glow["prior_fragility_fracture"].dtype) == "Int8"
    assert int(glow["FRACTURE"].sum()) == 125  # foreign label carried through untouched
    assert feature_columns(glow)[:4] == ["age_years", "weight_kg", "height_cm", "bmi_kg_m2"]
    with pytest.raises(CohortError, match="column_map names columns the table lacks: 'NOPE'"):
        read_cohort(path, column_map={"NOPE": "age_years"})
    with pytest.raises(CohortError, match="would overwrite existing columns"):
        validate_cohort(_table(), column_map={"l1_hu": "age_years"})
