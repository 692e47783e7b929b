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
| synthetic_scenes | `scenejax.datasets.synthetic` (rendered, no download) | 8 |
| sun397 | TFDS `sun397/standard-part1-120k` (50/50 per class) | 397 |
| places365 | TFDS `places365_small` (train / validation) | 365 |
| places365_1k | [PCL]'s "Places365-small": 1,000 train images per class of places365, seeded; the full validation split | 365 |
| places365_7, places365_14 | the [SP] §4.2 subsets of places365 | 7, 14 |
| mit67 | `scenejax.datasets.mit67` builder (manual download) | 67 |
| ade20k_scenes | `scenejax.datasets.ade20k_scenes` builder | 1,055 |
| image_folder | your images, DIR/train/CLASS/IMAGE (`config.data.image_folder`; `scenejax.datasets.image_folder`) | the folders |

Segmentation-only (`cityscapes`) and multi-label-only (`voc2007`,
`coco2014`, `nus_wide`: `scenejax.datasets.multilabel`) datasets are registered for
`prepare` and read by their task's loader.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from scenejax.datasets import common
from scenejax.errors import ConfigError, DatasetError

# [SP] §4.2: "Places 365-7 consists of seven indoor scenes: Bath, Bedroom,
# Corridor, Dining Room, Kitchen, Living Room, and Office"; Places365-14 the
# fourteen below. Balcony and garage are read as their indoor categories
# (balcony/interior, garage/indoor): both subsets are described as indoor
# scenes. Classes keep Places365's (alphabetical) order.
PLACES365_7 = (
  "bathroom",
  "bedroom",
  "corridor",
  "dining_room",
  "kitchen",
  "living_room",
  "office",
)
PLACES365_14 = (
  "balcony/interior",
  "bathroom",
  "bedroom",
  "closet",
  "dining_room",
  "garage/indoor",
  "home_office",
  "home_theater",
  "kitchen",
  "laundromat",
  "living_room",
  "playroom",
  "staircase",
  "wet_bar",
)

# [PCL] §5: "we also randomly choose 1000 images per category from
# Places365-standard set, and construct a new training set, termed
# Places365-small" (not TFDS's places365_small, which is the whole standard
# set at 256 px). The authors' draw is unpublished: ours is seeded.
PLACES365_1K_PER_CLASS = 1000
PLACES365_1K_SEED = 0


@dataclasses.dataclass(frozen=True)
class Entry:
  """Where a registered dataset comes from."""

  tfds_name: str  # the TFDS builder (and config) it is read from
  splits: tuple[str, str]  # (train, eval)
  builder_module: str = ""  # scenejax.datasets.X registers the builder


# The one list of datasets; `synthetic_scenes` is rendered, not read.
REGISTRY = {
  "sun397": Entry("sun397/standard-part1-120k", ("train", "test")),
  "places365": Entry("places365_small", ("train", "validation")),
  "places365_1k": Entry("places365_small", ("train", "validation")),
  "places365_7": Entry("places365_small", ("train", "validation")),
  "places365_14": Entry("places365_small", ("train", "validation")),
  "mit67": Entry("mit67", ("train", "test"), "mit67"),
  "ade20k_scenes": Entry(
    "ade20k_scenes", ("train", "validation"), "ade20k_scenes"
  ),
  # Segmentation only (no scene labels): config.task = "segmentation".
  "cityscapes": Entry(
    "cityscapes/semantic_segmentation", ("train", "validation")
  ),
  # Multi-label only (objects, no scene labels): config.task =
  # "multilabel" (scenejax.datasets.multilabel; "+" joins splits).
  "voc2007": Entry("voc/2007", ("train+validation", "test")),
  "coco2014": Entry("coco/2014", ("train", "validation")),
  "nus_wide": Entry("nus_wide", ("train", "test"), "nus_wide"),
}
SEGMENTATION_ONLY = ("cityscapes",)
MULTILABEL_ONLY = ("voc2007", "coco2014", "nus_wide")
NAMES = ("synthetic_scenes", "image_folder") + tuple(REGISTRY)


