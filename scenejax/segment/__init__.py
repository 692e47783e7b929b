"""Segmenting images with a scenejax segmenter: label maps, SAS-Net's top-3
files, streaming prototypes and mIoU (`predictor`); the command is
`python -m scenejax.segment` (`__main__`).
"""

from scenejax.segment.predictor import (
  ADE20K_NUM_CLASSES,
  IMAGE_SUFFIXES,
  TOP3_IDS_DIR,
  TOP3_SCORES_DIR,
  Predictor,
  Resize,
  check_ade20k_output,
  checkpoint_label_names,
  image_files,
  label_map,
  load_segmenter,
  png_name,
  progress,
  segment_records,
  window_starts,
  window_stride,
  write_files,
  write_outputs,
  write_png,
  write_split_files,
)

__all__ = [
  "ADE20K_NUM_CLASSES",
  "IMAGE_SUFFIXES",
  "Predictor",
  "Resize",
  "TOP3_IDS_DIR",
  "TOP3_SCORES_DIR",
  "check_ade20k_output",
  "checkpoint_label_names",
  "image_files",
  "label_map",
  "load_segmenter",
  "png_name",
  "progress",
  "segment_records",
  "window_starts",
  "window_stride",
  "write_files",
  "write_outputs",
  "write_png",
  "write_split_files",
]
