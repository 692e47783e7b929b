"""A folder of your own images as a dataset.

The layout is `tfds.folder_dataset.ImageFolder`'s:

  DIR/train/CLASS/IMAGE      the training images, one folder per class
  DIR/test/CLASS/IMAGE       the evaluation images (or DIR/val/...)

Class names are the folder names of `train/`, sorted; label c is the c-th.
Images are listed, never decoded here: the records carry the file's bytes,
read when the input pipeline asks for the record, so the dataset streams
(a bad or vanished file is named and skipped by the pipeline, as a corrupt
image of a prepared dataset is). Where `DIR` has only `train/`, a seeded
fraction of each class is held out as the test split (`held_out`); it is a
function of the file names and the seed alone, so the same folder always
gives the same split, and the trainer records it in the workdir
(`split_record`) to refuse a resume on a folder that changed.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from scenejax.datasets import common
from scenejax.errors import DatasetError

# Other files (and hidden ones) in a class folder are left out.
IMAGE_SUFFIXES = common.IMAGE_SUFFIXES
EVAL_SPLITS = ("test", "val")
LAYOUT = "DIR/train/CLASS/IMAGE, and DIR/test/CLASS/IMAGE or DIR/val/..."


class FileSource:
  """Random access to image files: `{"image": the file's bytes, "label",
  "name": the path}`. A file that cannot be read gives empty bytes, which
  the input pipeline reports by name and skips (or raises on, with
  `config.data.on_corrupt = "raise"`)."""

  def __init__(self, paths: list[str], labels: np.ndarray):
    self.paths = list(paths)
    self._labels = np.asarray(labels, np.int64)

  def __len__(self):
    return len(self.paths)

  def __getitem__(self, index):
    path = self.paths[index]
    try:
      with open(path, "rb") as f:
        image = f.read()
    except OSError:
      image = b""
    return {"image": image, "label": int(self._labels[index]), "name": path}

  def labels(self) -> np.ndarray:
    return self._labels.copy()


def is_image(name: str) -> bool:
  return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def list_classes(
  folder: str, class_names: tuple[str, ...] | None = None
) -> tuple[tuple[str, ...], list[str], np.ndarray]:
  """(class names, image paths, labels) of `folder/CLASS/IMAGE`, sorted by
  class, then file name. With `class_names` (the training split's), the
  folder's classes must be among them and keep their labels."""
  if not os.path.isdir(folder):
    raise DatasetError(
      f"image folder {folder} does not exist or is not a directory "
      f"(layout: {LAYOUT})"
    )
  with os.scandir(folder) as entries:
    found = sorted(
      e.name for e in entries if e.is_dir() and not e.name.startswith(".")
    )
  if not found:
    raise DatasetError(
      f"{folder} has no class folders (layout: {LAYOUT}); put each class's "
      "images in a folder named after the class"
    )
  names = tuple(found) if class_names is None else class_names
  unknown = [c for c in found if c not in names]
  if unknown:
    raise DatasetError(
      f"{os.path.join(folder, unknown[0])}: class {unknown[0]!r} is not a "
      f"class of the training split (train/ has {len(names)} classes)"
    )
  paths, labels = [], []
  for name in found:
    class_dir = os.path.join(folder, name)
    with os.scandir(class_dir) as entries:
      files = sorted(e.name for e in entries if is_image(e.name))
    if not files and class_names is None:
      raise DatasetError(
        f"{class_dir} holds no images ({', '.join(IMAGE_SUFFIXES)}); add "
        "some or remove the folder"
      )
    label = names.index(name)
    paths.extend(os.path.join(class_dir, f) for f in files)
    labels.extend([label] * len(files))
  return names, paths, np.asarray(labels, np.int64)


def held_out(
  paths: list[str], labels: np.ndarray, fraction: float, seed: int, root: str
) -> np.ndarray:
  """A boolean mask: the test images of a folder with no test split.

  Per class, the files are ordered by a hash of (seed, path relative to
  `root`) and the first round(fraction * n) are held out (at least one of
  a class with two or more images): a stratified draw that depends on the
  names and the seed only, not on the listing order or the machine."""
  mask = np.zeros(len(paths), bool)
  keys = np.array(
    [
      hashlib.blake2b(
        f"{seed}:{os.path.relpath(p, root)}".encode(), digest_size=8
      ).digest()
      for p in paths
    ]
  )
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    n = len(members)
    count = 0 if n < 2 else min(n - 1, max(1, round(fraction * n)))
    order = members[np.argsort(keys[members], kind="stable")]
    mask[order[:count]] = True
  return mask


def load(folder: str, *, holdout: float = 0.1, seed: int = 0):
  """The image folder `folder` as a `scenejax.datasets.Dataset`.

  Its `split_record` says which folder, how many images each split has and,
  for a held-out split, which files were held out."""
  from scenejax.datasets import Dataset

  folder = os.path.abspath(os.path.expanduser(folder))
  if not os.path.isdir(folder):
    raise DatasetError(
      f"image folder {folder} does not exist or is not a directory "
      f"(layout: {LAYOUT})"
    )
  train_dir = os.path.join(folder, "train")
  if not os.path.isdir(train_dir):
    raise DatasetError(
      f"image folder {folder} has no train/ folder (layout: {LAYOUT})"
    )
  names, paths, labels = list_classes(train_dir)
  eval_dirs = [
    os.path.join(folder, s)
    for s in EVAL_SPLITS
    if os.path.isdir(os.path.join(folder, s))
  ]
  record = dict(image_folder=folder, classes=len(names))
  if eval_dirs:
    _, test_paths, test_labels = list_classes(eval_dirs[0], names)
    if not test_paths:
      raise DatasetError(f"{eval_dirs[0]} holds no images")
    train = FileSource(paths, labels)
    test = FileSource(test_paths, test_labels)
    record.update(eval_split=os.path.basename(eval_dirs[0]))
  else:
    if not 0 < holdout < 1:
      raise DatasetError(
        f"image folder {folder} has no test/ or val/ folder and "
        f"config.data.holdout = {holdout}: add a test split, or hold out a "
        "fraction of train/ (e.g. --config.data.holdout=0.1)"
      )
    mask = held_out(paths, labels, holdout, seed, train_dir)
    if not mask.any():
      raise DatasetError(
        f"{train_dir}: holding out {holdout} of each class leaves no test "
        "image (every class has fewer than 2 images)"
      )
    keep = np.flatnonzero(~mask)
    out = np.flatnonzero(mask)
    train = FileSource([paths[i] for i in keep], labels[keep])
    test = FileSource([paths[i] for i in out], labels[out])
    record.update(
      eval_split=f"held out of train/: {holdout}, seed {seed}",
      held_out=sorted(os.path.relpath(paths[i], train_dir) for i in out),
    )
  record.update(train_images=len(train), test_images=len(test))
  return Dataset("image_folder", names, train, test, split_record=record)