@dataclasses.dataclass
class Dataset:
  """A dataset's train and evaluation sources and its class names."""

  name: str
  class_names: tuple[str, ...]
  train: Any
  test: Any
  # Synthetic only: the spec with label maps for building a prototype.
  spec: Any = None
  # What the splits are made of, where they could change under a run (an
  # image folder): the trainer records it in the workdir and refuses to
  # resume on another (`scenejax.training.checkpoints.check_split_record`).
  split_record: dict | None = None

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


class TfdsSource:
  """Random access to a prepared TFDS split, images left encoded."""

  def __init__(
    self, name: str, split: str, data_dir: str | None, *, registry_name: str
  ):
    import tensorflow_datasets as tfds

    where = data_dir or "~/tensorflow_datasets"
    builder = tfds.builder(name, data_dir=data_dir)
    # Every image-like feature stays encoded: labels read fast, and images
    # are decoded (or skipped if corrupt) by the input pipeline.
    decoders = {
      k: tfds.decode.SkipDecoding()
      for k, f in builder.info.features.items()
      if isinstance(f, tfds.features.Image)
    }
    try:
      self._source = builder.as_data_source(split, decoders=decoders)
    except Exception as e:
      if not builder.is_prepared():
        raise DatasetError(
          f"TFDS dataset {name!r} is not prepared under data_dir={where}. "
          f"Prepare it first: python -m scenejax.datasets prepare "
          f"{registry_name} --data_dir=... [--manual_dir=...]"
        ) from e
      raise DatasetError(
        f"TFDS dataset {name!r} split {split!r} under "
        f"data_dir={where} cannot be read: {e}"
      ) from e
    self.builder = builder
    self._prefix = f"{name}/{split}"

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    record = self._source[index]
    return {
      "image": record["image"],
      "label": int(record["label"]),
      "name": self._name(index, record),
    }

  def _name(self, index: int, record: dict) -> str:
    name = record.get("file_name", record.get("image/filename", b""))
    name = name.decode() if isinstance(name, bytes) else str(name)
    return f"{self._prefix}[{index}] {name}".strip()

  def raw(self, index: int) -> dict:
    """Record `index` as TFDS decodes it (images left encoded)."""
    return self._source[index]

  def image_and_name(self, index: int) -> tuple[bytes, str]:
    record = self._source[index]
    return record["image"], self._name(index, record)

  def labels(self) -> np.ndarray:
    """Every record's label (reads each record once)."""
    return np.array(
      [int(self._source[i]["label"]) for i in range(len(self))], np.int64
    )

  @property
  def has_label_maps(self) -> bool:
    return "segmentation" in self.builder.info.features

  def label_map(self, index: int) -> np.ndarray:
    """Record `index`'s 2-D uint8 semantic label map (ade20k_scenes)."""
    from PIL import Image

    if not self.has_label_maps:
      raise DatasetError(f"{self._prefix} has no segmentation maps")
    with Image.open(io.BytesIO(self._source[index]["segmentation"])) as png:
      return np.asarray(png).reshape(png.size[1], png.size[0])

  def label_maps(self) -> Iterator[np.ndarray]:
    """Yields each record's 2-D uint8 semantic label map (ade20k_scenes)."""
    for i in range(len(self)):
      yield self.label_map(i)


class SubsetSource:
  """The records `indices` of `source`, with labels mapped by `remap`
  (old id -> new id; None keeps them)."""

  def __init__(
    self, source, indices: np.ndarray, remap: dict[int, int] | None = None
  ):
    self._source = source
    self._indices = np.asarray(indices, np.int64)
    self._remap = remap

  @classmethod
  def of_classes(cls, source, keep: list[int], labels: np.ndarray):
    """The records whose class is in `keep` (ids), relabelled
    0..len(keep)-1 in the order of `keep`."""
    return cls(
      source,
      np.flatnonzero(np.isin(labels, keep)),
      {old: new for new, old in enumerate(keep)},
    )

  def __len__(self):
    return len(self._indices)

  def __getitem__(self, index):
    record = dict(self._source[int(self._indices[index])])
    if self._remap is not None:
      record["label"] = self._remap[record["label"]]
    return record


def per_class_sample(
  labels: np.ndarray, per_class: int, seed: int
) -> np.ndarray:
  """Sorted indices of `per_class` records of each class, drawn without
  replacement by a generator seeded with `seed` (all of a smaller class)."""
  rng = np.random.default_rng(seed)
  chosen = [
    rng.permutation(np.flatnonzero(labels == c))[:per_class]
    for c in np.unique(labels)
  ]
  return np.sort(np.concatenate(chosen))


