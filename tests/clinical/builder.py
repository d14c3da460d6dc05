"""A small builder of FHIR R4 collection Bundles for the clinical tests."""

from __future__ import annotations

import json
from typing import Any

from clinical.sources.bundle import BundleSource

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"


def concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


class BundleBuilder:
    """Collects resources for one patient (id "p1" by default) and builds a collection Bundle."""

    def __init__(
        self, patient_id: str = "p1", *, birth_date: str | None = "1950-03-15", gender: str = "female"
    ) -> None:
        self.patient_id = patient_id
        self.patient: dict[str, Any] = {"resourceType": "Patient", "id": patient_id, "gender": gender}
        if birth_date:
            self.patient["birthDate"] = birth_date
        self.resources: list[dict[str, Any]] = []
        self._counter = 0

    def _id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def add(self, resource: dict[str, Any]) -> dict[str, Any]:
        self.resources.append(resource)
        return resource

    def observation(
        self,
        code: str,
        when: str | None,
        *,
        value: float | None = None,
        unit: str | None = None,
        system: str = LOINC,
        status: str = "final",
        answer: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "id": self._id("obs"),
            "status": status,
            "code": concept(system, code),
            "subject": {"reference": f"Patient/{self.patient_id}"},
        }
        if when:
            resource["effectiveDateTime"] = when
        if value is not None:
            quantity: dict[str, Any] = {"value": value}
            if unit is not None:
                quantity.update({"unit": unit, "system": UCUM, "code": unit})
            resource["valueQuantity"] = quantity
        if answer is not None:
            resource["valueCodeableConcept"] = answer
        resource.update(extra)
        return self.add(resource)

    def condition(
        self,
        system: str,
        code: str,
        onset: str | None,
        *,
        verification: str | None = "confirmed",
        clinical: str | None = "active",
        **extra: Any,
    ) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "resourceType": "Condition",
            "id": self._id("cond"),
            "code": concept(system, code),
            "subject": {"reference": f"Patient/{self.patient_id}"},
        }
        if onset:
            resource["onsetDateTime"] = onset
        if verification:
            resource["verificationStatus"] = concept(
                "http://terminology.hl7.org/CodeSystem/condition-ver-status", verification
            )
        if clinical:
            resource["clinicalStatus"] = concept("http://terminology.hl7.org/CodeSystem/condition-clinical", clinical)
        resource.update(extra)
        return self.add(resource)

    def medication_request(
        self,
        code: str,
        display: str | None,
        authored: str | None,
        *,
        status: str = "active",
        intent: str = "order",
        **extra: Any,
    ) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": self._id("mr"),
            "status": status,
            "intent": intent,
            "medicationCodeableConcept": concept(RXNORM, code, display),
            "subject": {"reference": f"Patient/{self.patient_id}"},
        }
        if authored:
            resource["authoredOn"] = authored
        resource.update(extra)
        return self.add(resource)

    def medication_statement(
        self, code: str, display: str | None, *, status: str = "active", **extra: Any
    ) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "resourceType": "MedicationStatement",
            "id": self._id("ms"),
            "status": status,
            "medicationCodeableConcept": concept(RXNORM, code, display),
            "subject": {"reference": f"Patient/{self.patient_id}"},
        }
        resource.update(extra)
        return self.add(resource)

    def family_history(
        self,
        relationship: str,
        condition_system: str,
        condition_code: str,
        *,
        when: str | None = "2015-01-01",
        **extra: Any,
    ) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "resourceType": "FamilyMemberHistory",
            "id": self._id("fmh"),
            "status": "completed",
            "patient": {"reference": f"Patient/{self.patient_id}"},
            "relationship": concept("http://terminology.hl7.org/CodeSystem/v3-RoleCode", relationship),
            "condition": [{"code": concept(condition_system, condition_code)}],
        }
        if when:
            resource["date"] = when
        resource.update(extra)
        return self.add(resource)

    def bundle(self, bundle_type: str = "collection") -> dict[str, Any]:
        entries = [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in [self.patient, *self.resources]]
        return {"resourceType": "Bundle", "type": bundle_type, "entry": entries}

    def source(self) -> BundleSource:
        return BundleSource.from_bytes(json.dumps(self.bundle()).encode())
