"""Multi-label datasets for config.task = "multilabel" ([SADCL]): records
{"image", "label": (K,) uint8 presence of each label (1 present, 0 absent; VOC's
`DIFFICULT`), "name"}.

| name | labels (K) | train / evaluation |
|---|---|---|
| synthetic_scenes | the L objects visible in each rendered label map | `scenejax.datasets.synthetic` train / test |
| ade20k_scenes | the 150 ADE20K objects present in each 150-class map | train / validation |
| voc2007 | the 20 VOC classes of the image's objects, difficult ones included | TFDS `voc/2007` train+validation / test |
| coco2014 | the 80 COCO categories of the image's objects | TFDS `coco/2014` train / validation |
| nus_wide | the 81 NUS-WIDE concepts | `scenejax.datasets.nus_wide` builder (manual) train / test |

Presence comes from what is annotated, as Algorithm 1 of [SP] reads it
(an object of the map, not an object drawn and then hidden). A VOC class
present only as "difficult" objects is stored as `DIFFICULT` (2): a
positive in training (ML-GCN's loader turns its target 0 into 1) and left
out of evaluation (ML-GCN's AP meter skips difficult examples), whose
protocol SADCL's tables follow.
COCO images without any object (about 700 of train2014) and NUS-WIDE
images without any concept are left out with `drop_unlabeled` (ML-GCN's
82,081 / 40,137 COCO images), kept otherwise as all-negative examples.

The (N, K) presence of a TFDS split is read once (every record for VOC
and COCO, every label map for ADE20K) and cached as an .npy beside the
data when that directory is writable.

References:
  [SADCL] L. Ma, D. Sun, L. Wang, H. Zhao, B. Luo. Semantic-Aware Dual
          Contrastive Learning for Multi-label Image Classification. ECAI
          2023.
  [ML-GCN] Z.-M. Chen, X.-S. Wei, P. Wang, Y. Guo. Multi-Label Image
          Recognition with Graph Convolutional Networks. CVPR 2019.
          doi:10.1109/CVPR.2019.00532.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence

import numpy as np

from scenejax.datasets import common
from scenejax.errors import DatasetError

# config.dataset values config.task = "multilabel" reads.
NAMES = (
  "synthetic_scenes",
  "ade20k_scenes",
  "voc2007",
  "coco2014",
  "nus_wide",
)


def presence_from_label_map(label_map, num_labels: int) -> np.ndarray:
  """(K,) uint8: 1 where id k + 1 occurs in the ADE20K-convention map
  (0 = unlabeled and ids above K ignored)."""
  ids = np.asarray(label_map).ravel()
  counts = np.bincount(ids[ids <= num_labels], minlength=num_labels + 1)
  return (counts[1:] > 0).astype(np.uint8)


def presence_from_indices(indices, num_labels: int) -> np.ndarray:
  """(K,) uint8: 1 at each 0-based label index listed (repeats allowed)."""
  indices = np.asarray(indices, np.int64).ravel()
  if indices.size and (indices.min() < 0 or indices.max() >= num_labels):
    raise DatasetError(
      f"label index {int(indices.max())} outside [0, {num_labels})"
    )
  out = np.zeros(num_labels, np.uint8)
  out[indices] = 1
  return out


# A label present only as VOC "difficult" objects: a positive in training,
# left out of evaluation (ML-GCN's AP meter with difficult_examples).
DIFFICULT = 2


def voc_presence(record: dict, num_labels: int = 20) -> np.ndarray:
  """A TFDS voc record's presence: 1 for the classes of its non-difficult
  objects ("labels_no_difficult"), `DIFFICULT` for those it has only as
  difficult objects, 0 otherwise."""
  present = presence_from_indices(record["labels"], num_labels)
  clear = presence_from_indices(record["labels_no_difficult"], num_labels)
  return np.where(clear > 0, 1, present * DIFFICULT).astype(np.uint8)


def labels_presence(record: dict, num_labels: int) -> np.ndarray:
  """A nus_wide record's presence: its concepts ("labels")."""
  return presence_from_indices(record["labels"], num_labels)


def coco_presence(record: dict, num_labels: int = 80) -> np.ndarray:
  """A TFDS coco record's presence: the categories of its "objects"."""
  return presence_from_indices(record["objects"]["label"], num_labels)


