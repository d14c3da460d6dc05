"""Reconstruction kernel classes per manufacturer (data: `imaging/io/data/ct_kernels.json`, with sources)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

KernelClass = Literal["soft_tissue", "intermediate", "sharp", "unknown"]


@dataclass(frozen=True)
class _Rule:
    manufacturer: re.Pattern[str]
    kernel: re.Pattern[str]
    number_min: int | None
    number_max: int | None
    kernel_class: KernelClass


@cache
def _rules() -> tuple[_Rule, ...]:
    text = resources.files("imaging.io").joinpath("data/ct_kernels.json").read_text()
    rules = []
    for entry in json.loads(text)["rules"]:
        rules.append(
            _Rule(
                manufacturer=re.compile(entry["manufacturer"], re.IGNORECASE),
                kernel=re.compile(entry["kernel"], re.IGNORECASE),
                number_min=entry.get("number_min"),
                number_max=entry.get("number_max"),
                kernel_class=entry["class"],
            )
        )
    return tuple(rules)


def classify_kernel(kernel: str | None, manufacturer: str | None) -> KernelClass:
    """The class of a reconstruction kernel ("unknown" when absent or not in the table).

    `kernel` is the first value of Convolution Kernel (0018,1210), e.g. "Br38f", "STANDARD", "FC18".
    """
    if not kernel:
        return "unknown"
    name = kernel.strip()
    vendor = (manufacturer or "").strip()
    number_match = re.search(r"\d+", name)
    number = int(number_match.group()) if number_match else None
    for rule in _rules():
        if not rule.manufacturer.fullmatch(vendor) or not rule.kernel.fullmatch(name):
            continue
        if rule.number_min is not None and (number is None or number < rule.number_min):
            continue
        if rule.number_max is not None and (number is None or number > rule.number_max):
            continue
        return rule.kernel_class
    return "unknown"
