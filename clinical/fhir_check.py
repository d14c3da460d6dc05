"""Validation of FHIR R4 resources, at two levels: "full" (fhir.resources R4B models) or "elements" (fast).

Which level runs where (`clinical.extract.build_record(validation=...)`):

- **full** (the default of `build_record`, so of bundles, inline gRPC payloads, REST servers and single
  patients from an NDJSON export): every resource the extraction uses is validated whole by its
  fhir.resources R4B model (`validate_resource`): every element, at any depth, against FHIR R4 types,
  cardinalities and choice rules. About 0.08 ms a resource.
- **elements** (the default of `clinical.bulk.iter_cohort_records`, for cohorts of many thousands):
  `check_elements` checks, in a few microseconds, exactly what the extraction reads and nothing else:
  1. the resource's top-level element names are elements of its type (a misspelt `valueQuantiy` is an
     error, not a silently missing value), required elements are present and a choice element
     (`value[x]`, `effective[x]`, `onset[x]`, ...) is given in one type only (names, cardinalities and
     choice groups are taken from the same R4B models, so the two levels agree on them);
  2. every element the extraction reads, at any depth (codings, value[x], effective[x]/onset[x]/
     abatement[x], status fields, subject/patient references, dosage timing and dose, dispense
     request, component codes and values, family member conditions, contained Medications), has its
     FHIR R4 JSON type: objects with only the elements of their datatype, arrays where the element
     repeats, no null inside an array, strings/codes/ids/uris, booleans, integers and decimals as JSON
     numbers, and date/dateTime/instant by the regular expressions of the FHIR R4 datatypes page
     (http://hl7.org/fhir/R4/datatypes.html), as calendar dates.
  Elements the extraction never reads (narrative, identifiers, meta, performer, notes, extensions) are
  not looked into: a resource malformed only there is accepted at this level and refused at "full".

At both levels, a Medication that a request reaches through the source (`medicationReference` to
"Medication/x", not a contained one) is not validated: only its code is read, tolerantly, and a malformed
one simply names no known drug. Resources that no variable uses (an unlisted code, an ignored status)
are never validated.

Both levels raise `FhirInputError` with the same message form, naming the resource and the element:
"Observation/123 is not a valid FHIR R4 Observation: valueQuantity.value: expected a decimal (a JSON
number), got str". A value the R4B models accept loosely but that FHIR JSON does not allow (a number sent
as a string, "70.5") is refused here; at "full" the extraction refuses it a step later (`quantity_value`).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Literal

from clinical.errors import FhirInputError
from clinical.fhir_values import parse_fhir_date, reference_of, validate_resource

ValidationLevel = Literal["full", "elements"]
VALIDATION_LEVELS: Final = ("full", "elements")

# Primitive types (FHIR R4 datatypes, http://hl7.org/fhir/R4/datatypes.html#primitive; the regexes are the
# spec's, also used by the fhir.resources R4B models).
_DATE_RE: Final = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?"
)
_DATETIME_RE: Final = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
)
_INSTANT_RE: Final = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
)
_CODE_RE: Final = re.compile(r"[^\s]+(\s[^\s]+)*")
_ID_RE: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")


class _InvalidElementError(Exception):
    """A problem with an element (internal: turned into a FhirInputError naming the resource).

    The element's path is assembled as the error propagates out (`within`), so that checking valid
    resources never builds path strings.
    """

    def __init__(self, message: str, *, at: str | int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.parts: list[str | int] = [] if at is None else [at]

    def within(self, part: str | int) -> None:
        self.parts.insert(0, part)

    @property
    def path(self) -> str:
        text = ""
        for part in self.parts:
            if isinstance(part, int):
                text += f"[{part}]"
            else:
                text += f".{part}" if text else part
        return text


Check = Callable[[Any], None]


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__


def _string(value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise _InvalidElementError(f"expected a non-empty string, got {_json_type(value)}")


def _uri(value: Any) -> None:
    if not isinstance(value, str):
        raise _InvalidElementError(f"expected a uri (a string), got {_json_type(value)}")


def _code(value: Any) -> None:
    if not isinstance(value, str) or not _CODE_RE.fullmatch(value):
        raise _InvalidElementError(
            f"expected a code (a string without leading, trailing or double spaces), got {value!r:.40}"
        )


def _id(value: Any) -> None:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise _InvalidElementError(f"expected an id (1-64 characters of A-Z a-z 0-9 - .), got {value!r:.70}")


def _boolean(value: Any) -> None:
    if not isinstance(value, bool):
        raise _InvalidElementError(f"expected a boolean (true/false), got {_json_type(value)}")


def _integer(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _InvalidElementError(f"expected an integer (a JSON number), got {_json_type(value)}")
    if not -2_147_483_648 <= value <= 2_147_483_647:
        raise _InvalidElementError(f"{value} is outside the 32-bit range of a FHIR integer")


def _positive_int(value: Any) -> None:
    _integer(value)
    if value < 1:
        raise _InvalidElementError(f"expected a positiveInt (>= 1), got {value}")


def _unsigned_int(value: Any) -> None:
    _integer(value)
    if value < 0:
        raise _InvalidElementError(f"expected an unsignedInt (>= 0), got {value}")


def _decimal(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _InvalidElementError(f"expected a decimal (a JSON number), got {_json_type(value)}")
    if value != value or value in (float("inf"), float("-inf")):
        raise _InvalidElementError(f"expected a finite decimal, got {value}")


def _dated(pattern: re.Pattern[str], kind: str) -> Check:
    @lru_cache(maxsize=16384)
    def problem(value: str) -> str | None:  # dates repeat a lot within an export: checked once each
        if not pattern.fullmatch(value):
            return f"{value!r:.40} is not a FHIR {kind}"
        try:
            parse_fhir_date(value, where="")
        except FhirInputError:
            return f"{value!r:.40} is not a calendar date"
        return None

    def check(value: Any) -> None:
        if not isinstance(value, str):
            raise _InvalidElementError(f"expected a FHIR {kind} string, got {_json_type(value)}")
        found = problem(value)
        if found is not None:
            raise _InvalidElementError(found)

    return check


_date = _dated(_DATE_RE, "date (YYYY, YYYY-MM or YYYY-MM-DD)")
_date_time = _dated(_DATETIME_RE, "dateTime (YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone)")
_instant = _dated(_INSTANT_RE, "instant (YYYY-MM-DDThh:mm:ss with a time zone)")


def _many(check: Check) -> Check:
    """An element that repeats: a JSON array of items, none null."""

    def check_list(value: Any) -> None:
        if not isinstance(value, list):
            raise _InvalidElementError(f"expected an array (the element repeats), got {_json_type(value)}")
        for number, item in enumerate(value):
            if item is None:
                raise _InvalidElementError("null is not allowed in an array", at=number)
            try:
                check(item)
            except _InvalidElementError as problem:
                problem.within(number)
                raise

    return check_list


# Complex types: the element names come from the R4B model (so both levels agree on them); the checks of
# the elements the extraction reads are listed here.


@dataclass(frozen=True)
class _Spec:
    """One FHIR complex type or resource: its R4B model and the checks of the elements the extraction reads."""

    module: str
    name: str
    checks: tuple[tuple[str, Check], ...]


@dataclass(frozen=True)
class _Compiled:
    #: every element name of the type -> (the check of its value or None, its choice group or None), so
    #: that one dict lookup per key says whether it is allowed, how to check it and whether it is a choice
    elements: Mapping[str, tuple[Check | None, str | None]]
    required: tuple[tuple[str, tuple[str, ...]], ...]  # (element name for messages, its JSON names)


def _compile(spec: _Spec) -> _Compiled:
    model = getattr(importlib.import_module(f"fhir.resources.R4B.{spec.module}"), spec.name)
    names_of = {name: field.alias or name for name, field in model.model_fields.items()}
    required: list[tuple[str, tuple[str, ...]]] = [
        (names_of[name], (names_of[name],)) for name, field in model.model_fields.items() if field.is_required()
    ]
    required += [(names_of[name], (names_of[name],)) for name, _ in model.get_required_fields(None)]
    choices: dict[str, list[str]] = model.get_one_of_many_fields(None)
    for prefix, names in choices.items():
        if model.model_fields[names[0]].json_schema_extra.get("one_of_many_required"):
            required.append((f"{prefix}[x]", tuple(names)))
    unknown = [name for name, _ in spec.checks if name not in names_of.values()]
    if unknown:
        raise RuntimeError(f"{spec.name} has no elements {unknown} in fhir.resources R4B")  # a bug in this module
    checks = dict(spec.checks)
    choice_of = {name: prefix for prefix, names in choices.items() for name in names}
    elements = {name: (checks.get(name), choice_of.get(name)) for name in {*names_of.values(), "resourceType"}}
    return _Compiled(elements=elements, required=tuple(required))


def _object(spec: _Spec) -> Check:
    compiled: _Compiled | None = None

    def check(value: Any) -> None:
        nonlocal compiled
        if not isinstance(value, dict):
            raise _InvalidElementError(f"expected a {spec.name} (a JSON object), got {_json_type(value)}")
        if compiled is None:
            compiled = _compile(spec)  # on first use: imports the R4B model
        _check_fields(value, compiled, spec.name)

    return check


def _check_fields(value: dict[str, Any], compiled: _Compiled, type_name: str) -> None:
    elements = compiled.elements
    chosen: dict[str, str] | None = None
    for key, item in value.items():
        element = elements.get(key)
        if element is None:
            raise _InvalidElementError(f"is not an element of {type_name} in FHIR R4", at=key)
        if item is None:
            continue
        check, choice = element
        if check is not None:
            try:
                check(item)
            except _InvalidElementError as problem:
                problem.within(key)
                raise
        if choice is not None:
            if chosen is None:
                chosen = {}
            elif choice in chosen:
                message = f"given as {chosen[choice]} and {key}; a choice element takes one type"
                raise _InvalidElementError(message, at=f"{choice}[x]")
            chosen[choice] = key
    for label, options in compiled.required:
        if all(value.get(option) is None and value.get(f"_{option}") is None for option in options):
            what = f"one of {', '.join(options)}" if len(options) > 1 else "the element"
            raise _InvalidElementError(f"{what} is required", at=label)


_CODING = _object(_Spec("coding", "Coding", (("system", _uri), ("code", _code), ("display", _string))))
_CODEABLE = _object(_Spec("codeableconcept", "CodeableConcept", (("coding", _many(_CODING)), ("text", _string))))
_QUANTITY_CHECKS: Final = (
    ("value", _decimal),
    ("comparator", _code),
    ("unit", _string),
    ("system", _uri),
    ("code", _code),
)
_QUANTITY = _object(_Spec("quantity", "Quantity", _QUANTITY_CHECKS))
_AGE = _object(_Spec("age", "Age", _QUANTITY_CHECKS))
_DURATION = _object(_Spec("duration", "Duration", _QUANTITY_CHECKS))
_PERIOD = _object(_Spec("period", "Period", (("start", _date_time), ("end", _date_time))))
_RANGE = _object(_Spec("range", "Range", (("low", _QUANTITY), ("high", _QUANTITY))))
_REFERENCE = _object(_Spec("reference", "Reference", (("reference", _string), ("type", _uri), ("display", _string))))
_TIMING_REPEAT = _object(
    _Spec(
        "timing",
        "TimingRepeat",
        (
            ("boundsDuration", _DURATION),
            ("boundsPeriod", _PERIOD),
            ("boundsRange", _RANGE),
            ("frequency", _positive_int),
            ("period", _decimal),
            ("periodUnit", _code),
        ),
    )
)
_TIMING = _object(_Spec("timing", "Timing", (("repeat", _TIMING_REPEAT), ("code", _CODEABLE))))
_DOSE_AND_RATE = _object(_Spec("dosage", "DosageDoseAndRate", (("doseQuantity", _QUANTITY), ("doseRange", _RANGE))))
_DOSAGE = _object(
    _Spec(
        "dosage",
        "Dosage",
        (
            ("timing", _TIMING),
            ("asNeededBoolean", _boolean),
            ("asNeededCodeableConcept", _CODEABLE),
            ("route", _CODEABLE),
            ("doseAndRate", _many(_DOSE_AND_RATE)),
        ),
    )
)
_DISPENSE_REQUEST = _object(
    _Spec(
        "medicationrequest",
        "MedicationRequestDispenseRequest",
        (
            ("validityPeriod", _PERIOD),
            ("numberOfRepeatsAllowed", _unsigned_int),
            ("quantity", _QUANTITY),
            ("expectedSupplyDuration", _DURATION),
        ),
    )
)
_VALUE_CHECKS: Final = (
    ("valueQuantity", _QUANTITY),
    ("valueCodeableConcept", _CODEABLE),
    ("valueBoolean", _boolean),
    ("valueInteger", _integer),
    ("dataAbsentReason", _CODEABLE),
)
_COMPONENT = _object(_Spec("observation", "ObservationComponent", (("code", _CODEABLE), *_VALUE_CHECKS)))
_FAMILY_CONDITION = _object(_Spec("familymemberhistory", "FamilyMemberHistoryCondition", (("code", _CODEABLE),)))
_MEDICATION_SPEC: Final = _Spec("medication", "Medication", (("id", _id), ("code", _CODEABLE)))


_CONTAINED_MEDICATION = _object(_MEDICATION_SPEC)


def _contained(value: Any) -> None:
    """A contained resource: an object with a resourceType; a Medication (what medicationReference "#id"
    points at) is checked as one."""
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise _InvalidElementError("expected a contained resource (a JSON object with a resourceType)")
    if value["resourceType"] == "Medication":
        _CONTAINED_MEDICATION(value)


_MEDICATION_USE: Final = (
    ("id", _id),
    ("status", _code),
    ("subject", _REFERENCE),
    ("medicationCodeableConcept", _CODEABLE),
    ("medicationReference", _REFERENCE),
    ("contained", _many(_contained)),
)

#: The resources the extraction reads, and the checks of the elements it reads in each.
RESOURCE_SPECS: Final[Mapping[str, _Spec]] = {
    "Patient": _Spec(
        "patient",
        "Patient",
        (
            ("id", _id),
            ("gender", _code),
            ("birthDate", _date),
            ("deceasedBoolean", _boolean),
            ("deceasedDateTime", _date_time),
        ),
    ),
    "Observation": _Spec(
        "observation",
        "Observation",
        (
            ("id", _id),
            ("status", _code),
            ("code", _CODEABLE),
            ("subject", _REFERENCE),
            ("effectiveDateTime", _date_time),
            ("effectiveInstant", _instant),
            ("effectivePeriod", _PERIOD),
            ("issued", _instant),
            *_VALUE_CHECKS,
            ("component", _many(_COMPONENT)),
        ),
    ),
    "Condition": _Spec(
        "condition",
        "Condition",
        (
            ("id", _id),
            ("code", _CODEABLE),
            ("subject", _REFERENCE),
            ("verificationStatus", _CODEABLE),
            ("clinicalStatus", _CODEABLE),
            ("onsetDateTime", _date_time),
            ("onsetPeriod", _PERIOD),
            ("onsetAge", _AGE),
            ("recordedDate", _date_time),
            ("abatementDateTime", _date_time),
            ("abatementPeriod", _PERIOD),
        ),
    ),
    "MedicationRequest": _Spec(
        "medicationrequest",
        "MedicationRequest",
        (
            *_MEDICATION_USE,
            ("intent", _code),
            ("authoredOn", _date_time),
            ("dosageInstruction", _many(_DOSAGE)),
            ("dispenseRequest", _DISPENSE_REQUEST),
        ),
    ),
    "MedicationStatement": _Spec(
        "medicationstatement",
        "MedicationStatement",
        (
            *_MEDICATION_USE,
            ("effectiveDateTime", _date_time),
            ("effectivePeriod", _PERIOD),
            ("dateAsserted", _date_time),
            ("dosage", _many(_DOSAGE)),
        ),
    ),
    "FamilyMemberHistory": _Spec(
        "familymemberhistory",
        "FamilyMemberHistory",
        (
            ("id", _id),
            ("status", _code),
            ("patient", _REFERENCE),
            ("relationship", _CODEABLE),
            ("date", _date_time),
            ("condition", _many(_FAMILY_CONDITION)),
        ),
    ),
    "Medication": _MEDICATION_SPEC,
}


_RESOURCE_CHECKS: Final[Mapping[str, Check]] = {name: _object(spec) for name, spec in RESOURCE_SPECS.items()}


def check_elements(resource: Mapping[str, Any]) -> None:
    """The fast check of a resource the extraction uses (module docstring); `FhirInputError` naming the
    resource and the element at fault. Resource types the extraction does not read are not checked."""
    resource_type = resource.get("resourceType")
    check = _RESOURCE_CHECKS.get(resource_type) if isinstance(resource_type, str) else None
    if check is None:
        return
    try:
        check(resource)
    except _InvalidElementError as problem:
        where = f"{problem.path}: " if problem.parts else ""
        raise FhirInputError(
            f"{reference_of(resource)} is not a valid FHIR R4 {resource_type}: {where}{problem.message}"
        ) from None


def validator(level: ValidationLevel) -> Callable[[Mapping[str, Any]], None]:
    """The validation function of a level: `validate_resource` (R4B models) or `check_elements`."""
    if level == "full":
        return validate_resource
    if level == "elements":
        return check_elements
    raise ValueError(f"validation must be one of {', '.join(VALIDATION_LEVELS)}, got {level!r}")
