"""Reading values out of raw FHIR R4 JSON: partial dates, resource dates, quantities in UCUM, references.

Dates: FHIR `date`/`dateTime` may be partial ("2003", "2003-07"). `FhirDate` keeps the precision and gives
the earliest and latest calendar day it can mean; the extraction compares the *latest* day with the index
date (a partial date counts as "on or before" only when all of it is) and says so in a warning. Times are
read as the calendar date written in the value (its own time zone), without conversion.

Which date each resource type uses (documented rule, see `resource_date`):
- Observation: effectiveDateTime | effectiveInstant | effectivePeriod.end (else .start); else `issued`
  (with a warning: issued is when the result was released, never before the observation).
- Condition: onsetDateTime | onsetPeriod.start | onsetAge (birth date + age); else recordedDate.
- MedicationRequest: authoredOn. MedicationStatement: effectiveDateTime | effectivePeriod.start; else dateAsserted.
- FamilyMemberHistory: date.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache, lru_cache
from typing import Any, Final

from clinical.codes import UCUM
from clinical.errors import FhirInputError

_DATE_RE: Final = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(?:T.*)?$")


@dataclass(frozen=True)
class FhirDate:
    """A FHIR date of year, month or day precision."""

    year: int
    month: int | None = None
    day: int | None = None

    @property
    def precision(self) -> str:
        return "day" if self.day is not None else ("month" if self.month is not None else "year")

    @property
    def is_partial(self) -> bool:
        return self.day is None

    def earliest(self) -> date:
        return date(self.year, self.month or 1, self.day or 1)

    def latest(self) -> date:
        month = self.month or 12
        return date(self.year, month, self.day or calendar.monthrange(self.year, month)[1])

    def midpoint(self) -> date:
        """The middle of the period a partial date spans (1 July for a year, the 15th for a month)."""
        if self.day is not None:
            return self.earliest()
        if self.month is None:
            return date(self.year, 7, 1)
        return date(self.year, self.month, 15)

    def __str__(self) -> str:
        text = f"{self.year:04d}"
        if self.month is not None:
            text += f"-{self.month:02d}"
        if self.day is not None:
            text += f"-{self.day:02d}"
        return text


def parse_fhir_date(value: object, *, where: str) -> FhirDate:
    """A FHIR date/dateTime/instant string -> FhirDate; `FhirInputError` naming `where` when malformed."""
    if not isinstance(value, str):
        raise FhirInputError(f"{where}: expected a FHIR date string, got {type(value).__name__}")
    parsed = _parse_date_text(value)
    if isinstance(parsed, str):
        raise FhirInputError(f"{where}: {parsed}")
    return parsed


@lru_cache(maxsize=65536)
def _parse_date_text(value: str) -> FhirDate | str:
    """The FhirDate of a date string, or why it is not one (cached: the same dates recur across resources)."""
    match = _DATE_RE.match(value.strip())
    if match is None:
        return f"{value!r} is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or a dateTime)"
    year_text, month_text, day_text = match.groups()
    try:
        parsed = FhirDate(int(year_text), int(month_text) if month_text else None, int(day_text) if day_text else None)
        parsed.earliest()
        parsed.latest()
    except ValueError as exc:
        return f"{value!r} is not a valid calendar date ({exc})"
    return parsed


def reference_of(resource: Mapping[str, Any]) -> str:
    """ "Type/id" of a resource, for `Variable.sources` and messages (never PHI)."""
    resource_id = resource.get("id")
    return f"{resource.get('resourceType')}/{resource_id if resource_id else '(no id)'}"


@dataclass(frozen=True)
class DatedResource:
    """The date a resource is placed at, and whether that date came from a fallback element."""

    when: FhirDate
    element: str
    fallback: bool = False


def _first_date(resource: Mapping[str, Any], elements: tuple[str, ...], where: str) -> tuple[FhirDate, str] | None:
    for element in elements:
        node: Any = resource
        for part in element.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is not None:
            return parse_fhir_date(node, where=f"{where}.{element}"), element
    return None


_DATE_ELEMENTS: Final[Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "Observation": (
        ("effectiveDateTime", "effectiveInstant", "effectivePeriod.end", "effectivePeriod.start"),
        ("issued",),
    ),
    "Condition": (("onsetDateTime", "onsetPeriod.start"), ("recordedDate",)),
    "MedicationRequest": (("authoredOn",), ()),
    "MedicationStatement": (("effectiveDateTime", "effectivePeriod.start"), ("dateAsserted",)),
    "FamilyMemberHistory": (("date",), ()),
    "Procedure": (("performedDateTime", "performedPeriod.start"), ()),
}


def resource_date(resource: Mapping[str, Any], *, birth: FhirDate | None = None) -> DatedResource | None:
    """The clinically relevant date of a resource (module docstring), or None when it has none."""
    resource_type = str(resource.get("resourceType"))
    where = reference_of(resource)
    primary, fallback = _DATE_ELEMENTS.get(resource_type, ((), ()))
    found = _first_date(resource, primary, where)
    if found is not None:
        return DatedResource(found[0], found[1])
    if resource_type == "Condition" and isinstance(resource.get("onsetAge"), Mapping) and birth is not None:
        years = age_in_years(resource["onsetAge"], where=f"{where}.onsetAge")
        onset = birth.midpoint() + timedelta(days=round(years * 365.25))
        return DatedResource(FhirDate(onset.year, onset.month, onset.day), "onsetAge")
    found = _first_date(resource, fallback, where)
    if found is not None:
        return DatedResource(found[0], found[1], fallback=True)
    return None


def age_in_years(quantity: Mapping[str, Any], *, where: str) -> float:
    """An Age quantity (UCUM a, mo, wk, d) in years."""
    value = quantity.get("value")
    code = quantity.get("code") or quantity.get("unit")
    factors = {"a": 1.0, "mo": 1 / 12, "wk": 7 / 365.25, "d": 1 / 365.25}
    if not isinstance(value, int | float) or isinstance(value, bool) or code not in factors:
        raise FhirInputError(f"{where}: an Age needs a numeric value and a UCUM unit a, mo, wk or d")
    return float(value) * factors[str(code)]


# ---------------------------------------------------------------------------------------------------------
# Quantities

#: UCUM code -> factor to the canonical unit, per kind of measure (UCUM, https://ucum.org/ucum).
UNIT_FACTORS: Final[Mapping[str, Mapping[str, float]]] = {
    "weight_kg": {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237, "[oz_av]": 0.028349523125, "[stone_av]": 6.35029318},
    "height_cm": {"cm": 1.0, "m": 100.0, "mm": 0.1, "[in_i]": 2.54, "[ft_i]": 30.48},
    "bmi_kg_m2": {"kg/m2": 1.0},
    "dxa_t_score": {"{T-score}": 1.0, "{SD}": 1.0, "{s.d.}": 1.0, "1": 1.0, "{score}": 1.0},
    "drinks_per_day": {"{drinks}/d": 1.0, "/d": 1.0, "{drink}/d": 1.0, "{drinks}": 1.0, "1": 1.0},
}

#: Human-readable unit strings accepted when a Quantity carries no UCUM code (Quantity.unit only).
UNIT_SYNONYMS: Final[Mapping[str, str]] = {
    "kg": "kg",
    "kgs": "kg",
    "kilogram": "kg",
    "kilograms": "kg",
    "g": "g",
    "lb": "[lb_av]",
    "lbs": "[lb_av]",
    "pound": "[lb_av]",
    "pounds": "[lb_av]",
    "cm": "cm",
    "centimeter": "cm",
    "centimeters": "cm",
    "m": "m",
    "mm": "mm",
    "in": "[in_i]",
    "inch": "[in_i]",
    "inches": "[in_i]",
    "kg/m2": "kg/m2",
    "kg/m^2": "kg/m2",
    "kg/m²": "kg/m2",
    "t-score": "{T-score}",
    "{t-score}": "{T-score}",
    "sd": "{SD}",
    "drinks/day": "{drinks}/d",
    "drinks per day": "{drinks}/d",
}


@dataclass(frozen=True)
class Measured:
    """A numeric value converted to the canonical unit, with the UCUM code it was sent in."""

    value: float
    sent_unit: str | None


def quantity_value(quantity: object, kind: str, *, where: str, unit_optional: bool = False) -> Measured | None:
    """A Quantity in the canonical unit of `kind` (see `UNIT_FACTORS`).

    None when the Quantity has no value. `FhirInputError` for a non-numeric value, a comparator
    (e.g. "<"), a non-UCUM system or a unit this kind of measure cannot be in (the message names it).
    """
    if not isinstance(quantity, Mapping):
        raise FhirInputError(f"{where}: expected a Quantity object, got {type(quantity).__name__}")
    value = quantity.get("value")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FhirInputError(f"{where}.value: expected a number, got {value!r}")
    if quantity.get("comparator"):
        raise FhirInputError(f"{where}: a value with comparator {quantity['comparator']!r} is not a measurement")
    factors = UNIT_FACTORS[kind]
    system, code, unit = quantity.get("system"), quantity.get("code"), quantity.get("unit")
    if code is not None:
        if system is not None and system != UCUM:
            raise FhirInputError(f"{where}: unit system {system!r} is not UCUM ({UCUM}); cannot convert {code!r}")
        resolved = str(code)
    elif unit is not None:
        resolved = UNIT_SYNONYMS.get(str(unit).strip().lower(), str(unit))
    elif unit_optional:
        return Measured(float(value), None)
    else:
        raise FhirInputError(f"{where}: a {_KIND_NAMES[kind]} without a unit cannot be read; send a UCUM code")
    if resolved not in factors:
        raise FhirInputError(
            f"{where}: unknown unit {resolved!r} for {_KIND_NAMES[kind]}; expected one of UCUM "
            f"{', '.join(sorted(factors))}"
        )
    return Measured(float(value) * factors[resolved], resolved)


_KIND_NAMES: Final = {
    "weight_kg": "body weight",
    "height_cm": "body height",
    "bmi_kg_m2": "BMI",
    "dxa_t_score": "DXA T-score",
    "drinks_per_day": "alcohol intake",
}


# ---------------------------------------------------------------------------------------------------------
# Validation with the fhir.resources R4B models (lazy: only the resources the extraction uses; the fast
# alternative for cohorts, and which level runs where: `clinical.fhir_check`)

_MODEL_MODULES: Final = {
    "Patient": "patient",
    "Observation": "observation",
    "Condition": "condition",
    "MedicationRequest": "medicationrequest",
    "MedicationStatement": "medicationstatement",
    "FamilyMemberHistory": "familymemberhistory",
    "Medication": "medication",
}


@cache
def _model_class(resource_type: str) -> Any:
    import importlib

    module = importlib.import_module(f"fhir.resources.R4B.{_MODEL_MODULES[resource_type]}")
    return getattr(module, resource_type)


def validate_resource(resource: Mapping[str, Any]) -> None:
    """Validate one resource against its FHIR R4B model; `FhirInputError` naming the first problem.

    Status codes are not checked by the models (they accept any string): the extraction checks them.
    """
    resource_type = str(resource.get("resourceType"))
    if resource_type not in _MODEL_MODULES:
        return
    from pydantic import ValidationError

    try:
        _model_class(resource_type).model_validate(resource)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first.get("loc", ()))
        where = f"{location}: " if location else ""
        raise FhirInputError(
            f"{reference_of(resource)} is not a valid FHIR R4 {resource_type}: {where}{first.get('msg')}"
            f" ({exc.error_count()} problem{'s' if exc.error_count() != 1 else ''})"
        ) from None


@cache
def _r4b_module_names() -> frozenset[str]:
    from importlib import resources as importlib_resources

    files = importlib_resources.files("fhir.resources.R4B").iterdir()
    return frozenset(item.name[:-3] for item in files if item.name.endswith(".py") and not item.name.startswith("_"))


def is_known_resource_type(name: str) -> bool:
    """Whether `name` is a FHIR R4B resource type of fhir.resources (checked by module name, no import)."""
    return bool(re.fullmatch(r"[A-Z][A-Za-z]+", name)) and name.lower() in _r4b_module_names()
