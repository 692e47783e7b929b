"""Synthetic scenes: a small procedurally generated scene dataset.

The embedded default dataset, so that the whole path (prototype from label
maps, GLS + BCL training, evaluation) runs with no download.

Scene classes are defined by object co-occurrence, as real scenes are: each
scene class has a probability of containing each of the L semantic classes
("objects"). Classes come in confusable groups (think bedroom / hotel room):
members of a group share the group's common objects and each has a few
distinctive objects of its own that also turn up, more rarely, in its
siblings. A class is therefore recognisable only from which objects are
present, and siblings are genuinely confusable, which is the situation the
similarity prototype is meant to describe.

Each image is a small RGB picture: a noisy grey background (label 0,
"unlabeled") with every present object drawn as a filled rectangle or
ellipse in that object's colour (label l in 1..L), later objects occluding
earlier ones. Everything is a deterministic function of the seeds.
"""

from __future__ import annotations

import dataclasses
import string

import numpy as np


@dataclasses.dataclass(frozen=True)
class SceneSpec:
  """The class structure: which objects each scene class tends to contain."""

  presence_prob: np.ndarray  # (C, L) P(object l in an image of class c)
  colors: np.ndarray  # (L, 3) uint8 colour of each object
  shapes: np.ndarray  # (L,) 0 = rectangle, 1 = ellipse
  class_names: tuple[str, ...]
  semantic_class_names: tuple[str, ...]
  groups: np.ndarray  # (C,) group index of each class

  @property
  def num_classes(self) -> int:
    return self.presence_prob.shape[0]

  @property
  def num_semantic_classes(self) -> int:
    return self.presence_prob.shape[1]


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # (N, H, W, 3) uint8
  label_maps: np.ndarray  # (N, H, W) uint8, 0 = unlabeled, 1..L objects
  labels: np.ndarray  # (N,) int32 scene class

  def __len__(self) -> int:
    return self.labels.shape[0]

  def __getitem__(self, index):
    """Random access for grain: one example as a dict."""
    return dict(image=self.images[index], label=self.labels[index])


def make_spec(
  num_groups: int = 4,
  scenes_per_group: int = 2,
  num_semantic_classes: int = 32,
  shared_objects: int = 3,
  distinct_objects: int = 2,
  seed: int = 0,
) -> SceneSpec:
  """Draws the class structure.

  Each group gets `shared_objects` objects present with probability 0.85 in
  all its scenes; each scene gets `distinct_objects` objects present with
  probability 0.7 in it and 0.2 in its siblings; every other object appears
  with probability 0.04 (clutter).
  """
  num_classes = num_groups * scenes_per_group
  needed = num_groups * (shared_objects + scenes_per_group * distinct_objects)
  if needed > num_semantic_classes:
    raise ValueError(
      f"synthetic scenes need at least {needed} semantic "
      f"classes for this structure, got {num_semantic_classes}"
    )
  rng = np.random.default_rng(seed)
  objects = iter(rng.permutation(num_semantic_classes))
  prob = np.full((num_classes, num_semantic_classes), 0.04)
  groups = np.repeat(np.arange(num_groups), scenes_per_group)
  for g in range(num_groups):
    members = np.flatnonzero(groups == g)
    for _ in range(shared_objects):
      prob[members, next(objects)] = 0.85
    for c in members:
      for _ in range(distinct_objects):
        l = next(objects)
        prob[members, l] = 0.2
        prob[c, l] = 0.7
  # Distinct colours: evenly spaced hues, shuffled, at two brightness levels.
  hues = rng.permutation(num_semantic_classes) / num_semantic_classes
  value = np.where(np.arange(num_semantic_classes) % 2, 0.95, 0.6)
  colors = (_hsv_to_rgb(hues, 0.85, value) * 255).astype(np.uint8)
  shapes = rng.integers(0, 2, num_semantic_classes)
  letters = string.ascii_lowercase
  names = tuple(
    f"scene_{letters[g % 26]}{k + 1}"
    for g in range(num_groups)
    for k in range(scenes_per_group)
  )
  sem_names = tuple(f"object_{l + 1:02d}" for l in range(num_semantic_classes))
  return SceneSpec(prob, colors, shapes, names, sem_names, groups)


def _hsv_to_rgb(h, s, v):
  i = np.floor(h * 6).astype(int) % 6
  f = h * 6 - np.floor(h * 6)
  p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
  table = np.stack(
    [
      np.stack(x, -1)
      for x in (
        (v, t, p),
        (q, v, p),
        (p, v, t),
        (p, q, v),
        (t, p, v),
        (v, p, q),
      )
    ]
  )
  return table[i, np.arange(len(h))]


def render_split(
  spec: SceneSpec, images_per_class: int, image_size: int = 32, seed: int = 1
) -> Split:
  """Renders `images_per_class` images of every class, class-interleaved."""
  rng = np.random.default_rng(seed)
  num = spec.num_classes * images_per_class
  labels = np.tile(
    np.arange(spec.num_classes, dtype=np.int32), images_per_class
  )
  images = np.empty((num, image_size, image_size, 3), np.uint8)
  label_maps = np.zeros((num, image_size, image_size), np.uint8)
  yy, xx = np.mgrid[:image_size, :image_size]
  for n, c in enumerate(labels):
    canvas = rng.normal(128, 12, (image_size, image_size, 3))
    present = np.flatnonzero(
      rng.random(spec.num_semantic_classes) < spec.presence_prob[c]
    )
    for l in rng.permutation(present):
      h, w = rng.integers(image_size // 5, image_size // 2, 2)
      top, left = (
        rng.integers(0, image_size - h),
        rng.integers(0, image_size - w),
      )
      if spec.shapes[l]:
        cy, cx = top + h / 2, left + w / 2
        mask = ((yy + 0.5 - cy) / (h / 2)) ** 2 + (
          (xx + 0.5 - cx) / (w / 2)
        ) ** 2 <= 1
      else:
        mask = (yy >= top) & (yy < top + h) & (xx >= left) & (xx < left + w)
      canvas[mask] = spec.colors[l] + rng.normal(0, 8, 3)
      label_maps[n][mask] = l + 1
    images[n] = np.clip(canvas, 0, 255).astype(np.uint8)
  return Split(images, label_maps, labels)


def load(
  num_groups: int = 4,
  scenes_per_group: int = 2,
  num_semantic_classes: int = 32,
  train_per_class: int = 150,
  test_per_class: int = 50,
  image_size: int = 32,
  seed: int = 0,
) -> tuple[SceneSpec, Split, Split]:
  """The synthetic dataset: (spec, train split, test split)."""
  spec = make_spec(
    num_groups, scenes_per_group, num_semantic_classes, seed=seed
  )
  train = render_split(spec, train_per_class, image_size, seed=seed * 2 + 1)
  test = render_split(spec, test_per_class, image_size, seed=seed * 2 + 2)
  return spec, train, test
