"""Cityscapes semantic segmentation through TFDS's own builder
(`cityscapes/semantic_segmentation`, manual download), for [SEG]'s second
benchmark.

TFDS stores the gtFine *labelIds* maps (ids 0..33, Cityscapes' full label
set). Training and evaluation use the 19 classes of the benchmark
(`trainId` 0..18 in cityscapesScripts' `labels.py`); scenejax's convention
makes them ids 1..19 with 0 = unlabeled, so every other label (void,
rectification border, license plate, ...) is ignored, as the benchmark
does:

  prepare:  python -m scenejax.datasets prepare cityscapes --manual_dir=DIR
            (DIR holds leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip)

Images are 2048x1024 PNGs. Splits: train (2,975), validation (500).

References:
  M. Cordts et al. The Cityscapes Dataset for Semantic Urban Scene
  Understanding. CVPR 2016. doi:10.1109/CVPR.2016.350.
"""

from __future__ import annotations

import numpy as np

TFDS_NAME = "cityscapes/semantic_segmentation"
SPLITS = ("train", "validation")

# The benchmark's 19 classes in trainId order (cityscapesScripts labels.py).
CLASS_NAMES = (
  "road",
  "sidewalk",
  "building",
  "wall",
  "fence",
  "pole",
  "traffic light",
  "traffic sign",
  "vegetation",
  "terrain",
  "sky",
  "person",
  "rider",
  "car",
  "truck",
  "bus",
  "train",
  "motorcycle",
  "bicycle",
)
# labelId -> trainId of the 19 evaluated classes (cityscapesScripts
# labels.py); every other labelId is ignored.
_LABEL_TO_TRAIN = {
  7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
  23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip


def label_lut() -> np.ndarray:
  """(256,) uint8: labelId -> scenejax id (trainId + 1; 0 = ignored)."""
  lut = np.zeros(256, np.uint8)
  for label_id, train_id in _LABEL_TO_TRAIN.items():
    lut[label_id] = train_id + 1
  return lut


class Source:
  """Random access to a prepared Cityscapes split as segmentation records:
  {"image": PNG bytes, "label": PNG bytes of labelIds, "label_lut": the
  labelId -> id table, "name"}."""

  def __init__(self, split: str, data_dir: str | None):
    import tensorflow_datasets as tfds

    from scenejax.datasets import DatasetError

    builder = tfds.builder(TFDS_NAME, data_dir=data_dir)
    decoders = {
      k: tfds.decode.SkipDecoding()
      for k in ("image_left", "segmentation_label")
    }
    try:
      self._source = builder.as_data_source(split, decoders=decoders)
    except Exception as e:
      if not builder.is_prepared():
        raise DatasetError(
          f"TFDS dataset {TFDS_NAME!r} is not prepared under data_dir="
          f"{data_dir or '~/tensorflow_datasets'}. Prepare it first: python -m "
          "scenejax.datasets prepare cityscapes --data_dir=... "
          "--manual_dir=DIR (DIR: leftImg8bit_trainvaltest.zip, "
          "gtFine_trainvaltest.zip)"
        ) from e
      raise DatasetError(f"{TFDS_NAME} split {split!r}: {e}") from e
    self._prefix = f"cityscapes/{split}"
    self._lut = label_lut()

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    record = self._source[index]
    image_id = record["image_id"]
    image_id = image_id.decode() if isinstance(image_id, bytes) else image_id
    return {
      "image": record["image_left"],
      "label": record["segmentation_label"],
      "label_lut": self._lut,
      "name": f"{self._prefix}[{index}] {image_id}",
    }

  def label_maps(self):
    """Each record's map in scenejax ids (1..19, 0 ignored)."""
    import io

    from PIL import Image

    for i in range(len(self)):
      with Image.open(io.BytesIO(self._source[i]["segmentation_label"])) as png:
        ids = np.asarray(png).reshape(png.size[1], png.size[0])
      yield self._lut[ids]
