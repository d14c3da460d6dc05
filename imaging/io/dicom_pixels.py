"""Stored DICOM pixel values -> Hounsfield units, and the decoders behind compressed transfer syntaxes.

HU = stored * RescaleSlope + RescaleIntercept (DICOM PS3.3 C.11.1.1.2, Modality LUT), per frame where the
Enhanced CT per-frame functional groups carry their own Pixel Value Transformation. Stored values inside
the Pixel Padding Value / Pixel Padding Range Limit (PS3.3 C.7.5.1.1.2) and HU values below the
out-of-field threshold (scanners write -2000 to -3024 HU outside the reconstruction circle) become
-1024 HU (air), and are counted so the reader can say so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from imaging.errors import ImageInputError

AIR_HU = -1024.0
"""The value given to padding and out-of-field voxels."""

_DECODER_PACKAGES: dict[str, str] = {
    JPEG2000Lossless: "pylibjpeg-openjpeg",
    JPEG2000: "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg",  # HTJ2K
    JPEGLSLossless: "pylibjpeg-libjpeg",
    JPEGLSNearLossless: "pylibjpeg-libjpeg",
    JPEGBaseline8Bit: "pylibjpeg-libjpeg",
    JPEGExtended12Bit: "pylibjpeg-libjpeg",
    JPEGLosslessSV1: "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg",  # JPEG Lossless, process 14
    RLELossless: "pylibjpeg-rle",
}
_NATIVE = {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian}


def check_decoder(transfer_syntax: str, where: str) -> None:
    """Raise ImageInputError(reason="DECODER_MISSING") naming the package to install, when needed."""
    if not transfer_syntax or transfer_syntax in _NATIVE:
        return
    from pydicom.pixels import get_decoder

    name = UID(transfer_syntax).name
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        raise ImageInputError(
            f"{where}: transfer syntax {name} ({transfer_syntax}) is not supported by pydicom; "
            "export the series uncompressed or as JPEG 2000 / JPEG-LS / RLE",
            reason="UNSUPPORTED_TRANSFER_SYNTAX",
        ) from None
    if not decoder.is_available:
        package = _DECODER_PACKAGES.get(transfer_syntax, "pylibjpeg and its plug-ins")
        raise ImageInputError(
            f"{where}: no decoder installed for transfer syntax {name}; install it with `pip install pylibjpeg "
            f"{package}`",
            reason="DECODER_MISSING",
        )


@dataclass(frozen=True)
class Rescale:
    """The modality LUT of one frame and its padding values (stored-value space)."""

    slope: float = 1.0
    intercept: float = 0.0
    padding_value: int | None = None
    padding_limit: int | None = None

    @classmethod
    def from_item(cls, item: Dataset, top: Dataset) -> Rescale:
        """From a Pixel Value Transformation item (or the top-level dataset), padding from `top`."""
        slope = item.get("RescaleSlope", top.get("RescaleSlope", 1.0))
        intercept = item.get("RescaleIntercept", top.get("RescaleIntercept", 0.0))
        pad = top.get("PixelPaddingValue")
        limit = top.get("PixelPaddingRangeLimit")
        return cls(
            slope=float(slope if slope not in (None, "") else 1.0),
            intercept=float(intercept if intercept not in (None, "") else 0.0),
            padding_value=int(pad) if isinstance(pad, int | float) else None,
            padding_limit=int(limit) if isinstance(limit, int | float) else None,
        )


def to_hu(
    stored: npt.NDArray[np.integer] | npt.NDArray[np.floating],
    rescale: Rescale,
    *,
    out_of_field_hu: float = -1500.0,
    out: npt.NDArray[np.float32] | None = None,
) -> tuple[npt.NDArray[np.float32], int, int]:
    """Stored values -> float32 HU; returns (hu, padded voxels replaced, out-of-field voxels replaced).

    `out` (same shape, float32, may be a strided view) receives the result without another allocation.
    """
    # Work on a contiguous frame, then copy once into `out` (which may be a flipped, transposed view).
    hu = stored.astype(np.float32)
    if rescale.slope != 1.0:
        hu *= np.float32(rescale.slope)
    if rescale.intercept:
        hu += np.float32(rescale.intercept)
    padded = 0
    if rescale.padding_value is not None:
        if rescale.padding_limit is not None:
            lo, hi = sorted((rescale.padding_value, rescale.padding_limit))
            mask = (stored >= lo) & (stored <= hi)
        else:
            mask = stored == rescale.padding_value
        padded = int(np.count_nonzero(mask))
        if padded:
            hu[mask] = AIR_HU
    out_of_field = 0
    # The lowest HU of the frame comes from its lowest (or, for a negative slope, highest) stored value.
    extreme = min(float(stored.min()) * rescale.slope, float(stored.max()) * rescale.slope) if stored.size else 0.0
    if extreme + rescale.intercept < out_of_field_hu:
        low = hu < np.float32(out_of_field_hu)
        out_of_field = int(np.count_nonzero(low))
        if out_of_field:
            hu[low] = AIR_HU
    if out is not None:
        out[...] = hu
        hu = out
    return hu, padded, out_of_field


def dataset_to_hu(ds: Dataset, *, out_of_field_hu: float = -1500.0) -> npt.NDArray[np.float32]:
    """HU of a single-frame (2-D) or multi-frame (3-D: frames first) DICOM image, per-frame rescale applied.

    A lower-level helper (no geometry): e.g. `dataset_to_hu(pydicom.dcmread(path))`.
    """
    check_decoder(str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else "", "dataset")
    try:
        stored = ds.pixel_array
    except Exception as exc:
        raise ImageInputError(f"cannot decode pixel data: {exc}", reason="CORRUPT_DICOM") from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        return to_hu(stored, frame_rescale(ds, 0), out_of_field_hu=out_of_field_hu)[0]
    out = np.empty(stored.shape, dtype=np.float32)
    for k in range(frames):
        to_hu(stored[k], frame_rescale(ds, k), out_of_field_hu=out_of_field_hu, out=out[k])
    return out


def frame_rescale(ds: Dataset, frame: int) -> Rescale:
    """The Rescale of frame `frame`: per-frame functional group, else shared, else top-level attributes."""
    for groups in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        seq = ds.get(groups)
        if not seq:
            continue
        item = seq[frame] if groups.startswith("PerFrame") and frame < len(seq) else seq[0]
        transform = item.get("PixelValueTransformationSequence")
        if transform:
            return Rescale.from_item(transform[0], ds)
    return Rescale.from_item(ds, ds)
