"""Code lists as data: lookups over the versioned JSON files in `clinical/data/code_lists/`.

Each file names its sources (papers with DOIs, VSAC value set OIDs, US Core, Synthea modules) and each
entry its system, code (or ICD-10-CM prefix), display and category. Nothing in the extraction compares
a code literal: it asks `code_list("fractures").match(coding)` for the entry and reads its category.

ICD-10-CM entries are prefixes matched on the code without its dot, longest prefix first, so that
"M80.08XA" finds "M80.08" (vertebra) before "M80" (site unspecified).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Final

SNOMED: Final = "http://snomed.info/sct"
LOINC: Final = "http://loinc.org"
ICD10CM: Final = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM: Final = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM: Final = "http://unitsofmeasure.org"
V3_ROLE_CODE: Final = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"

CODE_LIST_NAMES: Final = (
    "body_measures",
    "dxa",
    "fractures",
    "falls",
    "smoking",
    "alcohol",
    "family_history",
    "conditions",
    "medications",
)


@dataclass(frozen=True)
class CodeEntry:
    """One listed code or ICD-10-CM prefix, with the category it stands for in its list."""

    system: str
    code: str
    display: str
    category: str
    is_prefix: bool = False
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def attribute(self, name: str, default: Any = None) -> Any:
        return self.attributes.get(name, default)


def normalize_icd10(code: str) -> str:
    """ICD-10-CM code without dot, spaces or case differences: "m80.08xa" -> "M8008XA"."""
    return re.sub(r"[\s.]", "", code).upper()


class CodeList:
    """The entries of one code-list file, indexed for `match(system, code)`."""

    def __init__(self, name: str, document: Mapping[str, Any]) -> None:
        self.name = name
        self.version = str(document.get("version", ""))
        self.sources: tuple[str, ...] = tuple(document.get("sources", ()))
        self.document = document
        self._exact: dict[tuple[str, str], CodeEntry] = {}
        self._prefixes: list[tuple[str, str, CodeEntry]] = []
        for raw in (*document.get("codes", ()), *document.get("drugs", ()), *document.get("ingredients", ())):
            if raw.get("code") is None:
                continue
            entry = _entry(raw, is_prefix=False)
            self._exact[(entry.system, entry.code)] = entry
        for raw in document.get("prefixes", ()):
            entry = _entry(raw, is_prefix=True)
            self._prefixes.append((entry.system, normalize_icd10(entry.code), entry))
        self._prefixes.sort(key=lambda item: len(item[1]), reverse=True)

    def entries(self) -> list[CodeEntry]:
        """Every listed code and prefix."""
        return [*self._exact.values(), *(entry for _, _, entry in self._prefixes)]

    def match(self, system: str | None, code: str | None) -> CodeEntry | None:
        """The entry for this system and code: exact codes first, then the longest ICD-10-CM prefix."""
        if not system or not code:
            return None
        found = self._exact.get((system, code))
        if found is not None:
            return found
        if system == ICD10CM and self._prefixes:
            normalized = normalize_icd10(code)
            for prefix_system, prefix, entry in self._prefixes:
                if prefix_system == system and normalized.startswith(prefix):
                    return entry
        return None

    def match_codeable(self, concept: object) -> CodeEntry | None:
        """The first listed coding of a CodeableConcept (a JSON dict), or None."""
        for system, code in codings(concept):
            entry = self.match(system, code)
            if entry is not None:
                return entry
        return None

    def codes_in(self, category: str) -> list[CodeEntry]:
        return [entry for entry in self.entries() if entry.category == category]


def _entry(raw: Mapping[str, Any], *, is_prefix: bool) -> CodeEntry:
    reserved = {"system", "code", "prefix", "display", "category"}
    return CodeEntry(
        system=str(raw["system"]),
        code=str(raw["prefix"] if is_prefix else raw["code"]),
        display=str(raw.get("display", "")),
        category=str(raw.get("category", "")),
        is_prefix=is_prefix,
        attributes={key: value for key, value in raw.items() if key not in reserved},
    )


def codings(concept: object) -> Iterable[tuple[str | None, str | None]]:
    """(system, code) of each coding of a CodeableConcept JSON dict; tolerant of missing parts."""
    if not (type(concept) is dict or isinstance(concept, Mapping)):  # the exact type first: parsed JSON is dicts
        return
    for coding in concept.get("coding") or ():
        if type(coding) is dict or isinstance(coding, Mapping):
            system, code = coding.get("system"), coding.get("code")
            yield (system if isinstance(system, str) else None, code if isinstance(code, str) else None)


class CodeIndex:
    """Several code lists matched at once: one dict lookup per coding answers for every list.

    `match_all(pairs)` gives, per list, the entry `CodeList.match_codeable` would give: the entry of the
    first coding that the list holds (exactly, or by ICD-10-CM prefix).
    """

    def __init__(self, lists: Sequence[CodeList]) -> None:
        self.lists = tuple(lists)
        exact: dict[tuple[str, str], list[tuple[int, CodeEntry]]] = {}
        for number, lookup in enumerate(self.lists):
            for key, entry in lookup._exact.items():
                exact.setdefault(key, []).append((number, entry))
        self._exact = {key: tuple(hits) for key, hits in exact.items()}
        self._with_prefixes = tuple(number for number, lookup in enumerate(self.lists) if lookup._prefixes)

    def match_all(self, pairs: Iterable[tuple[str | None, str | None]]) -> list[CodeEntry | None]:
        found: list[CodeEntry | None] = [None] * len(self.lists)
        for system, code in pairs:
            if not system or not code:
                continue
            for number, entry in self._exact.get((system, code), ()):
                if found[number] is None:
                    found[number] = entry
            if system == ICD10CM:
                for number in self._with_prefixes:
                    if found[number] is None:
                        found[number] = self.lists[number].match(system, code)
        return found


@cache
def code_index(names: tuple[str, ...]) -> CodeIndex:
    """A `CodeIndex` over the named code lists (built once per process)."""
    return CodeIndex([code_list(name) for name in names])


@cache
def code_list(name: str) -> CodeList:
    """The code list `clinical/data/code_lists/{name}.json` (read once per process)."""
    if name not in CODE_LIST_NAMES:
        raise KeyError(f"unknown code list {name!r}; known: {', '.join(CODE_LIST_NAMES)}")
    text = resources.files("clinical.data.code_lists").joinpath(f"{name}.json").read_text(encoding="utf-8")
    return CodeList(name, json.loads(text))


@cache
def extraction_rules() -> Mapping[str, Any]:
    """The windows, plausibility limits and status rules of `clinical/data/rules.json`."""
    text = resources.files("clinical.data").joinpath("rules.json").read_text(encoding="utf-8")
    document: Mapping[str, Any] = json.loads(text)
    return document
