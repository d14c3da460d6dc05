"""The `builtin` backend (work in progress)."""

from __future__ import annotations

import threading

from imaging.errors import UnusableImageError
from imaging.segmentation.base import VertebraSegmentation
from imaging.types import Volume


class BuiltinBackend:
    name = "builtin"

    def is_available(self) -> bool:
        return True

    def segment(self, volume: Volume, *, cancel: threading.Event | None = None) -> VertebraSegmentation:
        raise UnusableImageError("not yet")
