"""A synthetic FHIR Bulk Data export with known truth per patient, for tests and benchmarks.

    python -m clinical.bulk_generator --patients 10000 --out DIR --seed 7 [--gzip] [--files-per-type 3]

writes `Patient.ndjson`, `Observation.ndjson` (weight, height, BMI in kg / g / [lb_av], cm / [in_i];
smoking status; DXA T-scores; blood pressure and heart rate as noise), `Condition.ndjson` (hip,
vertebral, forearm and humerus fractures in SNOMED CT or ICD-10-CM, falls, rheumatoid arthritis,
osteoporosis, hypertension as noise), `MedicationRequest.ndjson` (prednisone courses and bursts,
alendronate, some by `medicationReference`), `Medication.ndjson` and `FamilyMemberHistory.ndjson`, plus
`truth.csv`: one row per patient with its index date and the value every extracted variable must have at
that date. (With `--files-per-type K`, each type is split over `Type.000.ndjson` ... like real exports.)

The data carries the traps an extraction must handle: values after the index date (a later weight, a
later fracture), stale values outside look-back windows (an old weight, an old fall), superseded smoking
answers, an entered-in-error fracture, a sibling's (not a parent's) hip fracture, short glucocorticoid
bursts that do not meet the 3-month rule, and unit conversions. Dates keep clear of window edges (at
least 10 days inside or 30 days outside), so the truth does not depend on how a boundary day is counted.

The codes come from `clinical/data/bulk_generator.json` (with their sources), chosen independently of the
extraction's code lists, so that extraction-versus-truth tests check the code lists too. Windows follow
`clinical/data/rules.json` (weight/height/BMI/smoking 730 days, DXA 1825 days, falls 365 days, recent
fracture 730 days, glucocorticoids >= 90 days at >= 5 mg/day). Same seed, same export, byte for byte.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO, Final

import numpy as np
import orjson

TRUTH_COLUMNS: Final = (
    "patient_id",
    "index_date",
    "birth_date",
    "sex",
    "weight_kg",
    "height_cm",
    "bmi_kg_m2",
    "current_smoker",
    "dxa_t_score_min",
    "prior_fragility_fracture",
    "prior_hip_fracture",
    "prior_vertebral_fracture",
    "recent_fracture_2y",
    "falls_last_12m",
    "parental_hip_fracture",
    "glucocorticoids",
    "rheumatoid_arthritis",
    "osteoporosis_diagnosis",
    "osteoporosis_treatment",
    "n_resources",
)
RESOURCE_TYPES: Final = ("Patient", "Observation", "Condition", "MedicationRequest", "FamilyMemberHistory")
_UCUM: Final = "http://unitsofmeasure.org"
_ALENDRONATE_MEDICATION_ID: Final = "alendronate-70mg-tablet"


@cache
def vocabulary() -> dict[str, Any]:
    """The generator's codes, units and prevalences (`clinical/data/bulk_generator.json`)."""
    text = resources.files("clinical.data").joinpath("bulk_generator.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@dataclass(frozen=True)
class GeneratedExport:
    """Where the export went and what it holds."""

    directory: Path
    truth_path: Path
    patients: int
    resources: int
    files: tuple[Path, ...]


@dataclass
class _Patient:
    """One synthetic patient under construction: its resources and the truth at its index date."""

    patient_id: str
    index_date: date
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    truth: dict[str, Any] = field(default_factory=dict)

    def add(self, resource: dict[str, Any]) -> None:
        self.resources.setdefault(resource["resourceType"], []).append(resource)


class _Builder:
    """Draws one patient at a time from a seeded generator."""

    def __init__(self, seed: int, start: date, end: date) -> None:
        self.rng = np.random.default_rng(seed)
        self.vocab = vocabulary()
        self.p: dict[str, float] = {k: v for k, v in self.vocab["prevalence"].items() if k != "why"}
        self.start = start
        self.span_days = (end - start).days
        self.osteoporotic_fracture = False

    # small helpers --------------------------------------------------------------------------------------
    def _uuid(self) -> str:
        h = self.rng.bytes(16).hex()
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"

    def _chance(self, name: str) -> bool:
        return bool(self.rng.random() < self.p[name])

    def _days(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def _coding(self, concept: str) -> dict[str, Any]:
        options = self.vocab["concepts"][concept]
        return dict(options[int(self.rng.integers(len(options)))])

    def _quantity(self, value: float, unit: str) -> dict[str, Any]:
        spec = self.vocab["units"][unit]
        return {"value": value, "unit": spec["unit"], "system": spec["system"], "code": spec["code"]}

    @staticmethod
    def _when(day: date) -> str:
        return f"{day.isoformat()}T09:30:00Z"

    def _observation(self, patient: _Patient, concept: str, day: date, **value: Any) -> dict[str, Any]:
        category = (
            "vital-signs"
            if concept in ("weight", "height", "bmi", "blood_pressure", "heart_rate")
            else {"smoking_status": "social-history", "falls_screening": "survey"}.get(concept, "imaging")
        )
        resource = {
            "resourceType": "Observation",
            "id": self._uuid(),
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": category,
                        }
                    ]
                }
            ],
            "code": {"coding": [self._coding(concept)]},
            "subject": {"reference": f"Patient/{patient.patient_id}"},
            "effectiveDateTime": self._when(day),
            **value,
        }
        patient.add(resource)
        return resource

    def _condition(
        self, patient: _Patient, concept: str, onset: date, *, verification: str = "confirmed", active: bool = False
    ) -> dict[str, Any]:
        coding = self._coding(concept)
        patient.add(
            {
                "resourceType": "Condition",
                "id": self._uuid(),
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": "active" if active else "resolved",
                        }
                    ]
                },
                "verificationStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                            "code": verification,
                        }
                    ]
                },
                "code": {"coding": [coding]},
                "subject": {"reference": f"Patient/{patient.patient_id}"},
                "onsetDateTime": self._when(onset),
                "recordedDate": self._when(onset),
            }
        )
        return coding

    # one patient ----------------------------------------------------------------------------------------
    def patient(self) -> _Patient:
        index = self.start + timedelta(days=self._days(0, self.span_days))
        patient = _Patient(self._uuid(), index)
        age_days = self._days(45 * 365 + 20, 90 * 365 - 20)
        birth = index - timedelta(days=age_days)
        female = self._chance("female")
        patient.add(
            {
                "resourceType": "Patient",
                "id": patient.patient_id,
                "gender": "female" if female else "male",
                "birthDate": birth.isoformat(),
                "name": [{"family": "Synthetic", "given": [f"Case{self._days(0, 10**6)}"]}],
            }
        )
        patient.truth.update(
            patient_id=patient.patient_id,
            index_date=index.isoformat(),
            birth_date=birth.isoformat(),
            sex="female" if female else "male",
        )
        self._body_measures(patient, female)
        self._smoking(patient)
        self._dxa(patient)
        self._fractures(patient, birth)
        self._falls(patient)
        self._family_history(patient)
        self._chronic_conditions(patient)
        self._medications(patient)
        self._noise(patient)
        self._absence_is_unknown(patient)
        patient.truth["n_resources"] = sum(len(v) for v in patient.resources.values())
        return patient

    @staticmethod
    def _absence_is_unknown(patient: _Patient) -> None:
        """A record without any Condition (MedicationRequest) cannot say a diagnosis (drug) is absent."""
        for resource_type, columns in (
            (
                "Condition",
                (
                    "prior_fragility_fracture",
                    "prior_hip_fracture",
                    "prior_vertebral_fracture",
                    "recent_fracture_2y",
                    "rheumatoid_arthritis",
                    "osteoporosis_diagnosis",
                ),
            ),
            ("MedicationRequest", ("glucocorticoids", "osteoporosis_treatment")),
        ):
            if not patient.resources.get(resource_type):
                for column in columns:
                    if patient.truth[column] is False:
                        patient.truth[column] = None

    def _body_measures(self, patient: _Patient, female: bool) -> None:
        index = patient.index_date
        truth = patient.truth
        truth.update(weight_kg=None, height_cm=None, bmi_kg_m2=None)
        if not self._chance("has_body_measures"):
            return
        height_cm = float(self.rng.normal(162 if female else 176, 7))
        weight_kg = float(np.clip(self.rng.normal(68 if female else 82, 13), 38, 160))
        recent = self.rng.random() < 0.9
        offsets = (
            sorted({self._days(10, 700) for _ in range(self._days(1, 3))}, reverse=True)
            if recent
            else [self._days(800, 1600)]
        )
        bmi_observed = self._chance("bmi_observed")
        latest: tuple[float, float, float | None] | None = None
        for offset in offsets:
            day = index - timedelta(days=offset)
            w = round(weight_kg + float(self.rng.normal(0, 1.5)), 1)
            h = round(height_cm, 1)
            self._weight(patient, day, w)
            self._height(patient, day, h)
            bmi = None
            if bmi_observed:
                bmi = round(w / (h / 100) ** 2, 1)
                self._observation(patient, "bmi", day, valueQuantity=self._quantity(bmi, "kg/m2"))
            latest = (w, h, bmi)  # offsets descend: the last one is the most recent
        if self.rng.random() < 0.4:  # a later measurement the extraction must not see
            day = index + timedelta(days=self._days(30, 400))
            self._weight(patient, day, round(weight_kg + 12.0, 1))
        if recent and latest is not None:
            w, h, bmi = latest
            truth.update(weight_kg=w, height_cm=h, bmi_kg_m2=bmi if bmi is not None else round(w / (h / 100) ** 2, 2))

    def _weight(self, patient: _Patient, day: date, kg: float) -> None:
        draw = self.rng.random()
        if draw < 0.8:
            quantity = self._quantity(kg, "kg")
        elif draw < 0.95:
            quantity = self._quantity(kg / 0.45359237, "[lb_av]")  # exact: converts back to kg without loss
        else:
            quantity = self._quantity(round(kg * 1000), "g")
        self._observation(patient, "weight", day, valueQuantity=quantity)

    def _height(self, patient: _Patient, day: date, cm: float) -> None:
        quantity = self._quantity(cm / 2.54, "[in_i]") if self.rng.random() < 0.15 else self._quantity(cm, "cm")
        self._observation(patient, "height", day, valueQuantity=quantity)

    def _smoking(self, patient: _Patient) -> None:
        patient.truth["current_smoker"] = None
        if not self._chance("smoking_recorded"):
            return
        draw = self.rng.random()
        answer = (
            "smoker_current"
            if draw < self.p["smoking_current"]
            else "smoker_former"
            if draw < self.p["smoking_current"] + self.p["smoking_former"]
            else "smoker_never"
        )
        offset = self._days(10, 600)
        if self.rng.random() < 0.3:  # an older, superseded answer
            older = "smoker_never" if answer == "smoker_current" else "smoker_current"
            day = patient.index_date - timedelta(days=offset + self._days(30, 100))
            self._observation(patient, "smoking_status", day, valueCodeableConcept={"coding": [self._coding(older)]})
        day = patient.index_date - timedelta(days=offset)
        self._observation(patient, "smoking_status", day, valueCodeableConcept={"coding": [self._coding(answer)]})
        patient.truth["current_smoker"] = answer == "smoker_current"

    def _dxa(self, patient: _Patient) -> None:
        patient.truth["dxa_t_score_min"] = None
        if not self._chance("dxa"):
            return
        day = patient.index_date - timedelta(days=self._days(10, 1700))
        spine = round(float(np.clip(self.rng.normal(-1.4, 1.1), -4.5, 2.5)), 1)
        femur = round(float(np.clip(spine + self.rng.normal(0.2, 0.6), -4.5, 2.5)), 1)
        for concept, value in (("dxa_lumbar_spine_t", spine), ("dxa_femur_left_t", femur)):
            self._observation(patient, concept, day, valueQuantity=self._quantity(value, "{T-score}"))
        if self.rng.random() < 0.2:  # a later scan
            later = patient.index_date + timedelta(days=self._days(30, 700))
            self._observation(patient, "dxa_lumbar_spine_t", later, valueQuantity=self._quantity(-4.0, "{T-score}"))
        patient.truth["dxa_t_score_min"] = min(spine, femur)

    def _fracture_day(self, patient: _Patient, birth: date) -> date:
        """A day after the 41st birthday (the fragility-fracture age floor is 40), clear of the 2-year boundary."""
        birthday_41 = date(birth.year + 41, birth.month, min(birth.day, 28))
        room = min((patient.index_date - birthday_41).days - 30, 15 * 365)  # >= ~1400: patients are >= 45
        if self.rng.random() < 0.4:
            return patient.index_date - timedelta(days=self._days(10, 700))
        return patient.index_date - timedelta(days=self._days(800, room))

    def _fractures(self, patient: _Patient, birth: date) -> None:
        truth = patient.truth
        sites = {"hip": False, "vertebral": False, "forearm": False, "humerus": False}
        recent = False
        self.osteoporotic_fracture = False
        for site in sites:
            if self._chance(f"{site}_fracture"):
                day = self._fracture_day(patient, birth)
                coding = self._condition(patient, f"{site}_fracture", day)
                # ICD-10-CM M80 "osteoporosis with current pathological fracture" is an osteoporosis diagnosis too
                self.osteoporotic_fracture |= coding["code"].startswith("M80")
                sites[site] = True
                recent = recent or (patient.index_date - day).days <= 700
        if self._chance("fracture_after_index"):
            self._condition(patient, "hip_fracture", patient.index_date + timedelta(days=self._days(30, 900)))
        if self._chance("fracture_entered_in_error"):
            day = patient.index_date - timedelta(days=self._days(10, 700))
            self._condition(patient, "vertebral_fracture", day, verification="entered-in-error")
        truth.update(
            prior_fragility_fracture=any(sites.values()),
            prior_hip_fracture=sites["hip"],
            prior_vertebral_fracture=sites["vertebral"],
            recent_fracture_2y=recent,
        )

    def _falls(self, patient: _Patient) -> None:
        recent = self._chance("fall_recent")
        if recent:
            self._condition(patient, "fall", patient.index_date - timedelta(days=self._days(10, 330)))
        if self._chance("fall_old"):
            self._condition(patient, "fall", patient.index_date - timedelta(days=self._days(420, 700)))
        screened = not recent and self._chance("falls_screened_no")
        if screened:  # "Falls in the past year: No" within the 12 months
            day = patient.index_date - timedelta(days=self._days(10, 330))
            answer = {"coding": [self._coding("answer_no")]}
            self._observation(patient, "falls_screening", day, valueCodeableConcept=answer)
        # no fall and no screening within 12 months: unknown, not "no falls"
        patient.truth["falls_last_12m"] = True if recent else (False if screened else None)

    def _family_history(self, patient: _Patient) -> None:
        parental = self._chance("parental_hip_fracture")
        relatives = [("mother" if self.rng.random() < 0.7 else "father", "hip_fracture")] if parental else []
        if self._chance("sibling_hip_fracture"):
            relatives.append(("sister", "hip_fracture"))
        parent_known = parental or self._chance("parent_history_without_fracture")
        if parent_known and not parental:  # a parent's history without a hip fracture: a documented "no"
            relatives.append(("mother" if self.rng.random() < 0.5 else "father", "hypertension"))
        for relative, concept in relatives:
            patient.add(
                {
                    "resourceType": "FamilyMemberHistory",
                    "id": self._uuid(),
                    "status": "completed",
                    "patient": {"reference": f"Patient/{patient.patient_id}"},
                    "date": self._when(patient.index_date - timedelta(days=self._days(30, 900))),
                    "relationship": {"coding": [self._coding(relative)]},
                    "condition": [{"code": {"coding": [self._coding(concept)]}}],
                }
            )
        # no parent in the family history: unknown (a sibling's fracture says nothing about the parents)
        patient.truth["parental_hip_fracture"] = parental if parent_known else None

    def _chronic_conditions(self, patient: _Patient) -> None:
        for concept, column in (
            ("rheumatoid_arthritis", "rheumatoid_arthritis"),
            ("osteoporosis", "osteoporosis_diagnosis"),
        ):
            present = self._chance(concept)
            if present:
                self._condition(
                    patient, concept, patient.index_date - timedelta(days=self._days(30, 3000)), active=True
                )
            elif self.rng.random() < 0.03:  # diagnosed only after the index date
                self._condition(patient, concept, patient.index_date + timedelta(days=self._days(30, 700)), active=True)
            if column == "osteoporosis_diagnosis":
                present = present or self.osteoporotic_fracture
            patient.truth[column] = present

    def _medication_request(
        self,
        patient: _Patient,
        concept: str,
        day: date,
        *,
        dose_mg: float,
        period: tuple[int, str],
        supply_days: int,
        status: str,
    ) -> None:
        resource: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": self._uuid(),
            "status": status,
            "intent": "order",
            "subject": {"reference": f"Patient/{patient.patient_id}"},
            "authoredOn": self._when(day),
            "dosageInstruction": [
                {
                    "timing": {"repeat": {"frequency": 1, "period": period[0], "periodUnit": period[1]}},
                    "route": {"coding": [self._coding("oral_route")]},
                    "doseAndRate": [{"doseQuantity": self._quantity(dose_mg, "mg")}],
                }
            ],
            "dispenseRequest": {"expectedSupplyDuration": self._quantity(supply_days, "d")},
        }
        if concept == "alendronate" and self._chance("medication_reference"):
            resource["medicationReference"] = {"reference": f"Medication/{_ALENDRONATE_MEDICATION_ID}"}
        else:
            resource["medicationCodeableConcept"] = {"coding": [self._coding(concept)]}
        patient.add(resource)

    def _medications(self, patient: _Patient) -> None:
        index = patient.index_date
        long_course = self._chance("glucocorticoid_long")
        if long_course:  # four consecutive 30-day prescriptions of 10 mg/day, ended before the index date
            start = index - timedelta(days=self._days(140, 1000))
            for month in range(4):
                self._medication_request(
                    patient,
                    "prednisone",
                    start + timedelta(days=30 * month),
                    dose_mg=10.0,
                    period=(1, "d"),
                    supply_days=30,
                    status="completed",
                )
        if self._chance("glucocorticoid_burst"):  # 5 days at 40 mg: below the 3-month rule
            day = index - timedelta(days=self._days(30, 900))
            self._medication_request(
                patient, "prednisone", day, dose_mg=40.0, period=(1, "d"), supply_days=5, status="completed"
            )
        treated = self._chance("alendronate")
        if treated:
            day = index - timedelta(days=self._days(30, 1500))
            self._medication_request(
                patient, "alendronate", day, dose_mg=70.0, period=(1, "wk"), supply_days=84, status="active"
            )
        patient.truth.update(glucocorticoids=long_course, osteoporosis_treatment=treated)

    def _noise(self, patient: _Patient) -> None:
        for _ in range(self._days(1, 3)):
            day = patient.index_date - timedelta(days=self._days(-300, 1500))
            systolic, diastolic = int(self.rng.normal(132, 15)), int(self.rng.normal(80, 9))
            self._observation(
                patient,
                "blood_pressure",
                day,
                component=[
                    {
                        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                        "valueQuantity": {"value": systolic, "unit": "mm[Hg]", "system": _UCUM, "code": "mm[Hg]"},
                    },
                    {
                        "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                        "valueQuantity": {"value": diastolic, "unit": "mm[Hg]", "system": _UCUM, "code": "mm[Hg]"},
                    },
                ],
            )
            heart = {"value": int(self.rng.normal(72, 10)), "unit": "/min", "system": _UCUM, "code": "/min"}
            self._observation(patient, "heart_rate", day, valueQuantity=heart)
        if self.rng.random() < 0.3:
            self._condition(
                patient, "hypertension", patient.index_date - timedelta(days=self._days(30, 4000)), active=True
            )


