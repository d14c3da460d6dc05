"""Medications: which drug a MedicationRequest/MedicationStatement is, its route, daily dose and exposure.

Matching (`match_drug`): RxNorm codings only. A coding matches by its code (ingredient or listed drug in
`code_lists/medications.json`, or a member of the VSAC 'Glucocorticoids (oral only)' expansion, whose listed
name then supplies ingredient and strength when the coding has no display) or by the normalized ingredient
name in its display (RxNorm SCD/SBD names begin with the ingredient names, e.g. "predniSONE 5 MG Oral
Tablet"). Value set members listed as excluded (fludrocortisone, a mineralocorticoid; an oral paste) never
match by code. `medicationReference` is followed to a contained or bundled Medication.

Dose (`daily_dose_mg`): doseQuantity (or doseRange.low) in mg, g, ug, or in tablets/mL times the strength
read from the RxNorm name ("5 MG", "1 MG/ML"), times the frequency per day of `timing.repeat`
(frequency/period/periodUnit) or `timing.code` (QD, BID, TID, QID, QOD, Q4H..Q12H). As-needed doses and
combination products have no daily dose (None): the caller decides what an unknown dose means.

Exposure (`exposure_of`): start = authoredOn (MedicationRequest) or effective[x] start (MedicationStatement);
duration from timing.repeat.bounds[x], dispenseRequest.expectedSupplyDuration x (1 + numberOfRepeatsAllowed),
dispenseRequest.validityPeriod, dispenseRequest.quantity / units per day, or effectivePeriod; an active
MedicationStatement without an end lasts until the index date.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from typing import Any, Final

from clinical.codes import RXNORM, SNOMED, code_list, codings
from clinical.fhir_values import FhirDate, parse_fhir_date, reference_of
from clinical.sources.base import FhirSource


@dataclass(frozen=True)
class DrugMatch:
    """A recognised drug: its category, ingredient and what is known of its route."""

    category: str  # "glucocorticoid" | "osteoporosis_treatment"
    ingredient: str | None
    display: str | None
    oral: bool | None  # None: the codes do not say
    prednisolone_factor: float | None


@dataclass(frozen=True)
class _Ingredient:
    name: str
    category: str
    names: tuple[str, ...]
    code: str | None
    factor: float | None


@cache
def _ingredients() -> tuple[_Ingredient, ...]:
    document = code_list("medications").document
    return tuple(
        _Ingredient(
            name=str(raw["display"]),
            category=str(raw["category"]),
            names=tuple(str(n).lower() for n in raw.get("names", (raw["display"],))),
            code=raw.get("code"),
            factor=raw.get("prednisolone_equivalent_mg"),
        )
        for raw in document["ingredients"]
    )


@cache
def _value_set_codes() -> dict[str, tuple[str, str | None]]:
    """Value set member code -> (category, the member's RxNorm display when the expansion gives one)."""
    document = code_list("medications").document
    return {
        str(member["code"]): (str(vs["category"]), member.get("display"))
        for vs in document.get("value_sets", ())
        for member in vs["codes"]
    }


@cache
def _value_set_excluded() -> frozenset[str]:
    """Members of a value set that are not what the category means (e.g. fludrocortisone among the
    'oral glucocorticoids'): never matched by code."""
    document = code_list("medications").document
    return frozenset(str(member["code"]) for vs in document.get("value_sets", ()) for member in vs.get("excluded", ()))


@cache
def _form_words() -> tuple[tuple[str, ...], tuple[str, ...]]:
    document = code_list("medications").document
    return tuple(document["non_oral_form_words"]), tuple(document["oral_form_words"])


def _ingredient_by_name(name: str) -> _Ingredient | None:
    for ingredient in _ingredients():
        if ingredient.name == name or name in ingredient.names:
            return ingredient
    return None


def _ingredient_in_text(text: str) -> list[_Ingredient]:
    lowered = text.lower()
    return [
        ingredient
        for ingredient in _ingredients()
        if any(re.search(rf"(?<![a-z]){re.escape(n)}(?![a-z])", lowered) for n in ingredient.names)
    ]


def _oral_from_text(text: str | None) -> bool | None:
    if not text:
        return None
    lowered = text.lower()
    non_oral, oral = _form_words()
    if any(word in lowered for word in non_oral):
        return False
    if any(word in lowered for word in oral):
        return True
    return None


def medication_concept(resource: Mapping[str, Any], source: FhirSource) -> Mapping[str, Any] | None:
    """The medication CodeableConcept of a request/statement, following medicationReference when needed."""
    concept = resource.get("medicationCodeableConcept")
    if isinstance(concept, Mapping):
        return concept
    reference = (resource.get("medicationReference") or {}).get("reference")
    if not isinstance(reference, str):
        return None
    medication: Mapping[str, Any] | None = None
    if reference.startswith("#"):
        for contained in resource.get("contained") or ():
            if isinstance(contained, Mapping) and contained.get("id") == reference[1:]:
                medication = contained
    else:
        medication = source.resolve(reference)
    if medication is None or medication.get("resourceType") != "Medication":
        return None
    code = medication.get("code")
    return code if isinstance(code, Mapping) else None


def match_drug(concept: Mapping[str, Any] | None) -> DrugMatch | None:
    """The glucocorticoid / anti-osteoporosis drug a medication concept names, or None."""
    if concept is None:
        return None
    catalogue = code_list("medications")
    for coding in concept.get("coding") or ():
        if not isinstance(coding, Mapping) or coding.get("system") != RXNORM:
            continue
        code = coding.get("code")
        display = coding.get("display") if isinstance(coding.get("display"), str) else None
        if isinstance(code, str) and code in _value_set_excluded():
            continue
        entry = catalogue.match(RXNORM, code) if isinstance(code, str) else None
        ingredient: _Ingredient | None = None
        category: str | None = None
        if entry is not None:
            category = entry.category
            name = entry.attribute("ingredient") or entry.display
            ingredient = _ingredient_by_name(str(name))
        elif isinstance(code, str) and code in _value_set_codes():
            category, listed_display = _value_set_codes()[code]
            display = display or listed_display  # the member's own name gives ingredient and strength
            found = _ingredient_in_text(display or "")
            ingredient = found[0] if len(found) == 1 else None
        elif display:
            found = _ingredient_in_text(display)
            if len(found) == 1:
                ingredient, category = found[0], found[0].category
            elif len({f.category for f in found}) == 1 and found:
                category = found[0].category  # combination of drugs of one category: no single ingredient
        if category is None:
            continue
        is_ingredient_code = entry is not None and not entry.attribute("ingredient") and entry.code == code
        oral = _oral_from_text(display) if not is_ingredient_code else None
        if code in _value_set_codes() and oral is None:
            oral = True  # the VSAC expansion lists oral forms only
        return DrugMatch(
            category=category,
            ingredient=ingredient.name if ingredient else None,
            display=display or concept.get("text"),
            oral=oral,
            prednisolone_factor=ingredient.factor if ingredient else None,
        )
    return None


def route_is_oral(dosages: Sequence[Any]) -> bool | None:
    """True/False when a dosage names its route (SNOMED 26643006 = oral), None when none does."""
    oral_codes = {str(c["code"]) for c in code_list("medications").document["oral_route_codes"]}
    verdict: bool | None = None
    for dosage in dosages:
        if not isinstance(dosage, Mapping) or not isinstance(dosage.get("route"), Mapping):
            continue
        route = dosage["route"]
        codes = [(s, c) for s, c in codings(route)]
        if any(s == SNOMED and c in oral_codes for s, c in codes):
            return True
        text = " ".join(str(x) for x in (route.get("text"), *(c for _, c in codes)) if x).lower()
        verdict = "oral" in text or "mouth" in text
    return verdict


# ---------------------------------------------------------------------------------------------------------
# Dose

_PER_DAY_BY_CODE: Final = {
    "QD": 1.0, "AM": 1.0, "PM": 1.0, "BID": 2.0, "TID": 3.0, "QID": 4.0, "QOD": 0.5,
    "Q4H": 6.0, "Q6H": 4.0, "Q8H": 3.0, "Q12H": 2.0, "Q24H": 1.0, "WK": 1 / 7, "MO": 1 / 30,
}  # fmt: skip
_DAYS_PER_UNIT: Final = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": 30.4375, "a": 365.25}
_COUNT_UNITS: Final = {
    "", "1", "{tbl}", "{tablet}", "{tablets}", "tablet", "tablets", "tab", "{capsule}", "capsule", "{cap}", "cap"
}  # fmt: skip
_MASS_TO_MG: Final = {"mg": 1.0, "g": 1000.0, "ug": 0.001, "mcg": 0.001}


def _strengths(display: str | None) -> tuple[list[float], list[float]]:
    """Solid strengths in mg and liquid strengths in mg/mL named in an RxNorm drug name."""
    if not display:
        return [], []
    per_ml = [float(m) for m in re.findall(r"(\d+(?:\.\d+)?)\s*MG/ML", display, flags=re.IGNORECASE)]
    solid = [float(m) for m in re.findall(r"(\d+(?:\.\d+)?)\s*MG(?!\s*/)", display, flags=re.IGNORECASE)]
    return solid, per_ml


def doses_per_day(timing: object) -> float | None:
    """Administrations per day of a Timing, or None when the timing does not say."""
    if not isinstance(timing, Mapping):
        return None
    repeat = timing.get("repeat")
    if isinstance(repeat, Mapping) and (repeat.get("period") is not None or repeat.get("frequency") is not None):
        frequency = repeat.get("frequency", 1)
        period = repeat.get("period", 1)
        unit = repeat.get("periodUnit", "d")
        if not isinstance(frequency, int | float) or not isinstance(period, int | float) or period <= 0:
            return None
        if unit not in _DAYS_PER_UNIT:
            return None
        return float(frequency) / (float(period) * _DAYS_PER_UNIT[str(unit)])
    code = timing.get("code")
    for _, value in codings(code):
        if value and value.upper() in _PER_DAY_BY_CODE:
            return _PER_DAY_BY_CODE[value.upper()]
    return None


def daily_dose_mg(dosages: Sequence[Any], display: str | None) -> float | None:
    """The daily dose in mg of the drug, or None when it cannot be computed (see module docstring)."""
    for dosage in dosages:
        if not isinstance(dosage, Mapping) or dosage.get("asNeededBoolean") or dosage.get("asNeededCodeableConcept"):
            continue
        per_day = doses_per_day(dosage.get("timing"))
        if per_day is None:
            continue
        for dose_and_rate in dosage.get("doseAndRate") or ():
            if not isinstance(dose_and_rate, Mapping):
                continue
            quantity = dose_and_rate.get("doseQuantity") or (dose_and_rate.get("doseRange") or {}).get("low")
            if not isinstance(quantity, Mapping) or not isinstance(quantity.get("value"), int | float):
                continue
            amount = float(quantity["value"])
            unit = str(quantity.get("code") or quantity.get("unit") or "").strip()
            solid, per_ml = _strengths(display)
            if unit.lower() in _MASS_TO_MG:
                return amount * _MASS_TO_MG[unit.lower()] * per_day
            if unit.lower() in {"ml", "mL".lower()} and len(per_ml) == 1:
                return amount * per_ml[0] * per_day
            if unit.lower() in _COUNT_UNITS and len(solid) == 1 and not per_ml:
                return amount * solid[0] * per_day
    return None


# ---------------------------------------------------------------------------------------------------------
# Exposure


@dataclass(frozen=True)
class Exposure:
    """One prescription/statement as a period of exposure, truncated at the index date."""

    reference: str
    start: date
    end: date | None  # None: duration unknown
    ongoing: bool  # still running at the index date


def _duration_days(value: object) -> float | None:
    if not isinstance(value, Mapping) or not isinstance(value.get("value"), int | float):
        return None
    unit = value.get("code") or value.get("unit")
    unit_days = {"d": 1.0, "day": 1.0, "days": 1.0, "wk": 7.0, "mo": 30.4375, "a": 365.25, "h": 1 / 24}
    factor = unit_days.get(str(unit))
    return float(value["value"]) * factor if factor is not None else None


def _period_days(period: object, *, where: str) -> tuple[FhirDate | None, FhirDate | None]:
    if not isinstance(period, Mapping):
        return None, None
    start = parse_fhir_date(period["start"], where=f"{where}.start") if period.get("start") else None
    end = parse_fhir_date(period["end"], where=f"{where}.end") if period.get("end") else None
    return start, end


def exposure_of(resource: Mapping[str, Any], start: date, index_date: date, display: str | None) -> Exposure:
    """The exposure period of a MedicationRequest or MedicationStatement that started on `start`."""
    reference = reference_of(resource)
    end: date | None = None
    if resource.get("resourceType") == "MedicationStatement":
        _, period_end = _period_days(resource.get("effectivePeriod"), where=f"{reference}.effectivePeriod")
        if period_end is not None:
            end = period_end.latest()
        elif resource.get("status") == "active" and isinstance(resource.get("effectivePeriod"), Mapping):
            return Exposure(reference, start, index_date, ongoing=True)
        dosages = resource.get("dosage") or ()
    else:
        dosages = resource.get("dosageInstruction") or ()
        end = _request_end(resource, start, dosages, display)
    if end is None:
        ongoing = resource.get("status") == "active"
        return Exposure(reference, start, None, ongoing=ongoing)
    ongoing = end >= index_date and resource.get("status") in {"active", "on-hold", None}
    return Exposure(reference, start, min(end, index_date), ongoing=ongoing)


def _request_end(resource: Mapping[str, Any], start: date, dosages: Sequence[Any], display: str | None) -> date | None:
    reference = reference_of(resource)
    for dosage in dosages:
        repeat = ((dosage or {}).get("timing") or {}).get("repeat") if isinstance(dosage, Mapping) else None
        if not isinstance(repeat, Mapping):
            continue
        days = _duration_days(repeat.get("boundsDuration"))
        if days is not None:
            return start + timedelta(days=round(days))
        _, bound_end = _period_days(repeat.get("boundsPeriod"), where=f"{reference}.boundsPeriod")
        if bound_end is not None:
            return bound_end.latest()
    dispense = resource.get("dispenseRequest")
    if isinstance(dispense, Mapping):
        repeats = dispense.get("numberOfRepeatsAllowed", 0)
        fills = 1 + (int(repeats) if isinstance(repeats, int) and repeats > 0 else 0)
        supply = _duration_days(dispense.get("expectedSupplyDuration"))
        if supply is not None:
            return start + timedelta(days=round(supply * fills))
        _, valid_end = _period_days(dispense.get("validityPeriod"), where=f"{reference}.validityPeriod")
        if valid_end is not None:
            return valid_end.latest()
        quantity = dispense.get("quantity")
        units_per_day = _units_per_day(dosages)
        if isinstance(quantity, Mapping) and isinstance(quantity.get("value"), int | float) and units_per_day:
            return start + timedelta(days=round(float(quantity["value"]) * fills / units_per_day))
    return None


def _units_per_day(dosages: Sequence[Any]) -> float | None:
    for dosage in dosages:
        if not isinstance(dosage, Mapping):
            continue
        per_day = doses_per_day(dosage.get("timing"))
        for dose_and_rate in dosage.get("doseAndRate") or ():
            quantity = (dose_and_rate or {}).get("doseQuantity") if isinstance(dose_and_rate, Mapping) else None
            if per_day and isinstance(quantity, Mapping) and isinstance(quantity.get("value"), int | float):
                return float(quantity["value"]) * per_day
    return None
