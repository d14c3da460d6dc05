"""Reading CT volumes and label maps: DICOM folders, files and payloads, and NIfTI.

Canonical orientation: every `Volume` and `LabelMap` returned here is RAS+ (nibabel's
`as_closest_canonical` convention): array axis 0 points to the patient's Right, axis 1 Anterior, axis 2
Superior. Axial slices are `array[:, :, k]` and k grows cranially. Voxels are float32 Hounsfield units
(RescaleSlope/Intercept applied per slice or per frame; padding and out-of-field voxels set to -1024 HU).
The affine maps voxel indices to RAS millimetres (DICOM's LPS patient coordinates with x and y negated).
Arrays are Fortran-ordered when the slices were axial, so that each axial slice is contiguous.

Public functions (other packages call exactly these):
- `load_ct(path, *, cancel=None, options=None) -> Volume`: a DICOM folder (recursive, any file names, the
  best axial CT series chosen and the reason recorded in `acquisition.selection_reason`), a DICOM file
  (multi-frame Enhanced CT; a single slice is refused), or a NIfTI file (.nii/.nii.gz).
- `load_dicom_datasets(datasets) -> Volume`, `load_dicom_bytes(instances) -> Volume`: in-memory DICOM.
- `load_nifti_bytes(data) -> Volume`: a NIfTI payload, gzip or not, parsed in memory.
- `load_label_map(path, *, reference, convention="totalsegmentator") -> LabelMap` and
  `label_map_from_bytes(data, *, reference, convention=...)`: aligned to the CT by geometry.
- `dataset_to_hu(ds)`: HU of one DICOM image without geometry (a lower-level helper).
- `folder_files(folder)`, `is_nifti_path(path)`: which files a folder read takes; whether a path is NIfTI.

Every refusal is an `imaging.errors.ImageInputError` (or its `GeometryError`) with a `reason` code, e.g.
NOT_DICOM, CORRUPT_DICOM, WRONG_MODALITY, LOCALIZER_ONLY, TOO_FEW_SLICES, SLICE_GAP, GANTRY_TILT,
NON_FINITE_VALUES, NIFTI_4D, SINGULAR_AFFINE, VOLUME_TOO_LARGE, DECODER_MISSING, LABEL_GEOMETRY_MISMATCH.
Limits and tolerances: `ReadOptions`.
"""

from imaging.io.dicom_pixels import dataset_to_hu
from imaging.io.labels import label_map_from_bytes, load_label_map
from imaging.io.nifti import is_nifti_path
from imaging.io.options import DEFAULT_MAX_VOXELS, ReadOptions
from imaging.io.readers import folder_files, load_ct, load_dicom_bytes, load_dicom_datasets, load_nifti_bytes

__all__ = [
    "DEFAULT_MAX_VOXELS",
    "ReadOptions",
    "dataset_to_hu",
    "folder_files",
    "is_nifti_path",
    "label_map_from_bytes",
    "load_ct",
    "load_dicom_bytes",
    "load_dicom_datasets",
    "load_label_map",
    "load_nifti_bytes",
]
