"""Bone measurements of one vertebra, from a CT `Volume` and a vertebra mask.

- `body`: the vertebral body separated from the posterior elements (pedicle cut), with its own axes;
- `roi`: the trabecular region of interest inside the body (cortex, endplates and the basivertebral vein excluded);
- `intensity`: robust HU statistics of the ROI (bone islands and venous channels rejected as outliers);
- `heights`: anterior, middle and posterior heights on the mid-sagittal plane and the Genant grade;
- `texture`: GLCM and first-order texture features (scikit-image);
- `vertebra`: all of the above for every level of a `VertebraSegmentation`, in bounding boxes.
"""