def _cached_labels(source: TfdsSource, cache: str) -> np.ndarray:
  """Labels of every record, cached in an .npy beside the data."""
  return common.cached_array(cache, source.labels, (len(source),))


def _places365_part(name, data_dir):
  """places365_1k, places365_7 or places365_14 over places365_small."""
  train, test = (
    TfdsSource("places365_small", split, data_dir, registry_name=name)
    for split in ("train", "validation")
  )
  all_names = tuple(train.builder.info.features["label"].names)
  data_path = os.fspath(train.builder.data_dir)
  train_labels = _cached_labels(
    train, os.path.join(data_path, "labels-train.npy")
  )
  if name == "places365_1k":
    return Dataset(
      name,
      all_names,
      SubsetSource(
        train,
        per_class_sample(
          train_labels, PLACES365_1K_PER_CLASS, PLACES365_1K_SEED
        ),
      ),
      test,
    )
  classes = PLACES365_7 if name == "places365_7" else PLACES365_14
  missing = [c for c in classes if c not in all_names]
  if missing:
    raise DatasetError(f"{name}: classes {missing} not in places365_small")
  keep = [all_names.index(c) for c in classes]
  test_labels = _cached_labels(
    test, os.path.join(data_path, "labels-validation.npy")
  )
  return Dataset(
    name,
    tuple(classes),
    SubsetSource.of_classes(train, keep, train_labels),
    SubsetSource.of_classes(test, keep, test_labels),
  )


def load(
  name: str,
  *,
  data_dir: str | None = None,
  sun397_config: str = "standard-part1-120k",
  synthetic_options: dict | None = None,
  image_folder: str | None = None,
  holdout: float = 0.1,
  holdout_seed: int = 0,
) -> Dataset:
  """The dataset `name` (one of `NAMES`), from TFDS's `data_dir`, or for
  "image_folder" the folder `image_folder` (with `holdout` of train/ held
  out, seeded by `holdout_seed`, where it has no test split).

  `sun397_config` picks the TFDS SUN397 config: "standard-part1-120k"
  (default: partition 1 of the official ten, 50 train / 50 test per class,
  the protocol of [SP]), "standard-part2-120k" ... or "tfds" (TFDS's own
  random 76/10/14 % split, evaluated on its "test").
  """
  if name == "synthetic_scenes":
    from scenejax.datasets import synthetic

    spec, train, test = synthetic.load(**(synthetic_options or {}))
    return Dataset(name, tuple(spec.class_names), train, test, spec=spec)
  if name == "image_folder":
    from scenejax.datasets import image_folder as folder_lib

    if not image_folder:
      raise DatasetError(
        "the image_folder dataset needs its folder: "
        "--config.data.image_folder=DIR (DIR/train/CLASS/IMAGE)"
      )
    return folder_lib.load(image_folder, holdout=holdout, seed=holdout_seed)
  if name not in REGISTRY:
    raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}")
  if name in MULTILABEL_ONLY:
    raise DatasetError(
      f"{name!r} has object labels, not scene labels: read it with "
      "scenejax.datasets.multilabel.load (config.task = 'multilabel')"
    )
  if name in ("places365_1k", "places365_7", "places365_14"):
    return _places365_part(name, data_dir)
  if name == "cityscapes":  # segmentation records already
    from scenejax.datasets import cityscapes

    train, test = (cityscapes.Source(s, data_dir) for s in cityscapes.SPLITS)
    return Dataset(name, cityscapes.CLASS_NAMES, train, test)
  entry = REGISTRY[name]
  if entry.builder_module:
    importlib.import_module(f"scenejax.datasets.{entry.builder_module}")
  tfds_name = f"sun397/{sun397_config}" if name == "sun397" else entry.tfds_name
  train, test = (
    TfdsSource(tfds_name, s, data_dir, registry_name=name) for s in entry.splits
  )
  names = tuple(train.builder.info.features["label"].names)
  return Dataset(name, names, train, test)


