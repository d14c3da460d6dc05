"""The `monai` backend's plumbing with a tiny UNet trained here on a synthetic scene with known labels.

The network learns to label three blocks of different attenuation (L1, L2, L3); the backend must resample
the CT to the network's grid and orientation, run sliding windows, and map the labels back onto the CT
grid: the masks are checked voxel by voxel against the truth, so any slip in the plumbing fails the test.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.networks.nets import UNet
from safetensors.torch import save_file

from imaging.errors import ProcessingCancelledError, UnusableImageError
from imaging.segmentation.monai_backend import ModelConfigError, MonaiBackend
from imaging.segmentation.registry import get_backend
from imaging.types import Volume

NET_ARGS = {
    "spatial_dims": 3,
    "in_channels": 1,
    "out_channels": 4,
    "channels": [8, 8],
    "strides": [1],
    "num_res_units": 0,
    "norm": None,
    "act": "RELU",
}
NET_SPACING = (2.0, 2.0, 2.0)
BLOCKS = ((300.0, 18.0), (700.0, 48.0), (1100.0, 78.0))  # (HU, centre along S in mm): L3, L2, L1 from caudal


def scene(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """HU image and channel truth (1 = L1 ... 3 = L3) on a RAS grid starting at the origin."""
    x, y, z = (np.arange(n) * s for n, s in zip(shape, spacing, strict=True))
    x, y, z = x[:, None, None], y[None, :, None], z[None, None, :]
    image = np.full(shape, -100.0, dtype=np.float32)
    truth = np.zeros(shape, dtype=np.int64)
    for channel, (hu, centre) in zip((3, 2, 1), BLOCKS, strict=True):
        inside = (np.abs(x - 28) < 20) & (np.abs(y - 22) < 14) & (np.abs(z - centre) < 12)
        image[inside] = hu
        truth[inside] = channel
    return image, truth


@pytest.fixture(scope="module")
def trained() -> UNet:
    """A UNet whose weights make it label intensity bands: < 100 HU background, 100-500 L3, 500-850 L2, > 850 L1.

    The input is scaled to [0, 1] from [-1000, 1000] HU. The first convolution (centre tap only) computes
    ramps relu(G (x - t_k)) and relu(G (x - t_k) - 1), whose differences are steps s_k at the band limits;
    the inner block is zeroed, so the skip connection passes the ramps to the last (transposed) convolution,
    which forms the logits  scale * (1 - s0), scale * s2, scale * (s1 - s2), scale * (s0 - s1).
    """
    net = UNet(**{k: tuple(v) if isinstance(v, list) else v for k, v in NET_ARGS.items()})
    gain, scale = 20.0, 10.0
    thresholds = ((100.0 + 1000.0) / 2000.0, (500.0 + 1000.0) / 2000.0, (850.0 + 1000.0) / 2000.0)
    state = {name: torch.zeros_like(value) for name, value in net.state_dict().items()}
    for k, t in enumerate(thresholds):
        state["model.0.conv.weight"][2 * k, 0, 1, 1, 1] = gain
        state["model.0.conv.bias"][2 * k] = -gain * t
        state["model.0.conv.weight"][2 * k + 1, 0, 1, 1, 1] = gain
        state["model.0.conv.bias"][2 * k + 1] = -gain * t - 1.0
    step = {k: (2 * k, 2 * k + 1, 1.0) for k in range(3)}  # s_k = ramp[2k] - ramp[2k+1]
    weight = state["model.2.conv.weight"]  # (in 8, out 4, 3, 3, 3): transposed convolution
    state["model.2.conv.bias"][0] = scale

    def add(out: int, k: int, sign: float) -> None:
        a, b, _ = step[k]
        weight[a, out, 1, 1, 1] += sign * scale
        weight[b, out, 1, 1, 1] -= sign * scale

    add(0, 0, -1.0)  # background: scale * (1 - s0)
    add(1, 2, +1.0)  # L1: scale * s2
    add(2, 1, +1.0)  # L2: scale * (s1 - s2)
    add(2, 2, -1.0)
    add(3, 0, +1.0)  # L3: scale * (s0 - s1)
    add(3, 1, -1.0)
    net.load_state_dict(state)
    return net.eval()


SPEC = {
    "network": "UNet",
    "args": NET_ARGS,
    "spacing_mm": list(NET_SPACING),
    "orientation": "RAS",
    "intensity": {"a_min": -1000, "a_max": 1000, "b_min": 0.0, "b_max": 1.0, "clip": True},
    "roi_size": [32, 32, 32],
    "overlap": 0.25,
}


def _plain_dir(root: Path, net: UNet, **spec_changes: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "network.json").write_text(json.dumps({**SPEC, **spec_changes}))
    save_file(net.state_dict(), str(root / "model.safetensors"))
    (root / "labels.json").write_text(json.dumps({"1": "L1", "2": "L2", "3": "L3"}))
    return root


def _ct() -> tuple[Volume, np.ndarray]:
    """The scene on a finer, anisotropic CT grid than the network's, shifted in scanner space."""
    spacing = (0.8, 1.25, 1.5)
    image, truth = scene((72, 44, 68), spacing)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-120.0, 35.0, 400.0)
    return Volume(array=image, affine=affine), truth


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1))