def _medication_resources() -> list[dict[str, Any]]:
    alendronate = vocabulary()["concepts"]["alendronate"][0]
    return [
        {
            "resourceType": "Medication",
            "id": _ALENDRONATE_MEDICATION_ID,
            "code": {"coding": [dict(alendronate)], "text": "alendronate sodium 70 MG Oral Tablet"},
            "form": {"text": "oral tablet"},
        }
    ]


def _open_output(path: Path, compress: bool) -> BinaryIO:
    """A binary writer; gzip at level 1 (fast: the export is test data, not an archive)."""
    if compress:
        return gzip.open(path, "wb", compresslevel=1)  # type: ignore[return-value]
    return path.open("wb")


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def generate_bulk_export(
    out_dir: str | Path,
    *,
    patients: int,
    seed: int,
    compress: bool = False,
    files_per_type: int = 1,
    index_from: date = date(2021, 1, 1),
    index_to: date = date(2025, 12, 31),
) -> GeneratedExport:
    """Write a synthetic Bulk Data export of `patients` patients and its `truth.csv` into `out_dir`."""
    if patients < 1:
        raise ValueError(f"patients must be >= 1, got {patients}")
    if not 1 <= files_per_type <= 1000:
        raise ValueError(f"files_per_type must be in 1..1000, got {files_per_type}")
    if index_to <= index_from:
        raise ValueError("index_to must be after index_from")
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".ndjson.gz" if compress else ".ndjson"

    def name(resource_type: str, part: int) -> Path:
        stem = resource_type if files_per_type == 1 else f"{resource_type}.{part:03d}"
        return directory / f"{stem}{suffix}"

    builder = _Builder(seed, index_from, index_to)
    written = 0
    paths: list[Path] = []
    with ExitStack() as stack:
        handles: dict[tuple[str, int], BinaryIO] = {}
        for resource_type in RESOURCE_TYPES:
            for part in range(files_per_type):
                path = name(resource_type, part)
                handles[(resource_type, part)] = stack.enter_context(_open_output(path, compress))
                paths.append(path)
        truth_path = directory / "truth.csv"
        truth_file = stack.enter_context(truth_path.open("w", newline="", encoding="utf-8"))
        writer = csv.DictWriter(truth_file, fieldnames=TRUTH_COLUMNS)
        writer.writeheader()
        for number in range(patients):
            patient = builder.patient()
            part = number % files_per_type
            for resource_type, items in patient.resources.items():
                handles[(resource_type, part)].write(b"".join(orjson.dumps(r) + b"\n" for r in items))
                written += len(items)
            writer.writerow({column: _csv_value(patient.truth.get(column)) for column in TRUTH_COLUMNS})
    medication_path = directory / f"Medication{suffix}"
    with _open_output(medication_path, compress) as out:
        for medication in _medication_resources():
            out.write(orjson.dumps(medication) + b"\n")
            written += 1
    paths.append(medication_path)
    return GeneratedExport(directory, truth_path, patients, written, tuple(paths))


