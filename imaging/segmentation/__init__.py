"""Vertebra segmentation backends behind one interface (`base.SegmentationBackend`) and a registry.

- `registry`: `get_backend(name, **options)`, `available_backends()`, `backend_names()`; a frozen mapping of
  `BackendSpec`s with lazy imports and install hints (`BackendUnavailableError`).
- `base`: `VertebraSegmentation` (label map + one `LevelInfo` per level, cranial to caudal), `LevelFlag`.
- `labels`: a provided label map (TotalSegmentator or VerSe ids).
- `builtin`: classical image analysis, no weights (levels T10-L5 from the ribs and the sacrum).
- `monai_backend`: a MONAI network or bundle from a local directory (safe, declarative subset).
- `totalseg`: TotalSegmentator in-process, weights installed beforehand.
- `mask_qc`: the per-level mask checks every backend applies (cut by the scan edge, fragmented, small).
"""
