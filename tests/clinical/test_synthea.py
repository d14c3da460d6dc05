"""The shared Synthea bundles and HL7 R4 examples through the bundle source and build_record."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from clinical.errors import PatientDeceasedError
from clinical.extract import build_record
from clinical.sources.base import open_source, single_patient_id
from clinical.sources.bundle import BundleSource

SYNTHEA = {
    "keira": "fhir/synthea/Keira_Huel_279e1ce8-1a84-492b-bb78-b1d13a0d564c.json",
    "lonnie": "fhir/synthea/Lonnie_Von_28fbf0c8-5a9c-4781-b79f-f6118c3e2816.json",
    "willia": "fhir/synthea/Willia_Runolfsdottir_074c3873-c476-40e3-8046-f67372eb5e05.json",
    "fredrick": "fhir/synthea/Fredrick_Kris_ec6a5bb6-b412-4bb6-8219-11d66f52ae8b.json",
}


def _record(shared_data: Callable[[str], Path], name: str, index: date):  # type: ignore[no-untyped-def]
    source = open_source(shared_data(SYNTHEA[name]))
    return build_record(source, single_patient_id(source), index)


def test_willia_t_score_from_38265_5_and_osteoporosis(shared_data: Callable[[str], Path]) -> None:
    record = _record(shared_data, "willia", date(2013, 6, 1))
    v = record.variables
    assert v.dxa_t_score_min.value == pytest.approx(-2.5458885935054747)
    assert v.dxa_t_score_min.sources == ["Observation/b9d2c03e-d83c-45d3-93cc-88c325b7983c"]
    assert v.dxa_t_score_min.effective == date(2012, 11, 12)
    assert v.osteoporosis_diagnosis.value is True
    assert v.osteoporosis_treatment.value is True  # 904419 Alendronic acid 10 MG Oral Tablet
    assert v.sex.value == "female"
    assert v.age_years.value == 90.0  # born 1922-09-25
    assert v.weight_kg.value == pytest.approx(83.45666655667787)
    assert v.height_cm.value == pytest.approx(166.12827678650518)
    assert v.bmi_kg_m2.value == pytest.approx(30.23945178683046)
    assert v.bmi_kg_m2.status == "observed"
    assert v.current_smoker.value is False


def test_willia_before_the_dxa_has_no_t_score_and_no_diagnosis(shared_data: Callable[[str], Path]) -> None:
    record = _record(shared_data, "willia", date(2012, 11, 11))
    assert record.variables.dxa_t_score_min.is_missing
    assert record.variables.osteoporosis_diagnosis.value is False
    assert record.variables.osteoporosis_treatment.value is False


def test_keira_hip_fracture_before_death(shared_data: Callable[[str], Path]) -> None:
    record = _record(shared_data, "keira", date(2003, 6, 1))
    v = record.variables
    assert v.prior_hip_fracture.value is True
    assert "Condition/c4987b36-a8f2-4da1-b6c6-4cdd5fb95c95" in v.prior_hip_fracture.sources  # 359817006
    assert v.prior_fragility_fracture.value is True
    assert v.recent_fracture_2y.value is True
    assert v.prior_vertebral_fracture.value is False
    assert v.osteoporosis_diagnosis.value is True  # 64859006 since 1986
    assert v.age_years.value == 76.0  # born 1926-06-06
    assert v.weight_kg.value == pytest.approx(80.72859382086419)
    assert v.weight_kg.effective == date(2002, 12, 15)


def test_keira_died_on_2003_07_03(shared_data: Callable[[str], Path]) -> None:
    source = open_source(shared_data(SYNTHEA["keira"]))
    with pytest.raises(PatientDeceasedError, match="2003-07-03"):
        build_record(source, single_patient_id(source), date(2003, 7, 3))
    build_record(source, single_patient_id(source), date(2003, 7, 2))


def test_lonnie_forearm_fracture_osteoporosis_and_childhood_fracture_ignored(
    shared_data: Callable[[str], Path],
) -> None:
    record = _record(shared_data, "lonnie", date(2021, 6, 1))
    v = record.variables
    assert v.prior_fragility_fracture.value is True
    assert v.recent_fracture_2y.value is True
    assert v.prior_hip_fracture.value is False
    assert v.osteoporosis_diagnosis.value is True
    assert v.osteoporosis_treatment.effective == date(2011, 3, 24)
    assert any("age 5" in w for w in record.warnings)  # 1955 forearm fracture, aged 5
    before = _record(shared_data, "lonnie", date(2021, 2, 11))
    assert before.variables.prior_fragility_fracture.value is False


def test_fredrick_clavicle_fracture_at_36_is_not_fragility(shared_data: Callable[[str], Path]) -> None:
    record = _record(shared_data, "fredrick", date(2019, 6, 1))
    assert record.variables.prior_fragility_fracture.value is False
    assert record.variables.age_years.value == 38.0
    assert record.variables.bmi_kg_m2.value == pytest.approx(29.121749985116693)


def test_lookback_window_makes_old_measures_missing(shared_data: Callable[[str], Path]) -> None:
    record = _record(shared_data, "willia", date(2030, 1, 1))  # last visit 2016: weight older than 2 years
    assert record.variables.weight_kg.is_missing
    assert any("weight_kg" in w for w in record.warnings)


def test_hl7_examples_weight_in_pounds_and_height_in_inches(shared_data: Callable[[str], Path]) -> None:
    folder = shared_data("fhir/hl7-r4-examples")
    patient = json.loads((folder / "Patient-example.json").read_text())
    entries = [{"resource": patient}]
    for name in ("Observation-example.json", "Observation-body-height.json", "Observation-bmi.json"):
        resource = json.loads((folder / name).read_text())
        resource["effectiveDateTime"] = "2016-03-28"  # the examples are years apart; put them on one day
        entries.append({"resource": resource})
    source = BundleSource({"resourceType": "Bundle", "type": "collection", "entry": entries})
    record = build_record(source, "example", date(2016, 6, 1))
    assert record.variables.weight_kg.value == pytest.approx(185 * 0.45359237)
    assert record.variables.height_cm.value == pytest.approx(66.9 * 2.54)
    assert record.variables.bmi_kg_m2.value == pytest.approx(16.2)
    assert any("disagrees" in w for w in record.warnings)  # 16.2 recorded vs ~29 from weight/height
    assert record.variables.age_years.value == 41.0
