"""The segmentation backend registry: names, lazy imports, availability, options, immutability."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from imaging.errors import BackendUnavailableError, ImageInputError
from imaging.segmentation.base import SegmentationBackend
from imaging.segmentation.registry import (
    REGISTRY,
    BackendSpec,
    available_backends,
    backend_names,
    get_backend,
)
from imaging.types import LabelMap


def test_the_four_backends_are_registered_and_the_installed_ones_available() -> None:
    assert backend_names() == ("builtin", "labels", "monai", "totalsegmentator")
    assert {"builtin", "labels", "monai"} <= set(available_backends())
    ts_installed = importlib.util.find_spec("totalsegmentator") is not None
    assert ("totalsegmentator" in available_backends()) == ts_installed


def test_the_registry_is_immutable_and_extended_only_into_a_new_registry() -> None:
    with pytest.raises(TypeError):
        REGISTRY["mine"] = REGISTRY["labels"]  # type: ignore[index]
    spec = BackendSpec(name="mine", module="imaging.segmentation.labels", class_name="LabelsBackend", description="x")
    extended = REGISTRY.with_backend(spec)
    assert "mine" in extended and "mine" not in REGISTRY
    assert len(extended) == len(REGISTRY) + 1


def test_importing_the_registry_imports_no_backend_package() -> None:
    code = (
        "import sys, imaging.segmentation.registry as r; r.backend_names(); r.available_backends(); "
        "print(sorted(m for m in ('torch', 'monai', 'totalsegmentator', 'imaging.segmentation.builtin') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_backend_names_the_known_ones() -> None:
    with pytest.raises(ImageInputError, match="unknown segmentation backend 'nnunet'; use one of: builtin, labels"):
        get_backend("nnunet")


def test_bad_options_are_refused_with_the_accepted_ones() -> None:
    with pytest.raises(ImageInputError, match="accepts: label_map, qc") as info:
        get_backend("labels")
    assert info.value.reason == "INVALID_BACKEND_OPTIONS"
    with pytest.raises(ImageInputError, match="unexpected keyword argument 'labelmap'"):
        get_backend("labels", label_map=None, labelmap=None)


def test_a_missing_package_names_what_to_install() -> None:
    spec = BackendSpec(
        name="future",
        module="osteorisk_future_backend",
        class_name="Backend",
        description="not installed",
        requires=("osteorisk_future_backend",),
        install="pip install osteorisk-future",
    )
    registry = REGISTRY.with_backend(spec)
    assert not spec.is_available() and "future" not in registry.available()
    with pytest.raises(BackendUnavailableError, match=r"needs osteorisk_future_backend.*pip install osteorisk-future"):
        registry.create("future")


@pytest.mark.skipif(importlib.util.find_spec("totalsegmentator") is not None, reason="TotalSegmentator is installed")
def test_totalsegmentator_absent_says_how_to_install_it() -> None:
    with pytest.raises(BackendUnavailableError, match=r"pip install 'osteorisk\[totalsegmentator\]'"):
        get_backend("totalsegmentator")


def test_backends_built_by_the_registry_follow_the_protocol() -> None:
    label_map = LabelMap(array=np.zeros((4, 4, 4), dtype=np.uint8), affine=np.eye(4))
    for backend in (get_backend("builtin"), get_backend("labels", label_map=label_map)):
        assert isinstance(backend, SegmentationBackend)
        assert backend.is_available()
