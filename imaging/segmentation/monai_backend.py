"""The `monai` backend: a MONAI segmentation network from a local directory, plus a label mapping.

The weights are the user's; nothing is ever downloaded. Nothing in the model directory is executed:
MONAI bundles `eval` `$`-expressions of their configs, and pickled or TorchScript models run code, so this
backend reads only a safe, declarative subset:

**Model directory** (either layout):

- a plain directory: `network.json` + weights (`model.safetensors` or `model.pt`) + optional `labels.json`;
- a MONAI bundle: `configs/metadata.json` + (`configs/network.json`, or `configs/inference.json` whose
  `network_def` is a literal, see below) + `models/model.safetensors` or `models/model.pt`
  + optional `configs/labels.json`.

**`network.json`** (documented here; every key but `network`/`args` has a default):

    {"network": "UNet",                  # one of ALLOWED_NETWORKS (monai.networks.nets), or "torchscript"
     "args": {"spatial_dims": 3, "in_channels": 1, "out_channels": 4,
              "channels": [16, 32, 64], "strides": [2, 2]},   # JSON literals only
     "spacing_mm": [1.5, 1.5, 1.5],      # the grid the network expects (along `orientation`); null: the CT's own
     "orientation": "RAS",               # axis codes of the network's input arrays
     "intensity": {"a_min": -1000, "a_max": 1000, "b_min": 0.0, "b_max": 1.0, "clip": true},
                                         # or {"mean": m, "std": s}, or null for raw HU
     "roi_size": [96, 96, 96],           # sliding-window patch
     "overlap": 0.25}

A bundle's `configs/inference.json` is used only when its `network_def` has a `_target_` naming an allowed
network (`UNet` or `monai.networks.nets.UNet`) and every value is a JSON literal; any `$`, `@` or `%`
reference is refused, never evaluated. The other keys then come from `configs/network.json` when present,
else the defaults above (spacing: the CT's own).

**Weights**: `torch.load(..., weights_only=True)` or safetensors, loaded strictly into the declared network.
A TorchScript file (`model.ts`) is code: it is refused unless the backend is built with
`allow_torchscript=True` by whoever configures the server.

**Label mapping** (network output channel -> level): the `label_mapping` option (a convention name such as
"totalsegmentator" or "verse", a JSON file path, or a dict), else `labels.json` in the directory, else the
bundle metadata's `network_data_format.outputs.pred.channel_def` when its names are level names
("L1", "vertebrae_L1", ...). A JSON mapping file is `{"1": "L1", "2": "L2", ...}` or
`{"convention": "verse"}`.

Inference: the CT is resampled (trilinear) to the network's spacing and orientation, normalised, segmented
by `monai.inferers.sliding_window_inference` on CPU, and the argmax labels are mapped back to the CT grid
by nearest neighbour. Each level keeps its largest connected part; its confidence is the mean softmax
probability of its voxels times the mask checks' factors (`mask_qc`).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from imaging.conventions import LEVELS, convention_names, label_to_level, level_rank, level_to_label
from imaging.errors import BackendUnavailableError, UnusableImageError
from imaging.segmentation.base import LevelInfo, VertebraSegmentation, check_cancelled, check_volume
from imaging.segmentation.mask_qc import MaskQcPolicy, assess_mask
from imaging.types import LabelMap, SegmentationInfo, Volume

if TYPE_CHECKING:
    import torch

ALLOWED_NETWORKS: tuple[str, ...] = (
    "UNet",
    "BasicUNet",
    "SegResNet",
    "SegResNetDS",
    "DynUNet",
    "AttentionUnet",
    "UNETR",
    "SwinUNETR",
)
"""Network classes of `monai.networks.nets` that a declarative spec may name."""

_MAX_SPEC_BYTES = 1_000_000
_LEVEL_NAME = re.compile(r"(?:^|[^A-Za-z0-9])(C[1-7]|T1[0-3]|T[1-9]|L[1-6]|S1)$")


class ModelConfigError(BackendUnavailableError):
    """The model directory is incomplete, unsafe or inconsistent (a server configuration problem)."""

    reason = "SEGMENTATION_MODEL_INVALID"


@dataclass(frozen=True)
class NetworkSpec:
    """The declarative description of a network and how to feed it."""

    network: str
    args: Mapping[str, Any]
    spacing_mm: tuple[float, float, float] | None
    orientation: tuple[str, str, str]
    intensity: Mapping[str, Any] | None
    roi_size: tuple[int, int, int]
    overlap: float


class MonaiBackend:
    """A MONAI network from `model_dir`; keyword-only configuration, checked and loaded at construction."""

    name = "monai"

    def __init__(
        self,
        *,
        model_dir: str | Path,
        label_mapping: str | Path | Mapping[int, str] | None = None,
        allow_torchscript: bool = False,
        sw_batch_size: int = 1,
        largest_component: bool = True,
        qc: MaskQcPolicy | None = None,
    ) -> None:
        directory = Path(model_dir)
        if not directory.is_dir():
            raise ModelConfigError(f"MONAI model directory not found: {directory}")
        if sw_batch_size < 1:
            raise ValueError(f"sw_batch_size must be >= 1, got {sw_batch_size}")
        self.model_dir = directory
        self.allow_torchscript = allow_torchscript
        self.sw_batch_size = sw_batch_size
        self.largest_component = largest_component
        self.qc = qc or MaskQcPolicy()
        self._layout = _Layout.find(directory)
        self.metadata: Mapping[str, Any] = _read_json(self._layout.metadata) if self._layout.metadata else {}
        self.spec = _read_spec(self._layout)
        self.channel_levels, self.convention = _label_mapping(label_mapping, self._layout, self.metadata)
        self._net = self._load_network()

    def is_available(self) -> bool:
        return True

    @property
    def model_name(self) -> str:
        name = self.metadata.get("name") or self.model_dir.name
        version = self.metadata.get("version")
        return f"{name} {version}" if version else str(name)

    def _load_network(self) -> torch.nn.Module:
        import torch

        weights = self._layout.weights
        if weights is None:
            raise ModelConfigError(
                f"no weights in {self.model_dir}: expected model.safetensors, model.pt (a state dict) "
                "or, with allow_torchscript, model.ts"
            )
        if weights.suffix == ".ts" or self.spec.network == "torchscript":
            if not self.allow_torchscript:
                raise ModelConfigError(
                    f"{weights.name} is a TorchScript program (code, not data) and is refused; convert it to a "
                    "state dict (safetensors) with a network.json, or build the backend with "
                    "allow_torchscript=True if you trust its origin"
                )
            net: torch.nn.Module = torch.jit.load(str(weights), map_location="cpu")
        else:
            net = _build_network(self.spec)
            state = _load_state_dict(weights)
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                first = str(exc).splitlines()[0]
                raise ModelConfigError(
                    f"the weights in {weights.name} do not fit the declared {self.spec.network}: {first}"
                ) from None
        net.eval()
        return net

    def segment(self, volume: Volume, *, cancel: threading.Event | None = None) -> VertebraSegmentation:
        import torch
        from monai.inferers import sliding_window_inference

        check_volume(volume)
        check_cancelled(cancel, "MONAI preprocessing")
        spec = self.spec
        image, to_net, from_net = _to_network_orientation(np.asarray(volume.array), spec.orientation)
        source_spacing = tuple(float(s) for s in np.asarray(volume.spacing)[list(to_net)])
        target_spacing = spec.spacing_mm or source_spacing
        net_shape = tuple(
            max(1, round(n * s / t)) for n, s, t in zip(image.shape, source_spacing, target_spacing, strict=True)
        )
        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
            if net_shape != image.shape:
                tensor = torch.nn.functional.interpolate(tensor, size=net_shape, mode="trilinear", align_corners=False)
            tensor = _normalise(tensor, spec.intensity)

            def predictor(patch: torch.Tensor) -> torch.Tensor:
                check_cancelled(cancel, "the next sliding window")
                out = self._net(patch)
                if isinstance(out, list | tuple):  # deep supervision heads: the first is the full-resolution one
                    out = out[0]
                return out  # type: ignore[no-any-return]

            logits = sliding_window_inference(
                tensor,
                roi_size=spec.roi_size,
                sw_batch_size=self.sw_batch_size,
                predictor=predictor,
                overlap=spec.overlap,
                mode="gaussian",
            )
            if not isinstance(logits, torch.Tensor):
                raise ModelConfigError(f"the network returned {type(logits).__name__}, not one tensor of logits")
            n_channels = int(logits.shape[1])
            if n_channels < 2:
                raise ModelConfigError(f"the network outputs {n_channels} channel; a label map needs >= 2")
            probs = torch.softmax(logits, dim=1)[0]
            confidence_net, argmax_net = torch.max(probs, dim=0)
            net_labels = argmax_net.numpy().astype(np.int16)
            net_confidence = confidence_net.numpy()
        check_cancelled(cancel, "MONAI postprocessing")
        cleaned, probability, warnings = self._clean(net_labels, net_confidence, n_channels)
        labels = _from_network_orientation(_nearest_back(cleaned, image.shape), spec.orientation, from_net)
        return self._result(volume, labels, probability, warnings)

    def _clean(
        self, net_labels: npt.NDArray[np.int16], net_confidence: npt.NDArray[np.float32], n_channels: int
    ) -> tuple[npt.NDArray[np.integer], dict[str, float], list[str]]:
        """Channels -> label ids of the convention on the network grid (largest part per level)."""
        to_id = level_to_label(self.convention)
        cleaned = np.zeros(net_labels.shape, dtype=np.uint8 if max(to_id.values()) < 256 else np.int16)
        probability: dict[str, float] = {}
        warnings: list[str] = []
        unknown = sorted(set(np.unique(net_labels).tolist()) - set(self.channel_levels) - {0})
        if unknown:
            warnings.append(f"the network predicted channels {unknown} that the label mapping does not name")
        boxes = ndimage.find_objects(net_labels)
        for channel, level in self.channel_levels.items():
            if channel >= n_channels or channel > len(boxes) or boxes[channel - 1] is None:
                continue
            box = boxes[channel - 1]
            mask = net_labels[box] == channel
            if self.largest_component:
                mask = _largest_component(mask)
            cleaned[box][mask] = to_id[level]
            probability[level] = float(net_confidence[box][mask].mean())
        return cleaned, probability, warnings

    def _result(
        self,
        volume: Volume,
        labels: npt.NDArray[np.integer],
        probability: Mapping[str, float],
        warnings: list[str],
    ) -> VertebraSegmentation:
        to_id = level_to_label(self.convention)
        voxel_ml = float(np.prod(volume.spacing)) / 1000.0
        boxes = ndimage.find_objects(labels)
        levels: list[LevelInfo] = []
        for level in sorted(probability, key=level_rank):
            label = to_id[level]
            box = boxes[label - 1] if label <= len(boxes) else None
            if box is None:  # vanished when mapped back to a coarser CT grid
                continue
            qc = assess_mask(
                labels[box] == label,
                offset=(box[0].start, box[1].start, box[2].start),
                full_shape=volume.shape,
                voxel_volume_ml=voxel_ml,
                policy=self.qc,
            )
            levels.append(
                LevelInfo(
                    level=level,
                    label=label,
                    confidence=round(probability[level] * qc.confidence, 4),
                    flags=qc.flags,
                )
            )
        if not levels:
            raise UnusableImageError(
                "the MONAI network found no vertebra in this CT (every voxel was background or an unnamed channel)",
                reason="NO_VERTEBRA_FOUND",
            )
        return VertebraSegmentation(
            labels=LabelMap(array=labels, affine=volume.affine, convention=self.convention),
            levels=tuple(levels),
            info=SegmentationInfo(
                backend="monai",
                label_convention=self.convention,
                model=self.model_name,
                parameters={
                    "network": self.spec.network,
                    "spacing_mm": "native" if self.spec.spacing_mm is None else _fmt(self.spec.spacing_mm),
                    "orientation": "".join(self.spec.orientation),
                    "roi_size": "x".join(str(s) for s in self.spec.roi_size),
                    "overlap": str(self.spec.overlap),
                    "weights": self._layout.weights.name if self._layout.weights else "",
                },
            ),
            body_only=False,
            warnings=tuple(warnings),
        )


@dataclass(frozen=True)
class _Layout:
    """Where the files of a model directory are."""

    spec: Path | None
    inference: Path | None
    metadata: Path | None
    labels: Path | None
    weights: Path | None

    @staticmethod
    def find(directory: Path) -> _Layout:
        configs = directory / "configs"
        models = directory / "models"
        bundle = (configs / "metadata.json").is_file()

        def first(*candidates: Path) -> Path | None:
            return next((c for c in candidates if c.is_file()), None)

        if bundle:
            return _Layout(
                spec=first(configs / "network.json", directory / "network.json"),
                inference=first(configs / "inference.json"),
                metadata=configs / "metadata.json",
                labels=first(configs / "labels.json", directory / "labels.json"),
                weights=first(models / "model.safetensors", models / "model.pt", models / "model.ts"),
            )
        return _Layout(
            spec=first(directory / "network.json"),
            inference=None,
            metadata=None,
            labels=first(directory / "labels.json"),
            weights=first(directory / "model.safetensors", directory / "model.pt", directory / "model.ts"),
        )


def _read_json(path: Path) -> dict[str, Any]:
    if path.stat().st_size > _MAX_SPEC_BYTES:
        raise ModelConfigError(f"{path.name} is larger than {_MAX_SPEC_BYTES} bytes: not a model description")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ModelConfigError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _refuse_expressions(value: Any, where: str) -> Any:
    """A JSON value with lists turned into tuples; raises on any MONAI config expression or reference."""
    if isinstance(value, str):
        if value[:1] in {"$", "@", "%"}:
            raise ModelConfigError(
                f"{where} holds the expression {value[:60]!r}: MONAI config expressions are code and are never "
                "evaluated here; write the network as literal values in network.json"
            )
        return value
    if isinstance(value, list):
        return tuple(_refuse_expressions(v, where) for v in value)
    if isinstance(value, dict):
        return {str(k): _refuse_expressions(v, where) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float):
        return value
    raise ModelConfigError(f"{where} holds an unsupported value of type {type(value).__name__}")


def _read_spec(layout: _Layout) -> NetworkSpec:
    raw: dict[str, Any] = _read_json(layout.spec) if layout.spec else {}
    if "network" not in raw and layout.inference is not None:
        network_def = _read_json(layout.inference).get("network_def")
        if not isinstance(network_def, dict) or "_target_" not in network_def:
            raise ModelConfigError(
                f"{layout.inference} has no literal network_def with a _target_; add configs/network.json"
            )
        target = str(_refuse_expressions(network_def["_target_"], "network_def._target_"))
        raw["network"] = target.rsplit(".", 1)[-1] if target.startswith("monai.networks.nets.") else target
        raw["args"] = {k: v for k, v in network_def.items() if k != "_target_"}
    if "network" not in raw:
        raise ModelConfigError(
            "no network description: add network.json ({'network': 'UNet', 'args': {...}, ...}); "
            "see imaging.segmentation.monai_backend"
        )
    network = str(raw["network"])
    if network not in (*ALLOWED_NETWORKS, "torchscript"):
        raise ModelConfigError(f"network {network!r} is not allowed; use one of: {', '.join(ALLOWED_NETWORKS)}")
    args = _refuse_expressions(raw.get("args", {}), "network args")
    if not isinstance(args, dict):
        raise ModelConfigError("network args must be a JSON object")
    spacing = raw.get("spacing_mm")
    orientation = str(raw.get("orientation", "RAS")).upper()
    if sorted(orientation.replace("L", "R").replace("P", "A").replace("I", "S")) != ["A", "R", "S"]:
        raise ModelConfigError(f"orientation must be three axis codes such as RAS or LPS, got {orientation!r}")
    roi = raw.get("roi_size", [96, 96, 96])
    try:
        spacing_t = None if spacing is None else _triple(spacing, float)
        roi_t = _triple(roi, int)
        overlap = float(raw.get("overlap", 0.25))
    except (TypeError, ValueError) as exc:
        raise ModelConfigError(f"network.json: {exc}") from None
    if spacing_t is not None and min(spacing_t) <= 0:
        raise ModelConfigError(f"spacing_mm must be positive, got {spacing}")
    if min(roi_t) < 1 or not 0 <= overlap < 1:
        raise ModelConfigError(f"roi_size must be positive and overlap in [0, 1), got {roi} and {overlap}")
    intensity = raw.get("intensity", {"a_min": -1000.0, "a_max": 1000.0, "b_min": 0.0, "b_max": 1.0, "clip": True})
    if intensity is not None and not (
        isinstance(intensity, dict) and (set(intensity) >= {"a_min", "a_max"} or set(intensity) >= {"mean", "std"})
    ):
        raise ModelConfigError(
            "intensity must be {'a_min', 'a_max', 'b_min', 'b_max', 'clip'}, {'mean', 'std'} or null"
        )
    return NetworkSpec(
        network=network,
        args=args,
        spacing_mm=spacing_t,
        orientation=(orientation[0], orientation[1], orientation[2]),
        intensity=intensity,
        roi_size=roi_t,
        overlap=overlap,
    )


def _triple(value: Any, kind: type[float] | type[int]) -> Any:
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise ValueError(f"expected 3 numbers, got {value!r}")
    return tuple(kind(v) for v in value)


def _build_network(spec: NetworkSpec) -> torch.nn.Module:
    from monai.networks import nets

    network_class = getattr(nets, spec.network)
    try:
        net: torch.nn.Module = network_class(**spec.args)
    except (TypeError, ValueError, AssertionError) as exc:
        raise ModelConfigError(f"cannot build {spec.network} from network.json args: {exc}") from None
    return net


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    import torch

    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelConfigError(f"cannot read {path.name} as safetensors: {exc}") from None
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ... for unsafe or corrupt files
        raise ModelConfigError(
            f"{path.name} is not a plain state dict loadable without unpickling code "
            f"({type(exc).__name__}); save it with torch.save(model.state_dict()) or as safetensors"
        ) from None
    if isinstance(loaded, dict):
        for key in ("state_dict", "model", "network"):
            nested = loaded.get(key)
            if isinstance(nested, dict):
                loaded = nested
                break
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ModelConfigError(f"{path.name} does not hold a state dict (name -> tensor)")
    return {str(k): v for k, v in loaded.items()}


def _label_mapping(
    option: str | Path | Mapping[int, str] | None, layout: _Layout, metadata: Mapping[str, Any]
) -> tuple[dict[int, str], str]:
    """Network channel -> level name, and the convention the output label map uses."""
    mapping: dict[int, str]
    if isinstance(option, str) and option in convention_names():
        mapping = label_to_level(option)
        return mapping, option
    if isinstance(option, str | Path):
        path = Path(option)
        if not path.is_file():
            raise ModelConfigError(
                f"label mapping {option!s} is neither a convention ({', '.join(convention_names())}) nor a file"
            )
        return _mapping_from_json(_read_json(path), str(path))
    if option is not None:
        return _checked_mapping({int(k): str(v) for k, v in option.items()}, "label_mapping option")
    if layout.labels is not None:
        return _mapping_from_json(_read_json(layout.labels), str(layout.labels))
    channel_def = metadata.get("network_data_format", {}).get("outputs", {}).get("pred", {}).get("channel_def")
    if isinstance(channel_def, dict):
        parsed = {}
        for key, name in channel_def.items():
            match = _LEVEL_NAME.search(str(name).strip())
            if match:
                parsed[int(key)] = match.group(1)
        if parsed:
            return _checked_mapping(parsed, "metadata channel_def")
    raise ModelConfigError(
        "no label mapping for the network's output channels: pass label_mapping (a convention name, a JSON "
        "file {'1': 'L1', ...} or a dict), or add labels.json to the model directory"
    )


def _mapping_from_json(data: Mapping[str, Any], where: str) -> tuple[dict[int, str], str]:
    if "convention" in data:
        convention = str(data["convention"])
        if convention not in convention_names():
            raise ModelConfigError(f"{where}: unknown convention {convention!r}")
        return label_to_level(convention), convention
    try:
        mapping = {int(k): str(v) for k, v in data.items()}
    except ValueError:
        raise ModelConfigError(f"{where}: keys must be channel numbers, e.g. {{'1': 'L1'}}") from None
    return _checked_mapping(mapping, where)


def _checked_mapping(mapping: dict[int, str], where: str) -> tuple[dict[int, str], str]:
    unknown = sorted(set(mapping.values()) - set(LEVELS))
    if unknown:
        raise ModelConfigError(f"{where}: unknown level names {unknown}; use names such as L1, T12, S1")
    if 0 in mapping:
        raise ModelConfigError(f"{where}: channel 0 is background and cannot be a level")
    if len(set(mapping.values())) != len(mapping):
        raise ModelConfigError(f"{where}: two channels map to the same level")
    ts = set(label_to_level("totalsegmentator").values())
    convention = "totalsegmentator" if set(mapping.values()) <= ts else "verse"
    return mapping, convention


def _to_network_orientation(
    array: npt.NDArray[np.generic], codes: tuple[str, str, str]
) -> tuple[npt.NDArray[np.generic], tuple[int, int, int], tuple[int, int, int]]:
    """The RAS array re-oriented to `codes`; the axis permutation used and its inverse."""
    ras = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}
    to_net = (ras[codes[0]], ras[codes[1]], ras[codes[2]])
    flips = tuple(slice(None, None, -1) if code in "LPI" else slice(None) for code in codes)
    image = np.transpose(array, to_net)[flips]
    from_net = tuple(int(i) for i in np.argsort(to_net))
    return image, to_net, (from_net[0], from_net[1], from_net[2])


def _from_network_orientation(
    array: npt.NDArray[Any], codes: tuple[str, str, str], from_net: tuple[int, int, int]
) -> npt.NDArray[Any]:
    """Undo `_to_network_orientation`: unflip in the network's axes, then transpose back to RAS."""
    flips = tuple(slice(None, None, -1) if code in "LPI" else slice(None) for code in codes)
    return np.ascontiguousarray(np.transpose(array[flips], from_net))


