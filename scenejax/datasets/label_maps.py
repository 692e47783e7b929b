"""Semantic label maps: reading them and their id convention.

scenejax stores and passes label maps in ADE20K's convention (SceneParsing,
150 classes): 0 = unlabeled, 1..L = semantic classes. Maps written in
another convention are converted where they enter, and only with the
format named explicitly, because the two cannot be told apart from the
values alone: a map of ids 0..149 is a valid ADE20K map whose class 1
("wall") would silently be read as unlabeled.

| format | ids on disk | becomes |
|---|---|---|
| `ade20k` | 0 = unlabeled, 1..L | itself |
| `zero_based` | 0..L-1 = classes, 255 = unlabeled (what mmseg-style segmenters write with `reduce_zero_label`) | id + 1; 255 -> 0 |

Lossy image formats (JPEG, WebP) are refused: compression changes ids.
"""

from __future__ import annotations

import os

import numpy as np

from scenejax.errors import DatasetError

ADE20K_NUM_CLASSES = 150  # L of ADE20K SceneParsing; 0 = unlabeled
# Id k's name (k = 1..150): the first name of each class in ADE20K's
# objectInfo150.txt, as mmsegmentation and transformers' id2label name them.
ADE20K_CLASS_NAMES = (
  "wall",
  "building",
  "sky",
  "floor",
  "tree",
  "ceiling",
  "road",
  "bed",
  "windowpane",
  "grass",
  "cabinet",
  "sidewalk",
  "person",
  "earth",
  "door",
  "table",
  "mountain",
  "plant",
  "curtain",
  "chair",
  "car",
  "water",
  "painting",
  "sofa",
  "shelf",
  "house",
  "sea",
  "mirror",
  "rug",
  "field",
  "armchair",
  "seat",
  "fence",
  "desk",
  "rock",
  "wardrobe",
  "lamp",
  "bathtub",
  "railing",
  "cushion",
  "base",
  "box",
  "column",
  "signboard",
  "chest of drawers",
  "counter",
  "sand",
  "sink",
  "skyscraper",
  "fireplace",
  "refrigerator",
  "grandstand",
  "path",
  "stairs",
  "runway",
  "case",
  "pool table",
  "pillow",
  "screen door",
  "stairway",
  "river",
  "bridge",
  "bookcase",
  "blind",
  "coffee table",
  "toilet",
  "flower",
  "book",
  "hill",
  "bench",
  "countertop",
  "stove",
  "palm",
  "kitchen island",
  "computer",
  "swivel chair",
  "boat",
  "bar",
  "arcade machine",
  "hovel",
  "bus",
  "towel",
  "light",
  "truck",
  "tower",
  "chandelier",
  "awning",
  "streetlight",
  "booth",
  "television receiver",
  "airplane",
  "dirt track",
  "apparel",
  "pole",
  "land",
  "bannister",
  "escalator",
  "ottoman",
  "bottle",
  "buffet",
  "poster",
  "stage",
  "van",
  "ship",
  "fountain",
  "conveyer belt",
  "canopy",
  "washer",
  "plaything",
  "swimming pool",
  "stool",
  "barrel",
  "basket",
  "waterfall",
  "tent",
  "bag",
  "minibike",
  "cradle",
  "oven",
  "ball",
  "food",
  "step",
  "tank",
  "trade name",
  "microwave",
  "pot",
  "animal",
  "bicycle",
  "lake",
  "dishwasher",
  "screen",
  "blanket",
  "sculpture",
  "hood",
  "sconce",
  "vase",
  "traffic light",
  "tray",
  "ashcan",
  "fan",
  "pier",
  "crt screen",
  "plate",
  "monitor",
  "bulletin board",
  "shower",
  "radiator",
  "glass",
  "clock",
  "flag",
)
LABEL_FORMATS = ("ade20k", "zero_based")
_IGNORE = 255  # "unlabeled" in the zero_based format
_LOSSY_FORMATS = ("JPEG", "MPO", "WEBP")  # PIL's names
_INTEGER_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L", "1")


def read_label_map(path: str | os.PathLike) -> np.ndarray:
  """The 2-D integer array of a PNG (or other lossless PIL image) or NPY,
  ids as stored (convert with `to_ade20k_ids`)."""
  path = os.fspath(path)
  try:
    if path.endswith(".npy"):
      label_map = np.load(path, allow_pickle=False)
    else:
      from PIL import Image

      with Image.open(path) as image:
        if image.format in _LOSSY_FORMATS:
          raise DatasetError(
            f"{path}: label maps must be stored losslessly (PNG or NPY); "
            f"this is a {image.format} file, and its compression changes "
            "the ids"
          )
        if image.mode not in _INTEGER_MODES:
          raise DatasetError(
            f"{path}: label map must be a single-channel image (mode L, P, "
            f"I or I;16), got mode {image.mode!r}"
          )
        label_map = np.asarray(image)
  except DatasetError:
    raise
  except (OSError, ValueError) as e:
    raise DatasetError(f"{path}: cannot read label map: {e}") from e
  if label_map.ndim != 2 or not np.issubdtype(label_map.dtype, np.integer):
    raise DatasetError(
      f"{path}: label map must be a 2-D integer array, got shape "
      f"{label_map.shape} dtype {label_map.dtype}"
    )
  return label_map


def to_ade20k_ids(
  label_map: np.ndarray,
  label_format: str,
  num_semantic_classes: int = ADE20K_NUM_CLASSES,
  *,
  source: str = "label map",
) -> np.ndarray:
  """`label_map` in the ADE20K convention (0 = unlabeled, 1..L), int64.

  Raises DatasetError naming `source` and the first value that cannot be an
  id of `label_format`.
  """
  if label_format not in LABEL_FORMATS:
    raise DatasetError(
      f"label format {label_format!r}; expected one of {LABEL_FORMATS}"
    )
  ids = np.asarray(label_map).astype(np.int64)
  if label_format == "zero_based":
    valid = ((ids >= 0) & (ids < num_semantic_classes)) | (ids == _IGNORE)
    allowed = f"0..{num_semantic_classes - 1} or {_IGNORE} (unlabeled)"
  else:
    valid = (ids >= 0) & (ids <= num_semantic_classes)
    allowed = f"0 (unlabeled) or 1..{num_semantic_classes}"
  if not valid.all():
    bad = ids[~valid]
    hint = (
      " (values 0..L-1 with 255 look like --label_format=zero_based)"
      if label_format == "ade20k" and _IGNORE in bad
      else ""
    )
    raise DatasetError(
      f"{source}: value {int(bad[0])} is not an id of label format "
      f"{label_format!r}; allowed: {allowed}{hint}"
    )
  if label_format == "zero_based":
    ids = np.where(ids == _IGNORE, 0, ids + 1)
  return ids
