"""The registry of vertebra segmentation backends: names, dependencies, lazy imports, availability.

Modelled on pydicom's pixel-data decoder registry: each backend is declared by a `BackendSpec` (its module
and class by name, the packages it needs and how to install them); nothing is imported until the backend
is asked for. The registry is an immutable mapping built once at import time, so a multi-threaded server
shares it without locks; `BackendRegistry.with_backend` returns a new registry (e.g. for a site's plug-in)
and never changes an existing one.

    >>> from imaging.segmentation.registry import get_backend
    >>> backend = get_backend("builtin")
    >>> segmentation = backend.segment(volume)
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, cast

from imaging.errors import BackendUnavailableError, ImageInputError
from imaging.segmentation.base import SegmentationBackend


@dataclass(frozen=True)
class BackendSpec:
    """How to find and build one backend, without importing it.

    `requires` lists importable module names; `install` is the command that provides them.
    """

    name: str
    module: str
    class_name: str
    description: str
    requires: tuple[str, ...] = ()
    install: str = ""

    def missing(self) -> tuple[str, ...]:
        """The required modules that cannot be imported here."""
        return tuple(module for module in self.requires if not _importable(module))

    def is_available(self) -> bool:
        """True when every required package is installed (weights are checked by the backend itself)."""
        return not self.missing()

    def load(self) -> type[Any]:
        """Import the backend's module and return its class; raises BackendUnavailableError naming the fix."""
        missing = self.missing()
        if missing:
            raise BackendUnavailableError(
                f"segmentation backend {self.name!r} needs {', '.join(missing)}, which is not installed; "
                f"install it with: {self.install or 'pip install ' + ' '.join(missing)}"
            )
        module = importlib.import_module(self.module)
        backend_class: type[Any] = getattr(module, self.class_name)
        return backend_class


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class BackendRegistry(Mapping[str, BackendSpec]):
    """An immutable name -> `BackendSpec` mapping."""

    __slots__ = ("_specs",)

    def __init__(self, specs: tuple[BackendSpec, ...]) -> None:
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate backend names: {names}")
        self._specs: Mapping[str, BackendSpec] = MappingProxyType({spec.name: spec for spec in specs})

    def __getitem__(self, name: str) -> BackendSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def with_backend(self, spec: BackendSpec) -> BackendRegistry:
        """A new registry with `spec` added (or replacing the backend of the same name)."""
        kept = tuple(existing for existing in self._specs.values() if existing.name != spec.name)
        return BackendRegistry((*kept, spec))

    def spec(self, name: str) -> BackendSpec:
        """The spec of a backend; raises ImageInputError naming the known backends."""
        try:
            return self._specs[name]
        except KeyError:
            raise ImageInputError(
                f"unknown segmentation backend {name!r}; use one of: {', '.join(self._specs)}",
                reason="UNKNOWN_SEGMENTATION_BACKEND",
            ) from None

    def available(self) -> tuple[str, ...]:
        """Names of the backends whose packages are installed."""
        return tuple(name for name, spec in self._specs.items() if spec.is_available())

    def create(self, name: str, **options: object) -> SegmentationBackend:
        """Build backend `name` with keyword `options` (checked against its constructor first)."""
        backend_class = self.spec(name).load()
        try:
            inspect.signature(backend_class).bind(**options)
        except TypeError as exc:
            accepted = [
                p.name for p in inspect.signature(backend_class).parameters.values() if p.kind is p.KEYWORD_ONLY
            ]
            raise ImageInputError(
                f"invalid options for segmentation backend {name!r}: {exc}; it accepts: {', '.join(accepted)}",
                reason="INVALID_BACKEND_OPTIONS",
            ) from None
        return cast(SegmentationBackend, backend_class(**options))


REGISTRY: BackendRegistry = BackendRegistry(
    (
        BackendSpec(
            name="builtin",
            module="imaging.segmentation.builtin",
            class_name="BuiltinBackend",
            description="Classical image analysis: no weights, no GPU; levels T10-L5 from ribs and sacrum.",
            requires=("scipy", "skimage"),
            install="pip install scipy scikit-image",
        ),
        BackendSpec(
            name="labels",
            module="imaging.segmentation.labels",
            class_name="LabelsBackend",
            description="A label map provided with the CT (TotalSegmentator or VerSe ids).",
            requires=("scipy",),
            install="pip install scipy",
        ),
        BackendSpec(
            name="monai",
            module="imaging.segmentation.monai_backend",
            class_name="MonaiBackend",
            description="A MONAI network or bundle from a local directory, with a label mapping.",
            requires=("torch", "monai", "safetensors"),
            install="pip install torch monai safetensors",
        ),
        BackendSpec(
            name="totalsegmentator",
            module="imaging.segmentation.totalseg",
            class_name="TotalSegmentatorBackend",
            description="TotalSegmentator (fast 3 mm 'total' model, CPU) with weights installed beforehand.",
            requires=("totalsegmentator",),
            install="pip install 'osteorisk[totalsegmentator]' and install its weights "
            "(totalseg_download_weights -t total_fast) before serving",
        ),
    )
)
"""The default registry, frozen at import time."""


def backend_names() -> tuple[str, ...]:
    """Every registered backend name."""
    return tuple(REGISTRY)


def available_backends() -> tuple[str, ...]:
    """Names of the backends whose packages are installed here."""
    return REGISTRY.available()


def get_backend(name: str, **options: object) -> SegmentationBackend:
    """Build a backend of the default registry by name, e.g. `get_backend("labels", label_map=lm)`.

    Raises ImageInputError for an unknown name or bad options, BackendUnavailableError (naming what to
    install) when its packages are missing.
    """
    return REGISTRY.create(name, **options)
