"""Dataset registry: one name per dataset, each a pair of random-access
sources plus class names.

A source has `__len__` and `__getitem__(i) -> {"image": encoded bytes or a
uint8 (H, W, 3) array, "label": int, "name": str}`; the input pipeline
decodes, augments and batches it (`scenejax.input_pipeline`). TFDS
datasets are read through `tfds.data_source` (ArrayRecord, random access,
no TensorFlow); images stay encoded until the pipeline decodes them, so a
corrupt image is skipped there, by name, instead of killing the run.

| name | source | classes |
|---|---|---|
| synthetic_scenes | `scenejax.synthetic` (rendered, no download) | 8 |
| sun397 | TFDS `sun397/standard-part1-120k` (50/50 per class) | 397 |
| places365 | TFDS `places365_small` (train / validation) | 365 |
| places365_7, places365_14 | the [SP] §4.2 subsets of places365 | 7, 14 |
| mit67 | `scenejax.datasets.mit67` builder (manual download) | 67 |
| ade20k_scenes | `scenejax.datasets.ade20k_scenes` builder | 1,055 |
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import os
from typing import Any

import numpy as np

from scenejax.datasets.common import DatasetError

# [SP] §4.2: "Places 365-7 consists of seven indoor scenes: Bath, Bedroom,
# Corridor, Dining Room, Kitchen, Living Room, and Office"; Places365-14 the
# fourteen below. Balcony and garage are read as their indoor categories
# (balcony/interior, garage/indoor): both subsets are described as indoor
# scenes. Classes keep Places365's (alphabetical) order.
PLACES365_7 = ("bathroom", "bedroom", "corridor", "dining_room", "kitchen",
               "living_room", "office")
PLACES365_14 = ("balcony/interior", "bathroom", "bedroom", "closet",
                "dining_room", "garage/indoor", "home_office", "home_theater",
                "kitchen", "laundromat", "living_room", "playroom",
                "staircase", "wet_bar")

NAMES = ("synthetic_scenes", "sun397", "places365", "places365_7",
         "places365_14", "mit67", "ade20k_scenes")


@dataclasses.dataclass
class Dataset:
  """A dataset's train and evaluation sources and its class names."""
  name: str
  class_names: tuple[str, ...]
  train: Any
  test: Any
  # Synthetic only: the spec with label maps for building a prototype.
  spec: Any = None

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


class TfdsSource:
  """Random access to a prepared TFDS split, images left encoded."""

  def __init__(self, name: str, split: str, data_dir: str | None, *,
               registry_name: str):
    import tensorflow_datasets as tfds
    where = data_dir or "~/tensorflow_datasets"
    builder = tfds.builder(name, data_dir=data_dir)
    # Every image-like feature stays encoded: labels read fast, and images
    # are decoded (or skipped if corrupt) by the input pipeline.
    decoders = {k: tfds.decode.SkipDecoding()
                for k, f in builder.info.features.items()
                if isinstance(f, tfds.features.Image)}
    try:
      self._source = builder.as_data_source(split, decoders=decoders)
    except Exception as e:  # pylint: disable=broad-except  (TFDS's kinds)
      if not builder.is_prepared():
        raise DatasetError(
            f"TFDS dataset {name!r} is not prepared under data_dir={where}. "
            f"Prepare it first: python -m scenejax.datasets prepare "
            f"{registry_name} --data_dir=... [--manual_dir=...]") from e
      raise DatasetError(f"TFDS dataset {name!r} split {split!r} under "
                         f"data_dir={where} cannot be read: {e}") from e
    self.builder = builder
    self._prefix = f"{name}/{split}"

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    record = self._source[index]
    name = record.get("file_name", b"")
    name = name.decode() if isinstance(name, bytes) else str(name)
    return {"image": record["image"], "label": int(record["label"]),
            "name": f"{self._prefix}[{index}] {name}".strip()}

  def labels(self) -> np.ndarray:
    """Every record's label (reads each record once)."""
    return np.array([int(self._source[i]["label"]) for i in range(len(self))],
                    np.int64)

  @property
  def has_label_maps(self) -> bool:
    return "segmentation" in self.builder.info.features

  def label_maps(self):
    """Yields each record's 2-D uint8 semantic label map (ade20k_scenes)."""
    from PIL import Image
    if not self.has_label_maps:
      raise DatasetError(f"{self._prefix} has no segmentation maps")
    for i in range(len(self)):
      with Image.open(io.BytesIO(self._source[i]["segmentation"])) as png:
        yield np.asarray(png)


