"""TFDS builder for ADE20K scene recognition with 150-class label maps.

SAS-Net [SAS] recognises the scene of ADE20K images; [SP] builds its
similarity prototype from the 150-class semantic maps. This builder joins
the SceneParsing challenge release (the 150-class maps, not TFDS
`scene_parse150`'s 2017 instance annotations) with its scene labels:

  ADEChallengeData2016.zip   images/{training,validation}/ADE_*.jpg and
                             annotations/{training,validation}/ADE_*.png
                             (0 = unlabelled, 1..150 = objectInfo150 ids)
  sceneCategories.txt        "ADE_train_00000001 airport_terminal" lines

from http://sceneparsing.csail.mit.edu/ (the zip may be extracted in the
manual directory: an ADEChallengeData2016/ directory is used as is).
Splits: train (20,210), validation (2,000). Scene class names are the
distinct names of sceneCategories.txt, sorted (1,055 in the release).

References:
  [SAS] A. López-Cifuentes, M. Escudero-Viñolo, J. Bescós, Á. García-Martín.
  Semantic-Aware Scene Recognition. Pattern Recognition 102, 2020.
  doi:10.1016/j.patcog.2020.107256, arXiv:1909.02410.
  [SP] C. Song, H. Wu, X. Ma, Y. Li. Semantic-embedded Similarity Prototype
  for Scene Recognition. Pattern Recognition, 2024. arXiv:2308.05896.
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from scenejax.datasets import common

URL = "http://sceneparsing.csail.mit.edu/"
SPLITS = {"train": "training", "validation": "validation"}


class Ade20kScenes(tfds.core.GeneratorBasedBuilder):
  """ADE20K images, 150-class label maps and scene labels."""

  VERSION = tfds.core.Version("1.0.0")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f"Download ADEChallengeData2016.zip and sceneCategories.txt from {URL} "
    "into the manual directory."
  )

  def _info(self):
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(
            shape=(None, None, 3), encoding_format="jpeg"
          ),
          "segmentation": tfds.features.Image(
            shape=(None, None, 1), encoding_format="png"
          ),
          "label": tfds.features.ClassLabel(num_classes=None),
          "file_name": tfds.features.Text(),
        }
      ),
      supervised_keys=("image", "label"),
      homepage=URL,
    )

  def _split_generators(self, dl_manager):
    manual = os.fspath(dl_manager.manual_dir)
    scenes_file = common.require_file(manual, "sceneCategories.txt", URL)
    scenes = {}
    with open(scenes_file) as f:
      for number, line in enumerate(f, 1):
        parts = line.split()
        if not parts:
          continue
        if len(parts) != 2:
          raise common.DatasetError(
            f"{scenes_file}:{number}: expected 'image_id scene', got "
            f"{line.strip()!r}"
          )
        scenes[parts[0]] = parts[1]
    self.info.features["label"].names = sorted(set(scenes.values()))
    root = os.path.join(manual, "ADEChallengeData2016")
    if not os.path.isdir(root):
      archive = common.require_file(manual, "ADEChallengeData2016.zip", URL)
      root = os.path.join(
        os.fspath(dl_manager.extract(archive)), "ADEChallengeData2016"
      )
    return {
      split: self._generate_examples(root, folder, scenes)
      for split, folder in SPLITS.items()
    }

  def _generate_examples(self, root, folder, scenes):
    image_dir = os.path.join(root, "images", folder)
    if not os.path.isdir(image_dir):
      raise common.DatasetError(
        f"{image_dir} does not exist; is ADEChallengeData2016 complete?"
      )
    for name in sorted(os.listdir(image_dir)):
      stem, ext = os.path.splitext(name)
      if ext.lower() != ".jpg":
        continue
      if stem not in scenes:
        raise common.DatasetError(
          f"{name}: no scene label in sceneCategories.txt"
        )
      annotation = os.path.join(root, "annotations", folder, stem + ".png")
      if not os.path.exists(annotation):
        raise common.DatasetError(
          f"{annotation} does not exist (the label map of {name})"
        )
      image = common.decode_image_file(os.path.join(image_dir, name))
      if image is None:
        continue
      label_map = common.read_label_map_file(annotation)
      if label_map.shape != image.shape[:2]:
        raise common.DatasetError(
          f"{annotation}: label map {label_map.shape} does not match its "
          f"image {image.shape[:2]}"
        )
      yield (
        stem,
        {
          "image": image,
          "segmentation": label_map[..., None],
          "label": scenes[stem],
          "file_name": name,
        },
      )