def _centre_mm(mask: np.ndarray, volume: Volume) -> np.ndarray:
    index = np.array(np.nonzero(mask), dtype=float).mean(axis=1)
    return volume.affine[:3, :3] @ index + volume.affine[:3, 3]


def _check(result_mask: np.ndarray, truth: np.ndarray, volume: Volume) -> None:
    """The mask overlaps the truth (edges are lost to the 2 mm grid) and is centred on it (no shift or flip)."""
    assert _dice(result_mask, truth) > 0.85
    assert np.linalg.norm(_centre_mm(result_mask, volume) - _centre_mm(truth, volume)) < 1.0


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "PIL"])
def test_network_labels_map_back_onto_the_ct_grid(tmp_path: Path, trained: UNet, orientation: str) -> None:
    model_dir = _plain_dir(tmp_path / "model", trained, orientation=orientation)
    volume, truth = _ct()
    result = get_backend("monai", model_dir=model_dir).segment(volume)
    assert result.level_names == ("L1", "L2", "L3")
    assert result.labels.convention == "totalsegmentator" and result.labels.same_geometry(volume)
    for channel, info in zip((1, 2, 3), result.levels, strict=True):
        _check(result.mask(info.level), truth == channel, volume)
        assert 0.5 < info.confidence <= 1.0 and info.flags == ()
    assert result.info.backend == "monai" and result.info.parameters["orientation"] == orientation


def test_bundle_layout_with_a_literal_network_def_and_a_state_dict(tmp_path: Path, trained: UNet) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    metadata = {
        "name": "tiny_spine",
        "version": "0.1.0",
        "network_data_format": {
            "outputs": {"pred": {"channel_def": {"0": "background", "1": "vertebrae_L1", "2": "L2", "3": "L3"}}}
        },
    }
    (bundle / "configs" / "metadata.json").write_text(json.dumps(metadata))
    (bundle / "configs" / "inference.json").write_text(
        json.dumps({"network_def": {"_target_": "monai.networks.nets.UNet", **NET_ARGS}, "device": "cpu"})
    )
    (bundle / "configs" / "network.json").write_text(
        json.dumps({k: v for k, v in SPEC.items() if k not in ("network", "args")})
    )
    torch.save(trained.state_dict(), bundle / "models" / "model.pt")
    volume, truth = _ct()
    backend = MonaiBackend(model_dir=bundle)
    result = backend.segment(volume)
    assert result.level_names == ("L1", "L2", "L3")
    _check(result.mask("L2"), truth == 2, volume)
    assert result.info.model == "tiny_spine 0.1.0"

    verse = MonaiBackend(model_dir=bundle, label_mapping={1: "T12", 2: "T13", 3: "L1"}).segment(volume)
    assert verse.labels.convention == "verse" and verse.level_names == ("T12", "T13", "L1")