class LabelMapSource:
  """Segmentation records of a source with label maps: {"image", "label":
  the (H, W) label map in ADE20K ids (0 = unlabeled), "name"}. The map
  stays an encoded PNG for TFDS sources (decoded with the image by the
  input pipeline); the synthetic splits give arrays."""

  def __init__(self, source):
    self._source = source
    self._tfds = isinstance(source, TfdsSource)
    if self._tfds and not source.has_label_maps:
      raise DatasetError(f"{source._prefix} has no segmentation maps")

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    if self._tfds:
      record = self._source._source[index]
      name = record.get("file_name", b"")
      name = name.decode() if isinstance(name, bytes) else str(name)
      return {
        "image": record["image"],
        "label": record["segmentation"],
        "name": f"{self._source._prefix}[{index}] {name}".strip(),
      }
    return {
      "image": self._source.images[index],
      "label": self._source.label_maps[index],
      "name": f"[{index}]",
    }

  def label_maps(self) -> Iterator[np.ndarray]:
    """Every record's decoded label map, in order."""
    if self._tfds:
      yield from self._source.label_maps()
    else:
      yield from self._source.label_maps


# Datasets with label maps, for config.task = "segmentation".
SEGMENTATION_NAMES = ("synthetic_scenes", "ade20k_scenes", "cityscapes")


def segmentation_from_config(config) -> Dataset:
  """`config.dataset` as a segmentation dataset: label-map records
  (`LabelMapSource`) and the semantic class names (ids 1..L)."""
  if config.dataset not in SEGMENTATION_NAMES:
    raise ConfigError(
      f"config.dataset = {config.dataset!r} has no label maps for "
      f"config.task = 'segmentation'; expected one of {SEGMENTATION_NAMES}"
    )
  return as_segmentation(from_config(config))


def as_segmentation(data: Dataset) -> Dataset:
  """A loaded dataset with label maps, as label-map records and the
  semantic class names (ids 1..L)."""
  if data.name not in SEGMENTATION_NAMES:
    raise DatasetError(
      f"{data.name!r} has no label maps; segmentation reads one of "
      f"{', '.join(SEGMENTATION_NAMES)}"
    )
  if data.name in SEGMENTATION_ONLY:
    return data
  if data.spec is not None:
    names = tuple(data.spec.semantic_class_names)
  else:
    from scenejax.datasets import label_maps

    names = label_maps.ADE20K_CLASS_NAMES
  return Dataset(
    data.name,
    names,
    LabelMapSource(data.train),
    LabelMapSource(data.test),
    spec=data.spec,
  )


# config.data field -> option of `scenejax.datasets.synthetic.load`.
SYNTHETIC_FIELDS = {
  "num_groups": "num_groups",
  "scenes_per_group": "scenes_per_group",
  "num_semantic_classes": "num_semantic_classes",
  "train_per_class": "train_per_class",
  "test_per_class": "test_per_class",
  "image_size": "image_size",
  "render_seed": "seed",
}


def from_config(config) -> Dataset:
  """The dataset named by `config.dataset`, with `config.data`'s options."""
  if config.dataset not in NAMES:
    raise ConfigError(
      f"config.dataset = {config.dataset!r}; expected one of {', '.join(NAMES)}"
    )
  if config.dataset == "synthetic_scenes":
    options = {
      option: config.data[field] for field, option in SYNTHETIC_FIELDS.items()
    }
    return load(config.dataset, synthetic_options=options)
  return load(
    config.dataset,
    data_dir=config.data.data_dir or None,
    sun397_config=config.data.sun397_config,
    image_folder=config.data.image_folder or None,
    holdout=config.data.holdout,
    holdout_seed=config.data.holdout_seed,
  )


def multilabel_from_config(config) -> Dataset:
  """`config.dataset` as a multi-label dataset (`datasets.multilabel`):
  records with (K,) 0/1 presence labels, the K label names."""
  from scenejax.datasets import multilabel

  if config.dataset not in multilabel.NAMES:
    raise ConfigError(
      f"config.dataset = {config.dataset!r} has no object labels for "
      f"config.task = 'multilabel'; expected one of "
      f"{', '.join(multilabel.NAMES)}"
    )
  options = None
  if config.dataset == "synthetic_scenes":
    options = {
      option: config.data[field] for field, option in SYNTHETIC_FIELDS.items()
    }
  return multilabel.load(
    config.dataset,
    data_dir=config.data.data_dir or None,
    synthetic_options=options,
    drop_unlabeled=config.multilabel.drop_unlabeled,
  )