def read_truth(path: str | Path) -> dict[str, dict[str, Any]]:
    """truth.csv -> patient id -> {column: value} with booleans, floats, dates and None for missing."""
    out: dict[str, dict[str, Any]] = {}
    with Path(path).open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            parsed: dict[str, Any] = {}
            for column, text in row.items():
                if text == "":
                    parsed[column] = None
                elif text in ("true", "false"):
                    parsed[column] = text == "true"
                elif column in ("index_date", "birth_date"):
                    parsed[column] = date.fromisoformat(text)
                elif column in ("patient_id", "sex"):
                    parsed[column] = text
                elif column == "n_resources":
                    parsed[column] = int(text)
                else:
                    parsed[column] = float(text)
            out[row["patient_id"]] = parsed
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clinical.bulk_generator",
        description="Write a synthetic FHIR Bulk Data NDJSON export with a truth.csv of the expected variables.",
    )
    parser.add_argument("--patients", type=int, required=True, help="number of patients")
    parser.add_argument("--out", type=Path, required=True, help="output directory (created)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument("--gzip", action="store_true", help="write .ndjson.gz files")
    parser.add_argument("--files-per-type", type=int, default=1, help="split each type over N files (Type.000...)")
    args = parser.parse_args(argv)
    try:
        export = generate_bulk_export(
            args.out, patients=args.patients, seed=args.seed, compress=args.gzip, files_per_type=args.files_per_type
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {export.patients} patients, {export.resources} resources to {export.directory} (truth: truth.csv)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