def test_config_expressions_are_never_evaluated(tmp_path: Path, trained: UNet) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "metadata.json").write_text("{}")
    marker = tmp_path / "pwned"
    (bundle / "configs" / "inference.json").write_text(
        json.dumps({"network_def": {"_target_": "UNet", "spatial_dims": f"$open('{marker}', 'w')", "in_channels": 1}})
    )
    save_file(trained.state_dict(), str(bundle / "models" / "model.safetensors"))
    with pytest.raises(ModelConfigError, match="never evaluated"):
        MonaiBackend(model_dir=bundle, label_mapping="totalsegmentator")
    assert not marker.exists()
    (bundle / "configs" / "inference.json").write_text(json.dumps({"network_def": {"_target_": "os.system"}}))
    with pytest.raises(ModelConfigError, match="not allowed"):
        MonaiBackend(model_dir=bundle, label_mapping="totalsegmentator")


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript_is_refused_unless_allowed(tmp_path: Path, trained: UNet) -> None:
    model_dir = tmp_path / "ts"
    model_dir.mkdir()
    (model_dir / "network.json").write_text(json.dumps({**SPEC, "network": "torchscript", "args": {}}))
    (model_dir / "labels.json").write_text(json.dumps({"1": "L1", "2": "L2", "3": "L3"}))
    torch.jit.save(torch.jit.trace(trained, torch.zeros(1, 1, 32, 32, 32)), str(model_dir / "model.ts"))
    with pytest.raises(ModelConfigError, match=r"TorchScript program .* refused"):
        MonaiBackend(model_dir=model_dir)
    volume, truth = _ct()
    result = MonaiBackend(model_dir=model_dir, allow_torchscript=True).segment(volume)
    _check(result.mask("L1"), truth == 1, volume)


def test_pickled_modules_and_mismatched_weights_are_refused(tmp_path: Path, trained: UNet) -> None:
    model_dir = tmp_path / "pickled"
    model_dir.mkdir()
    (model_dir / "network.json").write_text(json.dumps(SPEC))
    (model_dir / "labels.json").write_text(json.dumps({"1": "L1"}))
    torch.save(trained, model_dir / "model.pt")  # the whole module: loading it would unpickle code
    with pytest.raises(ModelConfigError, match="not a plain state dict"):
        MonaiBackend(model_dir=model_dir)
    (model_dir / "model.pt").unlink()
    other = UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,), norm=None)
    save_file(other.state_dict(), str(model_dir / "model.safetensors"))
    with pytest.raises(ModelConfigError, match="do not fit the declared UNet"):
        MonaiBackend(model_dir=model_dir)


def test_missing_pieces_are_named(tmp_path: Path, trained: UNet) -> None:
    with pytest.raises(ModelConfigError, match="not found"):
        MonaiBackend(model_dir=tmp_path / "absent")
    model_dir = _plain_dir(tmp_path / "m", trained)
    (model_dir / "labels.json").unlink()
    with pytest.raises(ModelConfigError, match="no label mapping"):
        MonaiBackend(model_dir=model_dir)
    with pytest.raises(ModelConfigError, match="unknown level names"):
        MonaiBackend(model_dir=model_dir, label_mapping={1: "L7"})
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(ModelConfigError, match="no weights"):
        MonaiBackend(model_dir=model_dir, label_mapping="totalsegmentator")


def test_no_vertebra_and_cancellation(tmp_path: Path, trained: UNet) -> None:
    backend = MonaiBackend(model_dir=_plain_dir(tmp_path / "m", trained))
    air = Volume(array=np.full((40, 30, 40), -1000.0, dtype=np.float32), affine=np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(UnusableImageError, match="found no vertebra"):
        backend.segment(air)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ProcessingCancelledError):
        backend.segment(_ct()[0], cancel=cancel)
