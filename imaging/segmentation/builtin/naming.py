"""Naming the vertebral segments from the landmarks, with a confidence and flags per level.

Segments are indexed caudal to cranial. The lowest rib-bearing vertebra is T12 and the first vertebra above
the sacrum is L5; with normal anatomy (12 rib pairs, 5 lumbar vertebrae) T12 lies six segments above the
sacrum's top segment.

- Both landmarks, agreeing: every level gets `confidence_both_landmarks`.
- Both, disagreeing (13 or 11 rib pairs, a lumbarised S1 or a sacralised L5; Carrino et al. 2011): every
  level is flagged TRANSITIONAL_ANATOMY_SUSPECTED with `confidence_transitional`, and a warning says which
  variant is suspected. Six vertebrae between the lowest rib-bearing one and the sacrum: when the first of
  them has short, thoracic-like transverse processes (below `t12_transverse_ratio` of the two below it) it is
  taken for a rib-less T12 (11 rib pairs) and the names are counted up from the sacrum; otherwise an L6
  (lumbarised S1) is named and the names follow the ribs. Four: a sacralised L5 (or 13 rib pairs); names
  follow the ribs, as in opportunistic screening where L1 is the first non-rib-bearing vertebra (Pickhardt
  et al. 2013).
- One landmark (a rib-free vertebra below the lowest ribbed one, or the sacrum): counted from it, flagged
  SINGLE_LANDMARK, `confidence_single_landmark`.
- Ribs on every vertebra down to the bottom of the field of view and no sacrum: the lowest rib-bearing
  vertebra seen is assumed to be T12, flagged NO_LANDMARK with `confidence_unconfirmed_ribs` and a warning.
- No rib and no sacrum: the levels cannot be named and UnusableImageError is raised (documented choice: a
  wrong level name would put a wrong number on the report).

A level bounded by a weak or inserted disc between it and the anchor multiplies its confidence by
`confidence_weak_disc` for every such disc (a missed or spurious disc shifts every name beyond it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from imaging.conventions import LEVELS, level_rank
from imaging.errors import UnusableImageError
from imaging.segmentation.base import LevelFlag
from imaging.segmentation.builtin.discs import Segment
from imaging.segmentation.builtin.landmarks import RibEvidence
from imaging.segmentation.builtin.parameters import BuiltinParameters

NAMED_RANGE = ("T10", "L6")
"""The builtin backend names T10 to L5 (and L6 when six lumbar-type vertebrae are found)."""


@dataclass(frozen=True)
class NamedSegment:
    index: int
    level: str
    confidence: float
    flags: tuple[str, ...]


@dataclass(frozen=True)
class Naming:
    levels: tuple[NamedSegment, ...]
    anchor: str
    warnings: tuple[str, ...]


def _shift(level: str, steps: int, *, allow: frozenset[str]) -> str | None:
    """The level `steps` positions caudal (positive) or cranial (negative) of `level`, skipping absent ones."""
    order = [name for name in LEVELS if name in allow]
    i = order.index(level) + steps
    return order[i] if 0 <= i < len(order) else None


_NORMAL = frozenset(name for name in LEVELS if name not in ("T13", "L6", "S1"))


def name_segments(
    segments: list[Segment],
    ribs: RibEvidence,
    sacrum_top: int | None,
    params: BuiltinParameters,
    reach: Sequence[float] = (),
) -> Naming:
    """Level names for the segments (caudal to cranial); raises UnusableImageError without any landmark."""
    n = len(segments)
    lowest_mobile = 0 if sacrum_top is None else sacrum_top + 1
    r_low = _lowest_rib_bearing(ribs, lowest_mobile, n)
    warnings: list[str] = []
    # Confirmed when a vertebra without ribs lies below the lowest ribbed one (a segment cut by the scan's
    # bottom still shows its upper part, where ribs articulate).
    rib_confirmed = r_low is not None and r_low - 1 >= lowest_mobile
    have_sacrum = sacrum_top is not None and lowest_mobile < n

    flags: tuple[str, ...]
    if r_low is not None and rib_confirmed and have_sacrum:
        lumbar_count = r_low - lowest_mobile
        eleven_ribs = lumbar_count == 6 and _thoracic_like(reach, r_low - 1, params)
        if lumbar_count == 5:
            anchor, base, flags = "ribs and sacrum", params.confidence_both_landmarks, ()
            names = _from_ribs(n, r_low, lowest_mobile, lumbar_count=5)
        elif eleven_ribs:
            anchor, base = "sacrum (ribs disagree: 11 rib pairs suspected)", params.confidence_transitional
            flags = (LevelFlag.TRANSITIONAL_ANATOMY_SUSPECTED.value,)
            names = {i: _shift("L5", -(i - lowest_mobile), allow=_NORMAL) for i in range(lowest_mobile, n)}
            warnings.append(
                "transitional anatomy suspected: 11 rib pairs (six vertebrae lie between the lowest rib-bearing "
                "vertebra and the sacrum, and the first one without ribs has short, thoracic-like transverse "
                "processes: taken as a rib-less T12); levels are counted up from the sacrum and may be off by "
                "one: check them before using level-specific values"
            )
        else:
            anchor, base = "ribs (sacrum disagrees)", params.confidence_transitional
            flags = (LevelFlag.TRANSITIONAL_ANATOMY_SUSPECTED.value,)
            kind = {
                6: "six vertebrae between the lowest rib-bearing vertebra and the sacrum, the first of them "
                "lumbar-like (a lumbarised S1, named L6)",
                4: "four vertebrae between the lowest rib-bearing vertebra and the sacrum "
                "(a sacralised L5, or 13 rib pairs)",
            }.get(lumbar_count, f"{lumbar_count} vertebrae between the lowest rib-bearing vertebra and the sacrum")
            warnings.append(
                f"transitional anatomy suspected: {kind}; levels are named from the ribs (L1 = first vertebra "
                "without ribs) and may be off by one: check them before using level-specific values"
            )
            names = _from_ribs(n, r_low, lowest_mobile, lumbar_count=lumbar_count)
        anchor_index = lowest_mobile if eleven_ribs else r_low
    elif r_low is not None and rib_confirmed:
        anchor, base, flags = "ribs", params.confidence_single_landmark, (LevelFlag.SINGLE_LANDMARK.value,)
        names = _from_ribs(n, r_low, lowest_mobile, lumbar_count=5)
        anchor_index = r_low
        warnings.append(
            "levels counted from the lowest rib-bearing vertebra (T12) only: the sacrum is outside the field of "
            "view, so a lumbosacral transitional vertebra would go unnoticed"
        )
    elif have_sacrum:
        anchor, base, flags = "sacrum", params.confidence_single_landmark, (LevelFlag.SINGLE_LANDMARK.value,)
        names = {i: _shift("L5", -(i - lowest_mobile), allow=_NORMAL) for i in range(lowest_mobile, n)}
        anchor_index = lowest_mobile
        warnings.append(
            "levels counted up from the sacrum only: no rib-bearing vertebra was found, so 11 or 13 rib pairs "
            "or a transitional lumbosacral vertebra would go unnoticed"
        )
    elif r_low is not None:
        anchor, base, flags = "ribs (unconfirmed)", params.confidence_unconfirmed_ribs, (LevelFlag.NO_LANDMARK.value,)
        names = _from_ribs(n, r_low, lowest_mobile, lumbar_count=5)
        anchor_index = r_low
        warnings.append(
            "no confirmed level landmark: every vertebra in view bears ribs and the sacrum is not in view; the "
            "lowest rib-bearing vertebra seen was assumed to be T12 (the level names may be wrong)"
        )
    else:
        raise UnusableImageError(
            "the vertebral levels cannot be named: neither ribs nor the sacrum are in the field of view; "
            "provide a label map (labels backend) or a scan that includes T12 or the sacrum",
            reason="NO_LEVEL_LANDMARK",
        )

    named: list[NamedSegment] = []
    low_rank, high_rank = level_rank(NAMED_RANGE[0]), level_rank(NAMED_RANGE[1])
    for i in range(lowest_mobile, n):
        level = names.get(i)
        if level is None or not low_rank <= level_rank(level) <= high_rank:
            continue
        confidence = base
        level_flags = list(flags)
        between = range(min(i, anchor_index), max(i, anchor_index) + 1)
        weak = sum(1 for j in between if j != anchor_index and segments[j].weak())
        if segments[i].weak():
            level_flags.append(LevelFlag.UNCERTAIN_BOUNDARY.value)
            weak = max(weak, 1)
        confidence *= params.confidence_weak_disc**weak
        named.append(NamedSegment(index=i, level=level, confidence=confidence, flags=tuple(level_flags)))
    return Naming(levels=tuple(named), anchor=anchor, warnings=tuple(warnings))


def _thoracic_like(reach: Sequence[float], index: int, params: BuiltinParameters) -> bool:
    """True when segment `index` has short transverse processes for a lumbar vertebra: its reach is under
    `t12_transverse_ratio` of the mean of the two segments below it (T12's are rudimentary, L1's already
    lumbar; Kunkel et al. 2010)."""
    below = [reach[i] for i in (index - 1, index - 2) if 0 <= i < len(reach) and reach[i] > 0]
    if index >= len(reach) or not below:
        return False
    return reach[index] < params.t12_transverse_ratio * float(np.mean(below))


def _lowest_rib_bearing(ribs: RibEvidence, lowest_mobile: int, n: int) -> int | None:
    """The lowest segment of the longest run of consecutive rib-bearing segments (the most cranial on a tie).

    Thoracic vertebrae bear ribs one after the other; an isolated "rib" far below them (an artefact, a
    calcified vessel) is ignored.
    """
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for i in range(lowest_mobile, n + 1):
        if i < n and ribs.has_ribs(i):
            start = i if start is None else start
        elif start is not None:
            runs.append((start, i - 1))
            start = None
    if not runs:
        return None
    best = max(runs, key=lambda run: (run[1] - run[0], run[0]))
    return best[0]


def _from_ribs(n: int, r_low: int, lowest_mobile: int, *, lumbar_count: int) -> dict[int, str | None]:
    """Names counted from T12 at `r_low`: cranially T11, T10, ...; caudally L1.. (L6 when six lumbar-type)."""
    names: dict[int, str | None] = {}
    for i in range(lowest_mobile, n):
        if i >= r_low:
            names[i] = _shift("T12", -(i - r_low), allow=_NORMAL)
        else:
            k = r_low - i  # 1 -> L1
            names[i] = f"L{k}" if k <= (6 if lumbar_count >= 6 else 5) else None
    return names
