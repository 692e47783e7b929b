"""TFDS builder for NUS-WIDE's 81-concept multi-label benchmark (manual
download), as [SADCL] evaluates on it (mAP 65.9).

The release's annotation files and the images, placed in the manual
directory as the release lays them out:

  ConceptsList/Concepts81.txt          the 81 concept names, in label order
  ImageList/TrainImagelist.txt         161,789 lines "actor\\0001_2124494179.jpg"
  ImageList/TestImagelist.txt          107,859 lines
  Groundtruth/TrainTestLabels/Labels_{concept}_{Train,Test}.txt
                                       one 0/1 per line of that split's list
  Flickr/{folder}/{file}.jpg           the images (from the authors on
                                       request, or a mirror of them)

from https://lms.comp.nus.edu.sg/wp-content/uploads/2019/research/nuswide/NUS-WIDE.html.
Each record: the image, "labels" (the indices of its concepts) and
"file_name". Images missing from Flickr/ (many of the original URLs are
dead, and mirrors lack some) or that cannot be decoded are left out and
counted in the log; images without any concept are kept (the multi-label
loader drops them with `config.multilabel.drop_unlabeled`, the usual
protocol).

References:
  [NUS-WIDE] T.-S. Chua, J. Tang, R. Hong, H. Li, Z. Luo, Y. Zheng.
             NUS-WIDE: A Real-World Web Image Database from National
             University of Singapore. CIVR 2009. doi:10.1145/1646396.1646452.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from scenejax.datasets import common

URL = (
  "https://lms.comp.nus.edu.sg/wp-content/uploads/2019/research/nuswide/"
  "NUS-WIDE.html"
)
SPLITS = {"train": "Train", "test": "Test"}
CONCEPTS = "ConceptsList/Concepts81.txt"
LISTS = {
  "train": "ImageList/TrainImagelist.txt",
  "test": "ImageList/TestImagelist.txt",
}
LABELS = "Groundtruth/TrainTestLabels/Labels_{concept}_{split}.txt"


def read_labels(manual: str, concepts, split: str, count: int) -> np.ndarray:
  """(count, K) uint8 ground truth of `split` ("Train" | "Test") from the
  per-concept files; an error names a missing, short or non-0/1 file."""
  out = np.zeros((count, len(concepts)), np.uint8)
  for k, concept in enumerate(concepts):
    name = LABELS.format(concept=concept, split=split)
    path = common.require_file(manual, name, URL)
    with open(path) as f:
      values = [line.strip() for line in f if line.strip()]
    if len(values) != count or not set(values) <= {"0", "1"}:
      raise common.DatasetError(
        f"{path}: expected {count} lines of 0 or 1 (one per line of the "
        f"{split} image list), found {len(values)} lines"
        + ("" if set(values) <= {"0", "1"} else " with other values")
      )
    out[:, k] = np.asarray(values, dtype=np.uint8)
  return out


class NusWide(tfds.core.GeneratorBasedBuilder):
  """NUS-WIDE images with their 81-concept labels (official split)."""

  VERSION = tfds.core.Version("1.0.0")
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
    f"Place NUS-WIDE's ConceptsList/, ImageList/, Groundtruth/ (from {URL}) "
    "and the images as Flickr/FOLDER/FILE.jpg in the manual directory."
  )

  def _info(self):
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(
            shape=(None, None, 3), encoding_format="jpeg"
          ),
          "labels": tfds.features.Sequence(
            tfds.features.ClassLabel(num_classes=None)
          ),
          "file_name": tfds.features.Text(),
        }
      ),
      homepage=URL,
    )

  def _split_generators(self, dl_manager):
    manual = os.fspath(dl_manager.manual_dir)
    with open(common.require_file(manual, CONCEPTS, URL)) as f:
      concepts = [line.strip() for line in f if line.strip()]
    self.info.features["labels"].feature.names = concepts
    out = {}
    for split, suffix in SPLITS.items():
      rels = common.read_image_list(
        common.require_file(manual, LISTS[split], URL)
      )
      labels = read_labels(manual, concepts, suffix, len(rels))
      out[split] = self._generate_examples(manual, rels, labels)
    return out

  def _generate_examples(self, manual, rels, labels):
    missing = 0
    for rel, row in zip(rels, labels, strict=True):
      path = os.path.join(manual, "Flickr", rel)
      if not os.path.exists(path):
        missing += 1
        continue
      image = common.decode_image_file(path)
      if image is None:
        continue
      yield (
        rel,
        {
          "image": image,
          "labels": np.flatnonzero(row).astype(np.int64),
          "file_name": rel,
        },
      )
    if missing:
      logging.warning(
        "NUS-WIDE: %d of %d listed images are not in %s/Flickr: left out",
        missing,
        len(rels),
        manual,
      )