def _normalise(tensor: torch.Tensor, intensity: Mapping[str, Any] | None) -> torch.Tensor:
    if intensity is None:
        return tensor
    if "mean" in intensity:
        return (tensor - float(intensity["mean"])) / max(float(intensity["std"]), 1e-6)
    a_min, a_max = float(intensity["a_min"]), float(intensity["a_max"])
    b_min, b_max = float(intensity.get("b_min", 0.0)), float(intensity.get("b_max", 1.0))
    scaled = (tensor - a_min) / max(a_max - a_min, 1e-6) * (b_max - b_min) + b_min
    if intensity.get("clip", True):
        scaled = scaled.clamp(min(b_min, b_max), max(b_min, b_max))
    return scaled


def _nearest_back(array: npt.NDArray[Any], shape: tuple[int, ...]) -> npt.NDArray[Any]:
    """Nearest-neighbour resampling of `array` (network grid) onto `shape` (CT grid, same extent)."""
    if array.shape == shape:
        return array
    index = [
        np.clip(np.floor((np.arange(n) + 0.5) * m / n).astype(np.intp), 0, m - 1)
        for n, m in zip(shape, array.shape, strict=True)
    ]
    resampled: npt.NDArray[Any] = array[np.ix_(*index)]
    return resampled


def _largest_component(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    components, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    largest: npt.NDArray[np.bool_] = components == int(np.argmax(sizes))
    return largest


def _fmt(values: tuple[float, float, float]) -> str:
    return "x".join(f"{v:g}" for v in values)