class SubsetSource:
  """The records of `source` whose class is in `keep` (ids), relabelled
  0..len(keep)-1 in the order of `keep`."""

  def __init__(self, source, keep: list[int], labels: np.ndarray):
    self._source = source
    self._remap = {old: new for new, old in enumerate(keep)}
    self._indices = np.flatnonzero(np.isin(labels, keep))

  def __len__(self):
    return len(self._indices)

  def __getitem__(self, index):
    record = dict(self._source[int(self._indices[index])])
    record["label"] = self._remap[record["label"]]
    return record


def _cached_labels(source: TfdsSource, cache: str) -> np.ndarray:
  """Labels of every record, cached in an .npy beside the data when that
  directory is writable (a temporary file renamed, so never half-written)."""
  if os.path.exists(cache):
    return np.load(cache, allow_pickle=False)
  labels = source.labels()
  tmp = cache + ".tmp.npy"
  try:
    np.save(tmp, labels)
    os.replace(tmp, cache)
  except OSError:
    pass  # read-only data_dir: recompute next time
  return labels


def _subset(name, classes, data_dir):
  train, test = (TfdsSource("places365_small", split, data_dir,
                            registry_name=name)
                 for split in ("train", "validation"))
  all_names = train.builder.info.features["label"].names
  missing = [c for c in classes if c not in all_names]
  if missing:
    raise DatasetError(f"{name}: classes {missing} not in places365_small")
  keep = [all_names.index(c) for c in classes]
  data_path = os.fspath(train.builder.data_dir)
  sources = []
  for split, src in (("train", train), ("validation", test)):
    labels = _cached_labels(src, os.path.join(
        data_path, f"labels-{split}.npy"))
    sources.append(SubsetSource(src, keep, labels))
  return Dataset(name, tuple(classes), sources[0], sources[1])


def load(name: str, *, data_dir: str | None = None,
         sun397_config: str = "standard-part1-120k",
         synthetic_options: dict | None = None) -> Dataset:
  """The dataset `name` (one of `NAMES`), from TFDS's `data_dir`.

  `sun397_config` picks the TFDS SUN397 config: "standard-part1-120k"
  (default: partition 1 of the official ten, 50 train / 50 test per class,
  the protocol of [SP]), "standard-part2-120k" ... or "tfds" (TFDS's own
  random 76/10/14 % split, evaluated on its "test").
  """
  if name == "synthetic_scenes":
    from scenejax import synthetic
    spec, train, test = synthetic.load(**(synthetic_options or {}))
    return Dataset(name, tuple(spec.class_names), train, test, spec=spec)
  if name in ("places365_7", "places365_14"):
    return _subset(name, PLACES365_7 if name == "places365_7" else
                   PLACES365_14, data_dir)
  if name == "sun397":
    tfds_name, splits = f"sun397/{sun397_config}", ("train", "test")
  elif name == "places365":
    tfds_name, splits = "places365_small", ("train", "validation")
  elif name == "mit67":
    importlib.import_module("scenejax.datasets.mit67")  # registers it
    tfds_name, splits = "mit67", ("train", "test")
  elif name == "ade20k_scenes":
    importlib.import_module("scenejax.datasets.ade20k_scenes")
    tfds_name, splits = "ade20k_scenes", ("train", "validation")
  else:
    raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}")
  train, test = (TfdsSource(tfds_name, s, data_dir, registry_name=name)
                 for s in splits)
  names = tuple(train.builder.info.features["label"].names)
  return Dataset(name, names, train, test)
