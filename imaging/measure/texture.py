"""Texture features of a trabecular ROI for radiomics-style models (scikit-image GLCM + first order).

Method (stated so that values are reproducible and comparable):
- **Discretisation**: HU clipped to the window [`hu_min`, `hu_max`) = [-100, 700) HU and binned with a
  fixed bin width of `bin_width_hu` = 25 HU (32 grey levels), as the Image Biomarker Standardisation
  Initiative recommends for calibrated CT (Zwanenburg et al., Radiology 2020;295(2):328-338,
  doi:10.1148/radiol.2020191145).
- **GLCM** (Haralick et al., IEEE Trans Syst Man Cybern 1973;SMC-3(6):610-621,
  doi:10.1109/TSMC.1973.4309314): on each axial slice of the ROI at the native in-plane spacing, distance
  1 pixel (reported in mm as `glcm_distance_mm`), angles 0, 45, 90 and 135 degrees, symmetric; pairs with a
  voxel outside the ROI are discarded; the matrices of all slices and angles are summed ("2.5-D merged")
  and normalised before computing contrast, homogeneity, energy, correlation (scikit-image `graycoprops`)
  and entropy (-sum p log2 p, bits).
- **First order**: skewness and excess (Fisher) kurtosis of the ROI HU after outlier rejection, from
  `imaging.measure.intensity`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from skimage.feature import graycomatrix, graycoprops

_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)


@dataclass(frozen=True, kw_only=True)
class TextureParams:
    """GLCM discretisation (see the module docstring)."""

    hu_min: float = -100.0
    hu_max: float = 700.0
    bin_width_hu: float = 25.0

    def __post_init__(self) -> None:
        if not self.hu_max > self.hu_min:
            raise ValueError(f"hu_max ({self.hu_max}) must exceed hu_min ({self.hu_min})")
        if not 0 < self.bin_width_hu <= (self.hu_max - self.hu_min) / 2:
            raise ValueError(f"bin_width_hu must lie in (0, half the window], got {self.bin_width_hu}")

    @property
    def levels(self) -> int:
        return int(np.ceil((self.hu_max - self.hu_min) / self.bin_width_hu))

    def provenance(self) -> dict[str, str]:
        return {
            "texture.window_hu": f"[{self.hu_min:g}, {self.hu_max:g})",
            "texture.bin_width_hu": f"{self.bin_width_hu:g}",
            "texture.glcm": "2.5-D merged, distance 1 pixel, angles 0/45/90/135 deg, symmetric",
        }


def texture_features(
    hu: npt.NDArray[np.floating],
    roi: npt.NDArray[np.bool_],
    spacing: tuple[float, float, float],
    *,
    skewness: float,
    kurtosis: float,
    params: TextureParams,
) -> dict[str, float]:
    """GLCM features of the ROI (`hu` and `roi` share one box; axial slices are `[:, :, k]`)."""
    features = {"fo_skewness": skewness, "fo_kurtosis": kurtosis}
    levels = params.levels
    binned = np.floor((np.clip(hu, params.hu_min, params.hu_max - 1e-3) - params.hu_min) / params.bin_width_hu)
    # grey level 0 marks voxels outside the ROI; ROI voxels take 1..levels
    image = np.where(roi, binned.astype(np.int64) + 1, 0).astype(np.uint8)
    total = np.zeros((levels, levels, 1, len(_ANGLES)), dtype=np.float64)
    for k in np.flatnonzero(roi.any(axis=(0, 1))):
        glcm = graycomatrix(image[:, :, k], distances=[1], angles=list(_ANGLES), levels=levels + 1, symmetric=True)
        total += glcm[1:, 1:].astype(np.float64)
    merged = total.sum(axis=3, keepdims=True)
    n_pairs = float(merged.sum())
    if n_pairs == 0.0:
        return features
    p = merged / n_pairs
    for name in ("contrast", "homogeneity", "energy", "correlation"):
        value = float(graycoprops(p, name)[0, 0])
        if np.isfinite(value):
            features[f"glcm_{name}"] = value
    nonzero = p[p > 0]
    features["glcm_entropy"] = float(-(nonzero * np.log2(nonzero)).sum())
    features["glcm_distance_mm"] = float(np.mean(spacing[:2]))
    return features
