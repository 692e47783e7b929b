"""TFDS builder for MIT Indoor 67 (Quattoni & Torralba 2009).

The official download, placed in the manual directory
(`~/tensorflow_datasets/downloads/manual/` or `manual_dir=`):

  indoorCVPR_09.tar   (or the extracted Images/ directory)
  TrainImages.txt     5,360 lines "class/file.jpg" (80 per class)
  TestImages.txt      1,340 lines (20 per class)

from https://web.mit.edu/torralba/www/indoor.html. Prepare once (this needs
TensorFlow: `pip install scenejax[prepare]`):

  python -m scenejax.datasets prepare mit67 --manual_dir=DIR

Class names are the 67 image folders, sorted. Images that cannot be decoded
are skipped with a warning naming them, and counted.
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from scenejax.datasets import common

URL = "https://web.mit.edu/torralba/www/indoor.html"
LIST_FILES = {"train": "TrainImages.txt", "test": "TestImages.txt"}
# The 67 image folders of indoorCVPR_09.tar, sorted: the label order.
# fmt: off
CLASS_NAMES = (
  "airport_inside", "artstudio", "auditorium", "bakery", "bar", "bathroom",
  "bedroom", "bookstore", "bowling", "buffet", "casino", "children_room",
  "church_inside", "classroom", "cloister", "closet", "clothingstore",
  "computerroom", "concert_hall", "corridor", "deli", "dentaloffice",
  "dining_room", "elevator", "fastfood_restaurant", "florist", "gameroom",
  "garage", "greenhouse", "grocerystore", "gym", "hairsalon", "hospitalroom",
  "inside_bus", "inside_subway", "jewelleryshop", "kindergarden", "kitchen",
  "laboratorywet", "laundromat", "library", "livingroom", "lobby",
  "locker_room", "mall", "meeting_room", "movietheater", "museum", "nursery",
  "office", "operating_room", "pantry", "poolinside", "prisoncell",
  "restaurant", "restaurant_kitchen", "shoeshop", "stairscase", "studiomusic",
  "subway", "toystore", "trainstation", "tv_studio", "videostore",
  "waitingroom", "warehouse", "winecellar",
)
# fmt: on


class Mit67(tfds.core.GeneratorBasedBuilder):
  """MIT Indoor 67 with the official 80/20 train/test lists."""

  VERSION = tfds.core.Version("1.0.0")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f"Download indoorCVPR_09.tar, TrainImages.txt and TestImages.txt from "
    f"{URL} into the manual directory (the tar may be extracted there: an "
    "Images/ directory is used as is)."
  )

  def _info(self):
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(
            shape=(None, None, 3), encoding_format="jpeg"
          ),
          "label": tfds.features.ClassLabel(names=CLASS_NAMES),
          "file_name": tfds.features.Text(),
        }
      ),
      supervised_keys=("image", "label"),
      homepage=URL,
    )

  def _split_generators(self, dl_manager):
    manual = os.fspath(dl_manager.manual_dir)
    lists = {
      split: common.require_file(manual, name, URL)
      for split, name in LIST_FILES.items()
    }
    root = os.path.join(manual, "Images")
    if not os.path.isdir(root):
      tar = common.require_file(manual, "indoorCVPR_09.tar", URL)
      root = os.path.join(os.fspath(dl_manager.extract(tar)), "Images")
    entries = {
      split: common.read_image_list(path) for split, path in lists.items()
    }
    names = sorted({rel.split("/")[0] for rel in entries["train"]})
    if tuple(names) != CLASS_NAMES:
      raise common.DatasetError(
        f"{lists['train']}: expected the 67 class folders of MIT Indoor 67, "
        f"found {len(names)}; not in the official list: "
        f"{sorted(set(names) - set(CLASS_NAMES))[:5]}, missing: "
        f"{sorted(set(CLASS_NAMES) - set(names))[:5]}"
      )
    self.info.features["label"].names = list(CLASS_NAMES)
    return {
      split: self._generate_examples(root, rels)
      for split, rels in entries.items()
    }

  def _generate_examples(self, root, rels):
    for rel in rels:
      image = common.decode_image_file(os.path.join(root, rel))
      if image is None:
        continue
      yield rel, {"image": image, "label": rel.split("/")[0], "file_name": rel}