class PresenceSource:
  """Multi-label records of the images `indices` of `images` (a sequence
  of (image, name) readers, concatenated): {"image", "label": row of
  `presence`, "name"}; `presence` (N, K) uint8 covers all of `images`."""

  def __init__(
    self,
    images: Sequence,
    presence: np.ndarray,
    indices: np.ndarray | None = None,
  ):
    self._images = list(images)
    self._offsets = np.cumsum([0] + [len(part) for part in self._images])
    if presence.shape[0] != self._offsets[-1]:
      raise DatasetError(
        f"{presence.shape[0]} presence rows for {self._offsets[-1]} images"
      )
    self.presence = np.asarray(presence, np.uint8)
    self._indices = (
      np.arange(len(presence)) if indices is None else np.asarray(indices)
    )

  def __len__(self):
    return len(self._indices)

  def __getitem__(self, index):
    row = int(self._indices[index])
    part = int(np.searchsorted(self._offsets, row, side="right")) - 1
    image, name = self._images[part].image_and_name(row - self._offsets[part])
    return {"image": image, "label": self.presence[row], "name": name}

  def labels(self) -> np.ndarray:
    """(len, K) uint8 presence of the records, in order."""
    return self.presence[self._indices]


class SyntheticPresence:
  """A synthetic split as multi-label records, without "name" (the
  synthetic splits skip the decoding pipeline: every key is an array)."""

  def __init__(self, split, num_labels: int):
    self._split = split
    self.presence = np.stack(
      [presence_from_label_map(m, num_labels) for m in split.label_maps]
    )

  def __len__(self):
    return len(self._split)

  def __getitem__(self, index):
    return {"image": self._split.images[index], "label": self.presence[index]}

  def labels(self) -> np.ndarray:
    return self.presence


def _split_presence(source, presence_of, num_labels: int, cache_name: str):
  """(N, K) presence of every record `i` of a TFDS split, `presence_of(i)`,
  cached as `cache_name` beside the data."""
  return common.cached_array(
    os.path.join(os.fspath(source.builder.data_dir), cache_name),
    lambda: np.stack([presence_of(i) for i in range(len(source))]).reshape(
      len(source), num_labels
    ),
    (len(source), num_labels),
  )


def load(
  name: str,
  *,
  data_dir: str | None = None,
  synthetic_options: dict | None = None,
  drop_unlabeled: bool = True,
):
  """The multi-label dataset `name` (one of `NAMES`): a
  `datasets.Dataset` whose class names are the K label names."""
  from scenejax import datasets

  if name not in NAMES:
    raise DatasetError(
      f"{name!r} has no multi-label view; expected one of {', '.join(NAMES)}"
    )
  if name == "synthetic_scenes":
    data = datasets.load(name, synthetic_options=synthetic_options)
    names = tuple(data.spec.semantic_class_names)
    train, test = (
      SyntheticPresence(split, len(names)) for split in (data.train, data.test)
    )
    return datasets.Dataset(name, names, train, test, spec=data.spec)
  if name == "ade20k_scenes":
    from scenejax.datasets import label_maps

    data = datasets.load(name, data_dir=data_dir)
    names = label_maps.ADE20K_CLASS_NAMES
    splits = []
    for source, split in zip(
      (data.train, data.test), datasets.REGISTRY[name].splits, strict=True
    ):
      presence = _split_presence(
        source,
        lambda i, source=source: presence_from_label_map(
          source.label_map(i), len(names)
        ),
        len(names),
        f"presence-{split}.npy",
      )
      splits.append(PresenceSource([source], presence))
    return datasets.Dataset(name, names, *splits)
  entry = datasets.REGISTRY[name]
  if name == "nus_wide":
    importlib.import_module("scenejax.datasets.nus_wide")  # the builder
  per_record = {
    "voc2007": voc_presence,
    "coco2014": coco_presence,
    "nus_wide": labels_presence,
  }[name]
  out = []
  for split in entry.splits:
    parts = [
      datasets.TfdsSource(entry.tfds_name, s, data_dir, registry_name=name)
      for s in split.split("+")
    ]
    feature = parts[0].builder.info.features
    label_feature = (
      feature["objects"]["label"]
      if name == "coco2014"
      else feature["labels"].feature
    )
    names = tuple(label_feature.names)
    presence = np.concatenate(
      [
        _split_presence(
          part,
          lambda i, part=part: per_record(part.raw(i), len(names)),
          len(names),
          f"presence-{s}.npy",
        )
        for part, s in zip(parts, split.split("+"), strict=True)
      ]
    )
    keep = None
    if name in ("coco2014", "nus_wide") and drop_unlabeled:
      keep = np.flatnonzero(presence.any(axis=1))
    out.append(PresenceSource(parts, presence, keep))
  return datasets.Dataset(name, names, *out)
