"""Vertebra segmentation backends behind one interface (`base.SegmentationBackend`) and a registry."""
