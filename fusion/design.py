"""Model terms: the columns a model multiplies by its coefficients, built from its raw inputs.

A small subset of Wilkinson-Rogers notation (as in R and patsy), enough for published models:

- `AGE`              a raw input (numeric, or 1/0 for yes/no inputs);
- `C(RATERISK)`      a categorical input in treatment coding: one indicator per level except the lowest
                     (levels come from the training data), named `RATERISK[2]`, `RATERISK[3]`;
- `RATERISK[3]`      the indicator RATERISK == 3;
- `AGE:PRIORFRAC`    the product of terms (an interaction).

Terms are stored as text with the model and re-parsed on load; nothing is ever evaluated as code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fusion.errors import ModelInputError

_NAME = r"[A-Za-z_][A-Za-z0-9_.]*"
_FACTOR = re.compile(rf"^(?:C\((?P<cat>{_NAME})\)|(?P<name>{_NAME})(?:\[(?P<level>-?[0-9.]+)\])?)$")


@dataclass(frozen=True)
class Factor:
    column: str
    level: float | None = None  # None: the value itself; else the indicator column == level

    @property
    def label(self) -> str:
        return self.column if self.level is None else f"{self.column}[{self.level:g}]"


@dataclass(frozen=True)
class Term:
    factors: tuple[Factor, ...]

    @property
    def label(self) -> str:
        return ":".join(f.label for f in self.factors)


def _parse_factor(text: str) -> tuple[str, str | None, bool]:
    match = _FACTOR.match(text.strip())
    if match is None:
        raise ModelInputError(
            f"cannot read model term {text!r}; use NAME, C(NAME), NAME[level] or A:B", reason="BAD_TERM"
        )
    if match.group("cat"):
        return match.group("cat"), None, True
    return match.group("name"), match.group("level"), False


def split_terms(spec: str | Sequence[str]) -> list[str]:
    """'a,b, C(c),a:b' -> ['a', 'b', 'C(c)', 'a:b'] (commas or '+' separate terms)."""
    items = spec if not isinstance(spec, str) else re.split(r"[,+]", spec)
    return [t.strip() for t in items if t and t.strip()]


def term_inputs(spec: str | Sequence[str]) -> list[str]:
    """The raw input columns that terms use, in first-use order."""
    out: list[str] = []
    for text in split_terms(spec):
        for part in text.split(":"):
            name, _, _ = _parse_factor(part)
            if name not in out:
                out.append(name)
    return out


def expand_terms(
    spec: str | Sequence[str], *, categorical: Iterable[str] = (), levels: dict[str, npt.NDArray[np.float64]]
) -> list[Term]:
    """Terms with every categorical factor expanded into its non-reference levels.

    `levels[name]` gives the observed levels of each categorical input (training data)."""
    cats = set(categorical)
    terms: list[Term] = []
    for text in split_terms(spec):
        choices: list[list[Factor]] = [[]]
        for part in text.split(":"):
            name, level, is_cat = _parse_factor(part)
            if level is not None:
                options = [Factor(name, float(level))]
            elif is_cat or name in cats:
                observed = levels.get(name)
                if observed is None or observed.size < 2:
                    raise ModelInputError(
                        f"categorical input {name!r} needs at least 2 observed levels", reason="BAD_TERM"
                    )
                options = [Factor(name, float(v)) for v in observed[1:]]
            else:
                options = [Factor(name)]
            choices = [[*prefix, opt] for prefix in choices for opt in options]
        terms.extend(Term(tuple(c)) for c in choices)
    labels = [t.label for t in terms]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ModelInputError(f"model terms repeat: {', '.join(dupes)}", reason="BAD_TERM")
    return terms


def parse_term_labels(labels: Sequence[str]) -> list[Term]:
    """Terms from their stored labels (e.g. 'RATERISK[3]', 'AGE:PRIORFRAC')."""
    terms = []
    for label in labels:
        factors = []
        for part in label.split(":"):
            name, level, is_cat = _parse_factor(part)
            if is_cat:
                raise ModelInputError(f"stored term {label!r} must be expanded", reason="BAD_TERM")
            factors.append(Factor(name, None if level is None else float(level)))
        terms.append(Term(tuple(factors)))
    return terms


@dataclass(frozen=True)
class Design:
    """Maps a matrix of raw inputs (columns `inputs`) to the term matrix a model uses."""

    inputs: tuple[str, ...]
    terms: tuple[Term, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        labels: tuple[str, ...] = object.__getattribute__(self, "_labels")
        return labels

    @property
    def is_identity(self) -> bool:
        identity: bool = object.__getattribute__(self, "_identity")
        return identity

    def __post_init__(self) -> None:
        known = set(self.inputs)
        for term in self.terms:
            for factor in term.factors:
                if factor.column not in known:
                    raise ModelInputError(f"term {term.label!r} uses unknown input {factor.column!r}")
        object.__setattr__(self, "_plan", self._compile())
        object.__setattr__(self, "_labels", tuple(t.label for t in self.terms))
        object.__setattr__(self, "_identity", self.labels == self.inputs)

    def _compile(self) -> list[list[tuple[int, float | None]]]:
        pos = {name: j for j, name in enumerate(self.inputs)}
        return [[(pos[f.column], f.level) for f in term.factors] for term in self.terms]

    def transform(self, raw: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """(n, len(inputs)) -> (n, len(terms))."""
        if self.is_identity:
            return raw
        plan: list[list[tuple[int, float | None]]] = object.__getattribute__(self, "_plan")
        if raw.shape[0] == 1:  # one patient: the same products in Python floats (no numpy call per term)
            row = raw[0].tolist()
            terms = []
            for factors in plan:
                value = 1.0
                for j, level in factors:
                    value = value * (row[j] if level is None else float(row[j] == level))
                terms.append(value)
            return np.array([terms], dtype=np.float64)
        out = np.empty((raw.shape[0], len(plan)))
        for k, factors in enumerate(plan):
            col = np.ones(raw.shape[0])
            for j, level in factors:
                col = col * (raw[:, j] if level is None else (raw[:, j] == level).astype(np.float64))
            out[:, k] = col
        return out

    @classmethod
    def identity(cls, names: Sequence[str]) -> Design:
        return cls(inputs=tuple(names), terms=tuple(Term((Factor(n),)) for n in names))
