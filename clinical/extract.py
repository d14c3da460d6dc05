"""FHIR R4 resources of one patient -> the ClinicalRecord at an index date (DESIGN.md variables).

    record = build_record(source, "patient-id", date(2024, 5, 1))

Rules (windows, plausibility limits, status handling and their sources: `clinical/data/rules.json`; code
lists: `clinical/data/code_lists/*.json`):

- Only data dated on or before the index date is used (which element dates each resource type:
  `clinical.fhir_values`). A partial date counts only when all of it lies on or before the index date.
  Resources without any date are ignored with a warning (family history excepted: a parent's fracture
  does not depend on when it was asked, so an undated FamilyMemberHistory counts, with a warning).
- Measurements (weight, height, BMI, DXA, smoking, alcohol): the latest value within the variable's
  look-back window. Implausible values are dropped with a warning and the next latest is used. Same-day
  values that disagree beyond a tolerance are averaged (numbers, status "derived") or left missing
  (categories), with a warning naming both resources.
- BMI absent -> derived from the latest weight and height in their windows (status "derived").
- Diagnoses and drug history ("ever before"): a matching resource -> True ("observed"). No matching
  resource while the record holds resources of that type -> False ("derived": absent from the record, named
  in one warning). No resources of that type at all -> missing.
- Statuses: Observation final/amended/corrected used; registered/preliminary/unknown ignored with a warning;
  cancelled/entered-in-error ignored. Condition verificationStatus refuted/entered-in-error ignored,
  unconfirmed/provisional/differential ignored with a warning; clinicalStatus resolved still counts for
  "prior" facts. MedicationRequest cancelled/entered-in-error ignored, draft and non-order intents ignored
  with a warning. MedicationStatement not-taken/entered-in-error ignored, intended ignored with a warning.
- Death: deceasedDateTime on or before the index date -> `PatientDeceasedError` (a partial death date
  counts when it may lie on or before the index date). deceasedBoolean true without a date ->
  `PatientDeceasedError` unless `allow_undated_death=True` (retrospective cohorts), then a warning.
- Age from birthDate in completed years; a partial birth date ("1950", "1950-07") is placed at the middle
  of its period (1 July / the 15th), status "derived", with a warning.
- Validation: the Patient and every resource a variable uses (matching code, usable status) is validated
  before its values are read: whole, with its R4B model (`validation="full"`, the default), or in the
  elements the extraction reads (`validation="elements"`, cohorts); see `clinical.fhir_check`.
- Source warnings (what the source could not provide, e.g. a type a server cannot search) come first.

Speed: each resource's codings are matched against every code list of its type once per record, its date
parsed once (date strings are cached per process) and its drug matched once; cohorts of NDJSON reach a
few thousand patients a second on 2 cores (bench/RESULTS.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from statistics import fmean
from typing import Any, Final

from clinical.codes import CodeEntry, code_index, code_list, codings, extraction_rules
from clinical.errors import FhirInputError, PatientDeceasedError, PatientNotFoundError
from clinical.fhir_check import ValidationLevel, validator
from clinical.fhir_values import (
    DatedResource,
    FhirDate,
    Measured,
    parse_fhir_date,
    quantity_value,
    reference_of,
    resource_date,
    validate_resource,
)
from clinical.medications import DrugMatch, Exposure, daily_dose_mg, exposure_of, match_drug, medication_concept
from clinical.medications import route_is_oral as _route_is_oral
from clinical.sources.base import CLINICAL_RESOURCE_TYPES, FhirSource, source_warnings
from clinical.types import ClinicalRecord, ClinicalVariables, Variable

FRACTURE_SITES: Final = ("hip", "vertebral", "forearm", "humerus", "other", "unspecified")
_ACTIVE_CLINICAL: Final = {"active", "recurrence", "relapse"}


# ---------------------------------------------------------------------------------------------------------
# Facts: one dated piece of evidence from one resource


@dataclass(frozen=True)
class Fact:
    """Evidence from one resource: its date, value, category (e.g. a fracture site) and reference."""

    when: date
    value: Any
    reference: str
    category: str = ""
    partial: bool = False


@dataclass(frozen=True)
class FractureEvent:
    """A fragility-relevant fracture on or before the index date (site from `code_lists/fractures.json`)."""

    site: str
    onset: date
    reference: str
    age_at_onset: float | None


@dataclass(frozen=True)
class _Coded:
    """An Observation or Condition whose code (or an Observation component's code) is in one code list."""

    resource: dict[str, Any]
    entry: CodeEntry | None  # the entry of `resource.code`, None when only components matched
    components: tuple[tuple[CodeEntry, Mapping[str, Any]], ...] = ()

    def values(self, wanted: Collection[str]) -> list[tuple[CodeEntry, Mapping[str, Any]]]:
        """(entry, element holding value[x]) of the resource itself and its components, in these categories."""
        found: list[tuple[CodeEntry, Mapping[str, Any]]] = []
        if self.entry is not None and self.entry.category in wanted:
            found.append((self.entry, self.resource))
        found.extend(item for item in self.components if item[0].category in wanted)
        return found


#: The code lists each resource type is classified against (once per record; see `_Context.coded`).
_OBSERVATION_LISTS: Final = ("body_measures", "dxa", "smoking", "alcohol", "falls")
_CONDITION_LISTS: Final = ("fractures", "falls", "conditions", "alcohol")


@dataclass
class _Context:
    patient_id: str
    index_date: date
    birth: FhirDate | None
    source: FhirSource
    resources: dict[str, list[dict[str, Any]]]
    validator: Callable[[Mapping[str, Any]], None] = validate_resource
    warnings: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    absent_false: list[str] = field(default_factory=list)
    validated: set[int] = field(default_factory=set)
    _dates: dict[int, DatedResource | None] = field(default_factory=dict)
    _coded: dict[str, dict[str, list[_Coded]]] = field(default_factory=dict)
    _drugs: dict[int, DrugMatch | None] = field(default_factory=dict)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def validate(self, resource: Mapping[str, Any]) -> None:
        key = id(resource)
        if key not in self.validated:
            self.validator(resource)
            self.validated.add(key)

    def coded(self, resource_type: str, list_name: str) -> list[_Coded]:
        """The resources of a type whose code is in a code list, in source order. Every resource's codings
        are matched against every list of its type in one pass, on first use."""
        by_list = self._coded.get(resource_type)
        if by_list is None:
            names = _OBSERVATION_LISTS if resource_type == "Observation" else _CONDITION_LISTS
            by_list = _classify(self.resources[resource_type], names, components=resource_type == "Observation")
            self._coded[resource_type] = by_list
        return by_list[list_name]

    def drug(self, resource: Mapping[str, Any]) -> DrugMatch | None:
        """The drug a MedicationRequest/MedicationStatement names (matched once per resource)."""
        key = id(resource)
        if key not in self._drugs:
            self._drugs[key] = match_drug(medication_concept(resource, self.source))
        return self._drugs[key]

    def dated(self, resource: Mapping[str, Any], variable: str) -> tuple[date, bool] | None:
        """(date, is_partial) of a resource if it lies on or before the index date, else None (with a warning)."""
        key = id(resource)
        if key in self._dates:
            found = self._dates[key]
        else:
            found = self._dates[key] = resource_date(resource, birth=self.birth)
        if found is None:
            self.warn(f"{variable}: {reference_of(resource)} has no date; ignored")
            return None
        if found.fallback:
            self.warn(
                f"{variable}: {reference_of(resource)} has no {_primary_element(resource)}; dated by {found.element}"
            )
        when = found.when.latest()
        if when > self.index_date:
            return None
        if found.when.is_partial:
            self.warn(f"{variable}: {reference_of(resource)} has a partial date {found.when}; taken as {when}")
        return when, found.when.is_partial


def _classify(
    resources: Sequence[dict[str, Any]], list_names: tuple[str, ...], *, components: bool
) -> dict[str, list[_Coded]]:
    index = code_index(list_names)
    by_list: dict[str, list[_Coded]] = {name: [] for name in list_names}
    for resource in resources:
        own = index.match_all(codings(resource.get("code")))
        parts: list[tuple[list[CodeEntry | None], Mapping[str, Any]]] = []
        if components:
            for component in resource.get("component") or ():
                if isinstance(component, Mapping):
                    parts.append((index.match_all(codings(component.get("code"))), component))
        for number, name in enumerate(list_names):
            matched: list[tuple[CodeEntry, Mapping[str, Any]]] = []
            for found, part in parts:
                entry = found[number]
                if entry is not None:
                    matched.append((entry, part))
            if own[number] is not None or matched:
                by_list[name].append(_Coded(resource, own[number], tuple(matched)))
    return by_list


def _primary_element(resource: Mapping[str, Any]) -> str:
    return {"Observation": "effective[x]", "Condition": "onset[x]", "MedicationStatement": "effective[x]"}.get(
        str(resource.get("resourceType")), "date"
    )


def _rules() -> Mapping[str, Any]:
    return extraction_rules()


def _window_start(ctx: _Context, variable: str) -> date:
    return ctx.index_date - timedelta(days=int(_rules()["lookback_days"][variable]["days"]))


# ---------------------------------------------------------------------------------------------------------
# Status filters


def _status_ok(ctx: _Context, resource: Mapping[str, Any], variable: str, rule: str, value: object) -> bool:
    rules = _rules()[rule]
    reference = reference_of(resource)
    if value in rules["use"]:
        return True
    if value in rules.get("ignore", ()):
        return False
    if value in rules.get("ignore_with_warning", ()):
        ctx.warn(f"{variable}: {reference} ignored (status {value!r})")
        return False
    ctx.warn(f"{variable}: {reference} ignored (unknown status {value!r})")
    return False


def _observation_ok(ctx: _Context, resource: Mapping[str, Any], variable: str) -> bool:
    return _status_ok(ctx, resource, variable, "observation_status", resource.get("status"))


def _condition_ok(ctx: _Context, resource: Mapping[str, Any], variable: str) -> bool:
    verification = _code_of(resource.get("verificationStatus"))
    return _status_ok(ctx, resource, variable, "condition_verification", verification)


def _code_of(concept: object) -> str | None:
    if not isinstance(concept, Mapping):
        return None
    for coding in concept.get("coding") or ():
        if isinstance(coding, Mapping) and isinstance(coding.get("code"), str):
            return str(coding["code"])
    return None


def _condition_active_at(ctx: _Context, resource: Mapping[str, Any]) -> bool:
    """Whether a Condition is still active at the index date (abatement after it, or active status)."""
    where = reference_of(resource)
    abatement: FhirDate | None = None
    if resource.get("abatementDateTime"):
        abatement = parse_fhir_date(resource["abatementDateTime"], where=f"{where}.abatementDateTime")
    elif isinstance(resource.get("abatementPeriod"), Mapping) and resource["abatementPeriod"].get("end"):
        abatement = parse_fhir_date(resource["abatementPeriod"]["end"], where=f"{where}.abatementPeriod.end")
    if abatement is not None:
        return abatement.earliest() > ctx.index_date
    if resource.get("abatementBoolean") is True:
        return False
    clinical = _code_of(resource.get("clinicalStatus"))
    return clinical is None or clinical in _ACTIVE_CLINICAL


# ---------------------------------------------------------------------------------------------------------
# Patient: death, age, sex


def _check_deceased(patient: Mapping[str, Any], index_date: date, *, allow_undated: bool, ctx_warn: list[str]) -> None:
    where = reference_of(patient)
    if patient.get("deceasedDateTime"):
        death = parse_fhir_date(patient["deceasedDateTime"], where=f"{where}.deceasedDateTime")
        if death.earliest() <= index_date:
            raise PatientDeceasedError(
                f"{where} died on {death}, on or before the index date {index_date}; "
                "choose an index date before the death"
            )
        return
    if patient.get("deceasedBoolean") is True:
        if not allow_undated:
            raise PatientDeceasedError(
                f"{where} is recorded as deceased without a date: cannot tell whether death preceded the "
                f"index date {index_date} (retrospective cohorts may allow this explicitly)"
            )
        ctx_warn.append(f"patient recorded as deceased without a date; assumed alive on {index_date}")


def _age(ctx: _Context, patient: Mapping[str, Any]) -> Variable:
    reference = reference_of(patient)
    if ctx.birth is None:
        ctx.absent.append("age_years (no birthDate)")
        return Variable.missing()
    birthday = ctx.birth.midpoint()
    if birthday > ctx.index_date:
        raise FhirInputError(f"{reference}.birthDate {ctx.birth} is after the index date {ctx.index_date}")
    years = (
        ctx.index_date.year
        - birthday.year
        - ((ctx.index_date.month, ctx.index_date.day) < (birthday.month, birthday.day))
    )
    status = "observed"
    if ctx.birth.is_partial:
        status = "derived"
        ctx.warn(
            f"age_years: birthDate {ctx.birth} has {ctx.birth.precision} precision; birth taken as {birthday} "
            f"(age may be off by up to {'6 months' if ctx.birth.month is None else '2 weeks'})"
        )
    return Variable(value=float(years), status=status, sources=[reference], effective=ctx.index_date, unit="a")


def _sex(ctx: _Context, patient: Mapping[str, Any]) -> Variable:
    gender = patient.get("gender")
    if gender in {"female", "male", "other", "unknown"}:
        return Variable(value=str(gender), status="observed", sources=[reference_of(patient)])
    ctx.absent.append("sex (no Patient.gender)")
    return Variable.missing()


# ---------------------------------------------------------------------------------------------------------
# Observations: numeric measures


def _numeric_facts(ctx: _Context, variable: str, kind: str, categories: Sequence[str], codes_list: str) -> list[Fact]:
    limits = _rules()["plausible"][kind]
    facts: list[Fact] = []
    wanted = frozenset(categories)
    for coded in ctx.coded("Observation", codes_list):
        matches = coded.values(wanted)
        if not matches:
            continue
        resource = coded.resource
        reference = reference_of(resource)
        if not _observation_ok(ctx, resource, variable):
            continue
        ctx.validate(resource)
        dated = ctx.dated(resource, variable)
        if dated is None:
            continue
        for entry, element in matches:
            if "valueQuantity" not in element:
                reason = _code_of(element.get("dataAbsentReason")) or "no valueQuantity"
                ctx.warn(f"{variable}: {reference} has no numeric value ({reason}); ignored")
                continue
            measured: Measured | None = quantity_value(
                element["valueQuantity"], kind, where=f"{reference}.valueQuantity", unit_optional=kind == "dxa_t_score"
            )
            if measured is None:
                ctx.warn(f"{variable}: {reference} has a Quantity without a value; ignored")
                continue
            if not limits["min"] <= measured.value <= limits["max"]:
                ctx.warn(
                    f"{variable}: {reference} value {measured.value:g} is implausible "
                    f"(outside {limits['min']:g}-{limits['max']:g}); dropped"
                )
                continue
            facts.append(Fact(dated[0], measured.value, reference, entry.category, dated[1]))
    return facts


def _latest_numeric(ctx: _Context, variable: str, facts: list[Fact], tolerance: float, unit: str) -> Variable:
    start = _window_start(ctx, variable)
    in_window = [fact for fact in facts if fact.when >= start]
    if not in_window:
        if facts:
            latest = max(fact.when for fact in facts)
            ctx.absent.append(f"{variable} (latest value {latest} is older than the look-back from {start})")
        else:
            ctx.absent.append(f"{variable} (no usable observation)")
        return Variable.missing()
    latest_day = max(fact.when for fact in in_window)
    same_day = sorted((fact for fact in in_window if fact.when == latest_day), key=lambda fact: fact.reference)
    values = [fact.value for fact in same_day]
    references = sorted({fact.reference for fact in same_day})
    if max(values) - min(values) > tolerance:
        ctx.warn(
            f"{variable}: conflicting values on {latest_day} ({', '.join(f'{v:g}' for v in values)} from "
            f"{', '.join(references)}); their mean is used"
        )
        return Variable(value=fmean(values), status="derived", sources=references, effective=latest_day, unit=unit)
    value = values[0] if len(set(values)) == 1 else fmean(values)
    return Variable(value=value, status="observed", sources=references, effective=latest_day, unit=unit)


def _body_measures(ctx: _Context) -> tuple[Variable, Variable, Variable]:
    tolerance = _rules()["same_day_conflict_tolerance"]
    weight = _latest_numeric(
        ctx,
        "weight_kg",
        _numeric_facts(ctx, "weight_kg", "weight_kg", ["weight"], "body_measures"),
        tolerance["weight_kg"],
        "kg",
    )
    height = _latest_numeric(
        ctx,
        "height_cm",
        _numeric_facts(ctx, "height_cm", "height_cm", ["height"], "body_measures"),
        tolerance["height_cm"],
        "cm",
    )
    bmi_facts = _numeric_facts(ctx, "bmi_kg_m2", "bmi_kg_m2", ["bmi"], "body_measures")
    missing_before = len(ctx.absent)
    bmi = _latest_numeric(ctx, "bmi_kg_m2", bmi_facts, tolerance["bmi_kg_m2"], "kg/m2")
    derived = _derived_bmi(weight, height)
    if bmi.is_missing and derived is not None:
        del ctx.absent[missing_before:]
        limits = _rules()["plausible"]["bmi_kg_m2"]
        if not limits["min"] <= derived.value <= limits["max"]:  # type: ignore[operator]
            ctx.warn(f"bmi_kg_m2: derived value {derived.value:g} is implausible; dropped")
            ctx.absent.append("bmi_kg_m2 (derived value implausible)")
            return weight, height, Variable.missing()
        return weight, height, derived
    if not bmi.is_missing and derived is not None and bmi.effective == derived.effective:
        gap = abs(float(bmi.value) - float(derived.value))  # type: ignore[arg-type]
        if gap > float(_rules()["bmi_consistency_tolerance_kg_m2"]):
            ctx.warn(
                f"bmi_kg_m2: recorded {float(bmi.value):g} disagrees with {float(derived.value):g} "  # type: ignore[arg-type]
                f"from weight and height of {bmi.effective}; the recorded value is used"
            )
    return weight, height, bmi


def _derived_bmi(weight: Variable, height: Variable) -> Variable | None:
    if weight.is_missing or height.is_missing:
        return None
    metres = float(height.value) / 100.0  # type: ignore[arg-type]
    value = float(weight.value) / (metres * metres)  # type: ignore[arg-type]
    dates = [d for d in (weight.effective, height.effective) if d is not None]
    return Variable(
        value=value,
        status="derived",
        sources=sorted({*weight.sources, *height.sources}),
        effective=max(dates) if dates else None,
        unit="kg/m2",
    )


def _dxa(ctx: _Context) -> Variable:
    variable = "dxa_t_score_min"
    diagnostic = [
        "lumbar_spine", "hip", "hip_left", "hip_right", "femur", "femur_left", "femur_right",
        "forearm", "forearm_left", "forearm_right",
    ]  # fmt: skip
    for coded in ctx.coded("Observation", "dxa"):
        if coded.values({"non_diagnostic"}):
            reference = reference_of(coded.resource)
            ctx.warn(f"{variable}: {reference} is a non-diagnostic DXA site (calcaneus/humerus); ignored")
    facts = _numeric_facts(ctx, variable, "dxa_t_score", diagnostic, "dxa")
    start = _window_start(ctx, variable)
    in_window = [fact for fact in facts if fact.when >= start]
    if not in_window:
        reason = f"latest DXA {max(f.when for f in facts)} is older than {start}" if facts else "no DXA T-score"
        ctx.absent.append(f"{variable} ({reason})")
        return Variable.missing()
    by_site: dict[str, list[Fact]] = defaultdict(list)
    for fact in in_window:
        by_site[fact.category].append(fact)
    per_site: list[Fact] = []
    tolerance = float(_rules()["same_day_conflict_tolerance"]["dxa_t_score"])
    for site, site_facts in sorted(by_site.items()):
        latest_day = max(f.when for f in site_facts)
        same_day = [f for f in site_facts if f.when == latest_day]
        values = [f.value for f in same_day]
        if max(values) - min(values) > tolerance:
            ctx.warn(
                f"{variable}: conflicting {site} T-scores on {latest_day} "
                f"({', '.join(sorted(f.reference for f in same_day))}); the lowest is used"
            )
        per_site.append(min(same_day, key=lambda f: f.value))
    lowest = min(per_site, key=lambda f: f.value)
    sources = sorted({f.reference for f in per_site if f.value == lowest.value})
    return Variable(value=lowest.value, status="observed", sources=sources, effective=lowest.when, unit="{T-score}")


# ---------------------------------------------------------------------------------------------------------
# Observations: categories (smoking, alcohol, falls question)


def _smoking(ctx: _Context) -> Variable:
    variable = "current_smoker"
    lookup = code_list("smoking")
    facts: list[Fact] = []
    for coded in ctx.coded("Observation", "smoking"):
        resource, entry = coded.resource, coded.entry
        if entry is None or entry.category != "question" or not _observation_ok(ctx, resource, variable):
            continue
        ctx.validate(resource)
        dated = ctx.dated(resource, variable)
        if dated is None:
            continue
        answer = lookup.match_codeable(resource.get("valueCodeableConcept"))
        category = answer.category if answer is not None else "unlisted"
        facts.append(Fact(dated[0], category, reference_of(resource)))
    start = _window_start(ctx, variable)
    in_window = [f for f in facts if f.when >= start]
    if not in_window:
        ctx.absent.append(f"{variable} ({'no smoking status since ' + str(start) if facts else 'no smoking status'})")
        return Variable.missing()
    latest_day = max(f.when for f in in_window)
    same_day = [f for f in in_window if f.when == latest_day]
    answers = {f.value for f in same_day}
    references = sorted(f.reference for f in same_day)
    if len(answers) > 1:
        ctx.warn(f"{variable}: conflicting smoking status on {latest_day} ({', '.join(references)}); left missing")
        ctx.absent.append(f"{variable} (conflicting answers)")
        return Variable.missing()
    answer = answers.pop()
    if answer not in {"current", "not_current"}:
        ctx.warn(f"{variable}: {', '.join(references)} answers an unknown or unlisted smoking status; left missing")
        ctx.absent.append(f"{variable} (status unknown)")
        return Variable.missing()
    return Variable(value=answer == "current", status="observed", sources=references, effective=latest_day)


def _alcohol(ctx: _Context) -> Variable:
    variable = "alcohol_3_or_more_units_day"
    lookup = code_list("alcohol")
    threshold = float(lookup.document["minimum_units_per_day"])
    audit_floor = float(lookup.document["audit_total_below_which_not_daily_heavy"])
    start = _window_start(ctx, variable)
    drinks = [
        f for f in _numeric_facts(ctx, variable, "drinks_per_day", ["drinks_per_day"], "alcohol") if f.when >= start
    ]
    if drinks:
        latest_day = max(f.when for f in drinks)
        same_day = [f for f in drinks if f.when == latest_day]
        amount = max(f.value for f in same_day)
        return Variable(
            value=amount >= threshold,
            status="observed",
            sources=sorted(f.reference for f in same_day),
            effective=latest_day,
        )
    for condition in _conditions_matching(ctx, variable, "alcohol", {"disorder"}):
        if _condition_active_at(ctx, condition.resource):
            ctx.warn(f"{variable}: taken as yes from an alcohol use disorder ({condition.reference})")
            return Variable(value=True, status="derived", sources=[condition.reference], effective=condition.when)
    audits: list[Fact] = []
    for coded in ctx.coded("Observation", "alcohol"):
        resource, entry = coded.resource, coded.entry
        if entry is None or entry.category != "audit_total" or not _observation_ok(ctx, resource, variable):
            continue
        ctx.validate(resource)
        dated = ctx.dated(resource, variable)
        if dated is None or dated[0] < start:
            continue
        score = resource.get("valueInteger")
        if score is None and isinstance(resource.get("valueQuantity"), Mapping):
            score = resource["valueQuantity"].get("value")
        if isinstance(score, int | float) and not isinstance(score, bool):
            audits.append(Fact(dated[0], float(score), reference_of(resource)))
    if audits:
        latest = max(audits, key=lambda f: (f.when, f.value))
        if latest.value < audit_floor:
            return Variable(value=False, status="derived", sources=[latest.reference], effective=latest.when)
        ctx.warn(
            f"{variable}: AUDIT score {latest.value:g} ({latest.reference}) cannot show whether intake is >= "
            f"{threshold:g} units a day; left missing"
        )
    ctx.absent.append(f"{variable} (no alcohol intake recorded since {start})")
    return Variable.missing()


# ---------------------------------------------------------------------------------------------------------
# Conditions


@dataclass(frozen=True)
class _ConditionHit:
    resource: Mapping[str, Any]
    entry: CodeEntry
    when: date
    reference: str


def _conditions_matching(ctx: _Context, variable: str, list_name: str, categories: set[str]) -> list[_ConditionHit]:
    hits: list[_ConditionHit] = []
    for coded in ctx.coded("Condition", list_name):
        resource, entry = coded.resource, coded.entry
        if entry is None or entry.category not in categories or not _condition_ok(ctx, resource, variable):
            continue
        ctx.validate(resource)
        dated = ctx.dated(resource, variable)
        if dated is None:
            continue
        hits.append(_ConditionHit(resource, entry, dated[0], reference_of(resource)))
    return sorted(hits, key=lambda hit: (hit.when, hit.reference))


def _ever(ctx: _Context, variable: str, hits: Sequence[Any], resource_types: Sequence[str]) -> Variable:
    """True from hits (with .when/.reference); else False if the record holds those resource types."""
    if hits:
        return Variable(
            value=True,
            status="observed",
            sources=sorted({hit.reference for hit in hits}),
            effective=max(hit.when for hit in hits),
        )
    if any(ctx.resources[t] for t in resource_types):
        ctx.absent_false.append(variable)
        return Variable(value=False, status="derived")
    ctx.absent.append(f"{variable} (the source holds no {' or '.join(resource_types)} for the patient)")
    return Variable.missing()


def fracture_events(ctx: _Context) -> list[FractureEvent]:
    """Fragility-relevant fractures on or before the index date (adult, not at an excluded site)."""
    min_age = float(_rules()["fragility_fracture_min_age_years"]["value"])
    events: list[FractureEvent] = []
    hits = _conditions_matching(ctx, "prior_fragility_fracture", "fractures", {*FRACTURE_SITES, "excluded"})
    for hit in hits:
        if hit.entry.category == "excluded":
            ctx.warn(
                f"prior_fragility_fracture: {hit.reference} ({hit.entry.display}) is not a fragility site; ignored"
            )
            continue
        age: float | None = None
        if ctx.birth is not None:
            age = (hit.when - ctx.birth.midpoint()).days / 365.25
            if age < min_age:
                ctx.warn(
                    f"prior_fragility_fracture: {hit.reference} occurred at age {int(age)} (< {min_age:g}); "
                    "not counted as a fragility fracture"
                )
                continue
        else:
            ctx.warn(f"prior_fragility_fracture: age at {hit.reference} unknown (no birthDate); counted")
        events.append(FractureEvent(hit.entry.category, hit.when, hit.reference, age))
    return events


@dataclass(frozen=True)
class _Hit:
    """A dated piece of evidence for an "ever before" variable."""

    when: date
    reference: str


def _fracture_variables(ctx: _Context) -> dict[str, Variable]:
    events = fracture_events(ctx)

    def hits(sites: set[str] | None, since: date | None = None) -> list[_Hit]:
        return [
            _Hit(e.onset, e.reference)
            for e in events
            if (sites is None or e.site in sites) and (since is None or e.onset >= since)
        ]

    recent_start = _window_start(ctx, "recent_fracture_2y")
    return {
        "prior_fragility_fracture": _ever(ctx, "prior_fragility_fracture", hits(None), ["Condition"]),
        "prior_hip_fracture": _ever(ctx, "prior_hip_fracture", hits({"hip"}), ["Condition"]),
        "prior_vertebral_fracture": _ever(ctx, "prior_vertebral_fracture", hits({"vertebral"}), ["Condition"]),
        "prior_forearm_fracture": _ever(ctx, "prior_forearm_fracture", hits({"forearm"}), ["Condition"]),
        "prior_humerus_fracture": _ever(ctx, "prior_humerus_fracture", hits({"humerus"}), ["Condition"]),
        "prior_other_fracture": _ever(ctx, "prior_other_fracture", hits({"other", "unspecified"}), ["Condition"]),
        "recent_fracture_2y": _ever(ctx, "recent_fracture_2y", hits(None, recent_start), ["Condition"]),
    }


def _condition_variable(ctx: _Context, variable: str, categories: set[str]) -> Variable:
    hits = []
    for hit in _conditions_matching(ctx, variable, "conditions", categories):
        if hit.entry.attribute("requires_active") and not _condition_active_at(ctx, hit.resource):
            ctx.warn(f"{variable}: {hit.reference} ({hit.entry.display}) no longer active at the index date; ignored")
            continue
        if hit.entry.category == "hyperthyroidism":
            ctx.warn(f"{variable}: {hit.reference} hyperthyroidism counted; FRAX counts it only when untreated")
        hits.append(hit)
    return _ever(ctx, variable, hits, ["Condition"])


_SECONDARY: Final = {
    "type1_diabetes",
    "osteogenesis_imperfecta",
    "hyperthyroidism",
    "hypogonadism_premature_menopause",
    "malnutrition_malabsorption",
    "chronic_liver_disease",
}


# ---------------------------------------------------------------------------------------------------------
# Falls and family history


def _falls(ctx: _Context) -> Variable:
    variable = "falls_last_12m"
    start = _window_start(ctx, variable)
    lookup = code_list("falls")
    yes: list[Fact] = []
    no: list[Fact] = []
    for hit in _conditions_matching(ctx, variable, "falls", {"fall"}):
        if hit.when >= start:
            yes.append(Fact(hit.when, True, hit.reference))
    for coded in ctx.coded("Observation", "falls"):
        resource, entry = coded.resource, coded.entry
        if entry is None or entry.category not in {"fall", "falls_question"}:
            continue
        if not _observation_ok(ctx, resource, variable):
            continue
        ctx.validate(resource)
        dated = ctx.dated(resource, variable)
        if dated is None or dated[0] < start:
            continue
        reference = reference_of(resource)
        answer = _fall_answer(resource, entry.category, lookup)
        if answer is None:
            ctx.warn(f"{variable}: {reference} has no readable answer; ignored")
            continue
        (yes if answer else no).append(Fact(dated[0], answer, reference))
    if yes:
        return Variable(
            value=True, status="observed", sources=sorted(f.reference for f in yes), effective=max(f.when for f in yes)
        )
    if no:
        latest = max(no, key=lambda f: f.when)
        return Variable(value=False, status="observed", sources=[latest.reference], effective=latest.when)
    ctx.absent.append(f"{variable} (no fall or falls screening since {start})")
    return Variable.missing()


def _fall_answer(resource: Mapping[str, Any], category: str, lookup: Any) -> bool | None:
    if category == "fall":
        return resource.get("valueBoolean", True) is not False
    if isinstance(resource.get("valueBoolean"), bool):
        return bool(resource["valueBoolean"])
    for key in ("valueInteger",):
        if isinstance(resource.get(key), int):
            return int(resource[key]) > 0
    if isinstance(resource.get("valueQuantity"), Mapping) and isinstance(
        resource["valueQuantity"].get("value"), int | float
    ):
        return float(resource["valueQuantity"]["value"]) > 0
    answer = lookup.match_codeable(resource.get("valueCodeableConcept"))
    if answer is not None and answer.category in {"answer_yes", "answer_no"}:
        return bool(answer.category == "answer_yes")
    return None


def _parental_hip_fracture(ctx: _Context) -> Variable:
    variable = "parental_hip_fracture"
    relations = code_list("family_history")
    fractures = code_list("fractures")
    parents_seen: list[str] = []
    hits: list[Fact] = []
    for resource in ctx.resources["FamilyMemberHistory"]:
        reference = reference_of(resource)
        if not _status_ok(ctx, resource, variable, "family_history_status", resource.get("status")):
            continue
        relation = relations.match_codeable(resource.get("relationship"))
        if relation is None:
            continue
        if relation.category != "parent":
            ctx.warn(f"{variable}: {reference} is about a {relation.display}, not a biological parent; ignored")
            continue
        ctx.validate(resource)
        when: date | None = None
        if resource.get("date"):
            recorded = parse_fhir_date(resource["date"], where=f"{reference}.date")
            if recorded.latest() > ctx.index_date:
                continue
            when = recorded.latest()
        else:
            ctx.warn(f"{variable}: {reference} has no date; counted (a parent's history does not depend on it)")
        parents_seen.append(reference)
        for condition in resource.get("condition") or ():
            entry = fractures.match_codeable((condition or {}).get("code") if isinstance(condition, Mapping) else None)
            if entry is not None and entry.category == "hip":
                hits.append(Fact(when or date.min, True, reference))
    if hits:
        dates = [f.when for f in hits if f.when != date.min]
        return Variable(
            value=True,
            status="observed",
            sources=sorted({f.reference for f in hits}),
            effective=max(dates) if dates else None,
        )
    if parents_seen:
        ctx.absent_false.append(variable)
        return Variable(value=False, status="derived", sources=sorted(parents_seen))
    ctx.absent.append(f"{variable} (no family history of a parent)")
    return Variable.missing()


# ---------------------------------------------------------------------------------------------------------
# Medications


@dataclass(frozen=True)
class _MedicationUse:
    resource: Mapping[str, Any]
    drug: DrugMatch
    when: date
    reference: str


def _medication_uses(ctx: _Context, variable: str, category: str) -> list[_MedicationUse]:
    uses: list[_MedicationUse] = []
    for resource_type in ("MedicationRequest", "MedicationStatement"):
        for resource in ctx.resources[resource_type]:
            drug = ctx.drug(resource)
            if drug is None or drug.category != category:
                continue
            status = resource.get("status")
            if resource_type == "MedicationRequest":
                if not _status_ok(ctx, resource, variable, "medication_request_status", status):
                    continue
                if not _status_ok(ctx, resource, variable, "medication_request_intent", resource.get("intent")):
                    continue
            elif not _status_ok(ctx, resource, variable, "medication_statement_status", status):
                continue
            ctx.validate(resource)
            dated = ctx.dated(resource, variable)
            if dated is None:
                continue
            uses.append(_MedicationUse(resource, drug, dated[0], reference_of(resource)))
    return sorted(uses, key=lambda use: (use.when, use.reference))


def _glucocorticoids(ctx: _Context) -> Variable:
    variable = "glucocorticoids"
    rules = _rules()["glucocorticoid"]
    min_dose = float(rules["min_prednisolone_mg_per_day"])
    min_days = int(rules["min_duration_days"])
    gap = timedelta(days=int(rules["merge_gap_days"]))
    qualifying: list[tuple[Exposure, float | None]] = []
    assumed: list[str] = []
    for use in _medication_uses(ctx, variable, "glucocorticoid"):
        dosages = use.resource.get("dosageInstruction") or use.resource.get("dosage") or ()
        oral = use.drug.oral if use.drug.oral is not None else _route_is_oral(dosages)
        if oral is False:
            ctx.warn(f"{variable}: {use.reference} is not an oral glucocorticoid; ignored")
            continue
        if oral is None:
            assumed.append(f"{use.reference} route unknown, taken as oral")
        exposure = exposure_of(use.resource, use.when, ctx.index_date, use.drug.display)
        dose = daily_dose_mg(dosages, use.drug.display)
        equivalent = dose * use.drug.prednisolone_factor if dose is not None and use.drug.prednisolone_factor else None
        if equivalent is not None and equivalent < min_dose:
            ctx.warn(
                f"{variable}: {use.reference} at {equivalent:.3g} mg/day prednisolone-equivalent is below the FRAX "
                f"threshold of {min_dose:g} mg/day; not counted"
            )
            continue
        qualifying.append((exposure, equivalent))
    known = sorted((e for e, _ in qualifying if e.end is not None), key=lambda e: e.start)
    spans: list[tuple[date, date, list[str]]] = []
    for exposure in known:
        assert exposure.end is not None
        if spans and exposure.start <= spans[-1][1] + gap:
            start, end, refs = spans[-1]
            spans[-1] = (start, max(end, exposure.end), [*refs, exposure.reference])
        else:
            spans.append((exposure.start, exposure.end, [exposure.reference]))
    long_refs = [ref for start, end, refs in spans if (end - start).days >= min_days for ref in refs]
    for start, end, refs in spans:
        if (end - start).days < min_days:
            ctx.warn(
                f"{variable}: {', '.join(refs)} lasted {(end - start).days} days (< {min_days}); not counted as FRAX "
                "glucocorticoid exposure"
            )
    unknown = [(e, dose) for e, dose in qualifying if e.end is None]
    sources = set(long_refs)
    for exposure, dose in unknown:
        detail = "duration unknown" if dose is not None else "dose and duration unknown"
        assumed.append(f"{exposure.reference} {detail}")
        sources.add(exposure.reference)
    for exposure, dose in qualifying:
        if dose is None and exposure.reference in long_refs:
            assumed.append(f"{exposure.reference} dose unknown")
    if sources:
        if assumed:
            ctx.warn(f"{variable}: counted as FRAX exposure with assumptions ({'; '.join(sorted(set(assumed)))})")
        effective = max(e.start for e, _ in qualifying if e.reference in sources)
        return Variable(value=True, status="observed", sources=sorted(sources), effective=effective)
    return _ever(ctx, variable, [], ["MedicationRequest", "MedicationStatement"])


def _osteoporosis_treatment(ctx: _Context) -> Variable:
    variable = "osteoporosis_treatment"
    uses = _medication_uses(ctx, variable, "osteoporosis_treatment")
    return _ever(ctx, variable, uses, ["MedicationRequest", "MedicationStatement"])


# ---------------------------------------------------------------------------------------------------------
# Entry point


def _collect(source: FhirSource, patient_id: str) -> dict[str, list[dict[str, Any]]]:
    resources: dict[str, list[dict[str, Any]]] = {t: [] for t in CLINICAL_RESOURCE_TYPES}
    for resource in source.resources(patient_id, CLINICAL_RESOURCE_TYPES):
        resource_type = resource.get("resourceType")
        if resource_type in resources:
            resources[str(resource_type)].append(resource)
        else:
            raise FhirInputError(
                f"{source.describe()} returned a {resource_type!r} where {', '.join(CLINICAL_RESOURCE_TYPES)} "
                "were asked for"
            )
    return resources


def build_record(
    source: FhirSource,
    patient_id: str,
    index_date: date,
    *,
    allow_undated_death: bool = False,
    validation: ValidationLevel = "full",
) -> ClinicalRecord:
    """The ClinicalRecord of `patient_id` at `index_date` from a FHIR source (rules: module docstring).

    `validation`: "full" validates every resource used with its fhir.resources R4B model; "elements" (what
    cohort runs use) checks only the elements the extraction reads (`clinical.fhir_check`). Both give the
    same record for valid resources and a `FhirInputError` naming the resource for one malformed in what
    the extraction reads. Warnings of the source itself (`SourceWarnings`, e.g. a server that cannot
    search a resource type) come first in the record's warnings.

    Errors: `PatientNotFoundError` (no such Patient), `PatientDeceasedError` (died on or before the index
    date), `FhirInputError` (malformed resources, unknown units, a birth date after the index date).
    """
    if not isinstance(index_date, date):
        raise TypeError(f"index_date must be a datetime.date, got {type(index_date).__name__}")
    validate = validator(validation)
    patient = source.patient(patient_id)
    if patient.get("resourceType") != "Patient":
        raise PatientNotFoundError(
            f"{source.describe()}: {patient_id!r} is a {patient.get('resourceType')}, not a Patient"
        )
    validate(patient)
    early_warnings: list[str] = []
    _check_deceased(patient, index_date, allow_undated=allow_undated_death, ctx_warn=early_warnings)
    birth = (
        parse_fhir_date(patient["birthDate"], where=f"{reference_of(patient)}.birthDate")
        if patient.get("birthDate")
        else None
    )
    ctx = _Context(
        patient_id, index_date, birth, source, _collect(source, patient_id), validator=validate, warnings=early_warnings
    )

    weight, height, bmi = _body_measures(ctx)
    values: dict[str, Variable] = {
        "age_years": _age(ctx, patient),
        "sex": _sex(ctx, patient),
        "weight_kg": weight,
        "height_cm": height,
        "bmi_kg_m2": bmi,
        **_fracture_variables(ctx),
        "falls_last_12m": _falls(ctx),
        "parental_hip_fracture": _parental_hip_fracture(ctx),
        "current_smoker": _smoking(ctx),
        "glucocorticoids": _glucocorticoids(ctx),
        "rheumatoid_arthritis": _condition_variable(ctx, "rheumatoid_arthritis", {"rheumatoid_arthritis"}),
        "secondary_osteoporosis": _condition_variable(ctx, "secondary_osteoporosis", _SECONDARY),
        "alcohol_3_or_more_units_day": _alcohol(ctx),
        "dxa_t_score_min": _dxa(ctx),
        "osteoporosis_diagnosis": _condition_variable(ctx, "osteoporosis_diagnosis", {"osteoporosis"}),
        "osteoporosis_treatment": _osteoporosis_treatment(ctx),
    }
    warnings = [*dict.fromkeys(source_warnings(source, patient_id)), *ctx.warnings]
    if ctx.absent_false:
        warnings.append(f"not found in the record, taken as absent: {', '.join(ctx.absent_false)}")
    if ctx.absent:
        warnings.append(f"missing: {'; '.join(ctx.absent)}")
    return ClinicalRecord(
        patient_id=patient_id,
        index_date=index_date,
        variables=ClinicalVariables(**values),
        warnings=warnings,
    )
