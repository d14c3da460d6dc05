"""The cohort report (`fusion.cohort.report`, `osteorisk cohort report`): its tables against lifelines and the
metrics module, one self-contained HTML file with embedded PNGs, and clear refusals."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import AalenJohansenFitter, KaplanMeierFitter

from fusion.cohort.report import (
    build_report,
    cumulative_incidence_curve,
    incidence_by_group,
    kaplan_meier_curve,
    numbers_at_risk,
    risk_groups,
)
from fusion.cohort.scoring import score_cohort
from fusion.cohort_table import write_cohort
from fusion.errors import CohortError
from fusion.synth import synth_cohort
from tests.fusion.model_helpers import trained_model_dir


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    model = trained_model_dir(root, bootstrap=4, n=2000)
    write_cohort(synth_cohort(4_000, 6_161, truth=False).table, root / "cohort.parquet")
    score_cohort(root / "cohort.parquet", root / "scores.parquet", model_dir=model, workers=1, chunk_rows=1_500)
    return root / "scores.parquet"


def test_the_report_is_one_self_contained_html_file_with_its_figures(scored: Path, tmp_path: Path) -> None:
    summary = build_report(scored, tmp_path / "out", cox_max_rows=2_000)
    page = summary.html.read_text(encoding="utf-8")
    assert summary.rows == summary.analysed == 4_000
    names = [p.name for p in summary.figures]
    for expected in (
        "risk_mof",
        "flag_prevalence",
        "missingness",
        "km_mof_by_group",
        "cif_mof_by_group",
        "cif_hip_by_group",
        "cif_mof_by_flag",
        "hazard_ratios",
        "calibration_mof",
        "calibration_hip",
    ):
        assert any(expected in n for n in names), expected
    for figure in summary.figures:
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.count('src="data:image/png;base64,') == len(summary.figures)
    assert not re.search(r"""(src|href)=["'](https?:|//|file:)""", page), "no external assets"
    assert "<script" not in page and "NOT FOR CLINICAL USE" in page
    assert "S6161-" not in page, "no patient identifiers in the report"
    for heading in (
        "Survival by predicted risk group",
        "Hazard ratios (Cox)",
        "Calibration at 10 years",
        "Missing inputs",
        "Survival by screening flag",
    ):
        assert heading in page
    assert "Cox models fitted on a random sample of 2,000 of 4,000 patients" in page


def test_groups_and_curves_agree_with_lifelines_and_the_metrics(scored: Path) -> None:
    data = pd.read_parquet(scored)
    risk = data["risk_mof_10y"].to_numpy()
    groups = risk_groups(risk, "tertiles")
    counts = pd.Series(np.asarray(groups)).value_counts()
    assert sorted(counts.tolist()) == [1333, 1333, 1334]
    low, high = (np.asarray(groups) == groups.categories[0]), (np.asarray(groups) == groups.categories[2])
    assert risk[low].max() < risk[high].min()
    treatment = risk_groups(risk, "treatment", threshold=0.2)
    assert (
        list(treatment.categories) == ["< 20%", ">= 20%"]
        and (np.asarray(treatment) == ">= 20%").sum() == (risk >= 0.2).sum()
    )

    time, event = data["time_years"].to_numpy(), data["event"].to_numpy().astype(float)
    grid = np.array([1.0, 2.5, 5.0, 9.0])
    km = kaplan_meier_curve(time, (event == 1).astype(float), grid=grid)
    reference = KaplanMeierFitter().fit(time, event == 1)
    np.testing.assert_allclose(km["estimate"], reference.survival_function_at_times(grid).to_numpy())
    cif = cumulative_incidence_curve(time, event, cause=1, grid=grid)
    jitter_free = AalenJohansenFitter(calculate_variance=False, seed=0).fit(
        time + 1e-9 * np.arange(len(time)), event, 1
    )
    np.testing.assert_allclose(cif["estimate"], jitter_free.predict(grid).to_numpy(), atol=2e-3)
    assert (cif["lo"] <= cif["estimate"]).all() and (cif["estimate"] <= cif["hi"]).all()
    table = incidence_by_group(time, event, groups, risk, horizon=10)
    assert table["patients"].sum() == len(data) and table["observed"].is_monotonic_increasing
    assert numbers_at_risk(np.array([0.5, 1.0, 2.0, 3.0]), [0, 1, 2.5]) == [4, 3, 1]


def test_a_file_without_outcomes_gets_the_distributions_and_a_note(scored: Path, tmp_path: Path) -> None:
    data = pd.read_parquet(scored).drop(columns=["time_years", "event", "hip_time_years", "hip_event"])
    data.to_parquet(tmp_path / "no_outcomes.parquet", index=False)
    summary = build_report(tmp_path / "no_outcomes.parquet", tmp_path / "out")
    page = summary.html.read_text(encoding="utf-8")
    assert "Hazard ratios" not in page and "No outcome columns" in page
    assert any("risk_mof" in p.name for p in summary.figures)
    assert "no model metadata" in page


def test_bad_report_inputs_are_refused(scored: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        build_report(tmp_path / "none.parquet", tmp_path / "out")
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(CohortError, match="not a Parquet file"):
        build_report(tmp_path / "text.parquet", tmp_path / "out")
    pd.DataFrame({"patient_id": ["a"], "age_years": [60.0]}).to_parquet(tmp_path / "raw.parquet")
    with pytest.raises(CohortError, match="is it the output of `cohort score`") as info:
        build_report(tmp_path / "raw.parquet", tmp_path / "out")
    assert info.value.reason == "NOT_SCORED"
    with pytest.raises(CohortError, match=r"no predictions at 3 years in the file \(available: 1, 2, 5, 10\)"):
        build_report(scored, tmp_path / "out", horizon=3)
    with pytest.raises(CohortError, match="treatment groups are defined on 10-year risk"):
        build_report(scored, tmp_path / "out", horizon=5, groups="treatment")


def test_the_cli_writes_the_report(scored: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from server.cli.main import main

    code = main(
        [
            "cohort",
            "report",
            "--in",
            str(scored),
            "--out",
            str(tmp_path / "r"),
            "--groups",
            "treatment",
            "--horizon",
            "10",
            "--cox-max-rows",
            "3000",
        ]
    )
    assert code == 0
    assert "report.html" in capsys.readouterr().out
    page = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    assert "risk group &gt;= 20% vs &lt; 20%" in page


def test_the_vectorised_band_is_the_metrics_interval_at_every_time(scored: Path) -> None:
    from fusion.metrics import aalen_johansen

    data = pd.read_parquet(scored)
    time, event = data["hip_time_years"].to_numpy(), data["hip_event"].to_numpy().astype(float)
    grid = np.array([0.0, 0.01, 0.7, 1.0, 3.3, 6.0, 9.99, 10.0, 11.5, 40.0])
    curve = cumulative_incidence_curve(time, event, cause=1, grid=grid)
    aj = aalen_johansen(time, event, cause=1)
    for t, lo, hi in zip(grid, curve["lo"], curve["hi"], strict=True):
        assert (lo, hi) == pytest.approx(aj.confidence_interval(float(t)), abs=1e-10)
    death = cumulative_incidence_curve(time, event, cause=2, grid=grid)
    assert death["estimate"].iloc[-1] == pytest.approx(float(aalen_johansen(time, event, cause=2)(40.0)))
