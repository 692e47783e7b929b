"""The similarity prototype: [SP] Algorithm 1 and Eq. 1-4.

A scene image is summarised by which of the L semantic (object) classes its
label map contains; a scene class by the mean of those presence vectors
(Algorithm 1, Eq. 1); two scene classes by the cosine similarity or
exp(-euclidean distance) of their class vectors (Eq. 2-4). The C x C result
S is used by `scenejax.losses` during training only.

`build_prototype` is the one entry point from label maps to a `Prototype`.

References:
  [SP] C. Song, H. Wu, X. Ma, Y. Li. Semantic-embedded Similarity Prototype
  for Scene Recognition. Pattern Recognition, 2024. arXiv:2308.05896.
"""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import os
from collections.abc import Iterable, Sequence

import numpy as np

from scenejax.datasets import label_maps as label_maps_lib
from scenejax.errors import DatasetError, PrototypeError

FORMAT_VERSION = 1
METRICS = ("cosine", "euclidean")
ADE20K_NUM_CLASSES = label_maps_lib.ADE20K_NUM_CLASSES
# Tolerance for the unit diagonal / symmetry / [0, 1] range of a loaded
# matrix: the published xlsx matrices are written with ~15 significant
# digits, ours are stored as float32.
MATRIX_ATOL = 1e-5


@dataclasses.dataclass(frozen=True)
class Prototype:
  """A similarity prototype and what it was built from (None when absent,
  e.g. in a bare published matrix)."""

  similarity: np.ndarray  # (C, C) float32
  metric: str | None  # "cosine" | "euclidean" | None (bare)
  class_names: tuple[str, ...] | None
  representation: np.ndarray | None = None  # (C, L) float32, Eq. 1
  image_counts: np.ndarray | None = None  # (C,) int64
  semantic_class_names: tuple[str, ...] | None = None
  format_version: int | None = None  # None: a bare `similarity` NPZ
  provenance: str | None = None  # where it came from (published matrices)

  @property
  def num_classes(self) -> int:
    return self.similarity.shape[0]

  def summary(self, top: int = 10) -> str:
    """C, metric, value range, counts and the most similar pairs."""
    s = self.similarity.astype(np.float64)
    num = s.shape[0]
    off = s[~np.eye(num, dtype=bool)]
    names = self.class_names or tuple(str(c) for c in range(num))
    lines = [
      f"classes C        {num}",
      f"metric           {self.metric or 'unknown (bare similarity file)'}",
      f"format_version   {self.format_version}",
    ]
    if self.provenance:
      lines.append(f"provenance       {self.provenance}")
    if off.size:
      lines.append(
        f"off-diagonal     min {off.min():.4f}  mean "
        f"{off.mean():.4f}  max {off.max():.4f}"
      )
    if self.representation is not None:
      lines.append(f"semantic classes L {self.representation.shape[1]}")
    if self.image_counts is not None:
      lines.append(
        f"images           {int(self.image_counts.sum())} "
        f"(per class {int(self.image_counts.min())}.."
        f"{int(self.image_counts.max())})"
      )
    if num > 1:
      lines.append(
        f"most similar pairs (top {min(top, num * (num - 1) // 2)}):"
      )
      for i, j, v in most_similar_pairs(s, top):
        lines.append(f"  {v:.4f}  {names[i]}  ~  {names[j]}")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Algorithm 1 / Eq. 1: class-level semantic representations.


def _as_label_map(item, index: int):
  """(array, name for errors) from an array or a PNG/NPY path."""
  if isinstance(item, (str, os.PathLike)):
    return label_maps_lib.read_label_map(item), os.fspath(item)
  array = np.asarray(item)
  if not np.issubdtype(array.dtype, np.integer):
    raise PrototypeError(
      f"label map #{index}: must hold integer ids, got {array.dtype}"
    )
  return array, f"label map #{index}"


def presence_vectors(
  label_maps,
  num_semantic_classes: int = ADE20K_NUM_CLASSES,
  *,
  label_format: str = "ade20k",
  first_index: int = 0,
) -> np.ndarray:
  """Instance-level semantic representations s ([SP] Algorithm 1, inner loop).

  s(l) = 1 if semantic class l occurs anywhere in the label map, else 0, for
  l = 1..L. Ids are read in `label_format` (see
  `scenejax.datasets.label_maps`): in "ade20k", 0 is unlabeled and ignored
  and id l goes to column l - 1.

  No loop over L and no histogram of every pixel: a value occurs in a map
  iff it occurs at the first pixel or at a pixel whose predecessor (raster
  order) differs - its first occurrence is such a pixel. Segmentation maps
  are piecewise constant, so these change points are few (~2% of pixels in
  benchmarks/prototype_build.py), and the id conversion and `np.bincount`
  run over them only. Exact for any map.

  Args:
    label_maps: sequence of integer arrays or PNG/NPY paths, any shapes.
    num_semantic_classes: L.
    label_format: "ade20k" or "zero_based".
    first_index: index of the first map in the whole stream, for errors.

  Returns:
    bool array (len(label_maps), L).
  """
  out = np.zeros((len(label_maps), num_semantic_classes), bool)
  for i, item in enumerate(label_maps):
    label_map, source = _as_label_map(item, first_index + i)
    flat = label_map.ravel()
    if not flat.size:
      continue
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    values = np.concatenate([flat[:1], flat[change]])
    try:
      ids = label_maps_lib.to_ade20k_ids(
        values, label_format, num_semantic_classes, source=source
      )
    except DatasetError as e:
      raise PrototypeError(str(e)) from None
    out[i] = np.bincount(ids, minlength=num_semantic_classes + 1)[1:] > 0
  return out


def presence_vector(
  label_map,
  num_semantic_classes: int = ADE20K_NUM_CLASSES,
  *,
  label_format: str = "ade20k",
) -> np.ndarray:
  """`presence_vectors` of a single map (array or path): bool (L,)."""
  return presence_vectors(
    [label_map], num_semantic_classes, label_format=label_format
  )[0]


def _presence_task(args):
  chunk, num_semantic_classes, label_format, first_index = args
  return presence_vectors(
    chunk,
    num_semantic_classes,
    label_format=label_format,
    first_index=first_index,
  )


# Maps per task: amortises the per-task cost of worker processes.
_CHUNK = 64


def class_representation(
  label_maps: Iterable,
  scene_labels: Iterable[int],
  num_scene_classes: int,
  num_semantic_classes: int = ADE20K_NUM_CLASSES,
  *,
  label_format: str = "ade20k",
  class_names: Sequence[str] | None = None,
  workers: int = 0,
  progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
  """Class-level semantic representations S_c ([SP] Algorithm 1, Eq. 1).

  S_c = (1/N_c) * sum_n s_c^n, the fraction of class-c training images in
  which each semantic class is present.

  Streams over `label_maps` in chunks of 64 (memory is O(C * L) plus one
  chunk, independent of the number of images); see `presence_vectors` for
  the per-map kernel. Each map may be an integer array or a path to a
  PNG/NPY file; with `workers > 0` chunks are read and reduced in that many
  processes.

  Args:
    label_maps: iterable of label maps (arrays or file paths).
    scene_labels: iterable of scene class ids in [0, C), same length.
    num_scene_classes: C.
    num_semantic_classes: L (150 for ADE20K).
    label_format: the maps' id convention, "ade20k" or "zero_based".
    class_names: optional names of the C scene classes, for error messages.
    workers: number of worker processes (0 = in this process).
    progress: show a progress bar.

  Returns:
    (float64 (C, L) representation, int64 (C,) images per class).

  Raises:
    PrototypeError: an id that is not one of `label_format`, a scene label
      outside [0, C), more or fewer labels than maps, or a scene class with
      no images.
  """
  sums = np.zeros((num_scene_classes, num_semantic_classes), np.int64)
  counts = np.zeros((num_scene_classes,), np.int64)
  labels_iter = iter(scene_labels)

  def tasks():
    it = iter(label_maps)
    first = 0
    while chunk := list(itertools.islice(it, _CHUNK)):
      yield chunk, num_semantic_classes, label_format, first
      first += len(chunk)

  pool = multiprocessing.get_context("spawn").Pool(workers) if workers else None
  bar = None
  if progress:
    from scenejax import progress as progress_lib

    bar = progress_lib.bar(desc="label maps", unit="map")
  try:
    chunks = (
      pool.imap(_presence_task, tasks())
      if pool
      else map(_presence_task, tasks())
    )
    seen = 0
    for presence in chunks:
      labels = np.fromiter(
        itertools.islice(labels_iter, len(presence)), np.int64
      )
      if len(labels) < len(presence):
        raise PrototypeError(
          f"more label maps than scene labels (label map #"
          f"{seen + len(labels)} has no scene label)"
        )
      bad = (labels < 0) | (labels >= num_scene_classes)
      if bad.any():
        k = int(np.argmax(bad))
        raise PrototypeError(
          f"label map #{seen + k}: scene label {labels[k]} outside [0, "
          f"{num_scene_classes})"
        )
      np.add.at(sums, labels, presence)
      counts += np.bincount(labels, minlength=num_scene_classes)
      seen += len(presence)
      if bar is not None:
        bar.update(len(presence))
  finally:
    if pool:
      pool.terminate()
    if bar is not None:
      bar.close()
  if next(labels_iter, None) is not None:
    raise PrototypeError("more scene labels than label maps")
  check_every_class_seen(counts, class_names)
  return sums / counts[:, None], counts


def check_every_class_seen(
  counts: np.ndarray, class_names: Sequence[str] | None = None
) -> None:
  """Eq. 1 divides by N_c: a scene class with no images is an error."""
  empty = np.flatnonzero(np.asarray(counts) == 0)
  if empty.size:
    names = [_class_name(c, class_names) for c in empty[:10]]
    raise PrototypeError(
      f"{empty.size} scene class(es) have no images: {', '.join(names)}"
      + (" ..." if empty.size > 10 else "")
    )


def _class_name(c: int, class_names: Sequence[str] | None) -> str:
  return f"{c} ({class_names[c]})" if class_names is not None else str(c)


# --------------------------------------------------------------------------
# Eq. 2-4: the similarity prototype.


def similarity_prototype(
  representation: np.ndarray,
  metric: str,
  *,
  class_names: Sequence[str] | None = None,
) -> np.ndarray:
  """Similarity prototype S (C, C) from class representations (C, L).

  cosine (Eq. 2):     S_ij = S_i . S_j / (||S_i|| ||S_j||)
  euclidean (Eq. 3-4): S_ij = exp(-sqrt(sum_l (S_il - S_jl)^2))

  Computed in float64. Both forms are symmetric, lie in [0, 1] for the
  non-negative representations of Eq. 1, and have a unit diagonal (set
  exactly, so no rounding leaves 0.9999999 there).

  Raises:
    PrototypeError: unknown metric, or (cosine) a class whose representation
      is all zero, i.e. none of its images has a labelled pixel.
  """
  if metric not in METRICS:
    raise PrototypeError(f"metric must be one of {METRICS}, got {metric!r}")
  rep = np.asarray(representation, np.float64)
  if rep.ndim != 2:
    raise PrototypeError(f"representation must be (C, L), got {rep.shape}")
  if metric == "cosine":
    norms = np.linalg.norm(rep, axis=1)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
      names = [_class_name(c, class_names) for c in zero[:10]]
      raise PrototypeError(
        "cosine similarity is undefined for scene class(es) whose images "
        f"have no labelled pixel: {', '.join(names)}"
      )
    unit = rep / norms[:, None]
    similarity = np.clip(unit @ unit.T, 0.0, 1.0)
  else:
    # Row by row rather than |a|^2 + |b|^2 - 2ab: no cancellation for close
    # classes, and O(C * L) memory.
    similarity = np.stack(
      [np.exp(-np.linalg.norm(rep - row, axis=1)) for row in rep]
    )
  np.fill_diagonal(similarity, 1.0)
  return similarity


def build_prototype(
  label_maps: Iterable,
  scene_labels: Iterable[int],
  class_names: Sequence[str],
  *,
  metric: str,
  num_semantic_classes: int = ADE20K_NUM_CLASSES,
  label_format: str = "ade20k",
  semantic_class_names: Sequence[str] | None = None,
  workers: int = 0,
  progress: bool = False,
) -> Prototype:
  """Label maps and scene labels -> Eq. 1 representations -> S (Eq. 2-4).

  The one path from training label maps to a prototype (the trainer, the
  command line and the dataset route all call it); save the result with
  `scenejax.prototype.save_prototype`. Arguments as in
  `class_representation` and `similarity_prototype`.
  """
  names = tuple(str(n) for n in class_names)
  representation, counts = class_representation(
    label_maps,
    scene_labels,
    len(names),
    num_semantic_classes,
    label_format=label_format,
    class_names=names,
    workers=workers,
    progress=progress,
  )
  return _prototype(representation, counts, names, metric, semantic_class_names)


def prototype_from_counts(
  presence_sums: np.ndarray,
  image_counts: np.ndarray,
  class_names: Sequence[str],
  *,
  metric: str,
  semantic_class_names: Sequence[str] | None = None,
) -> Prototype:
  """The prototype of Algorithm 1's running sums: `presence_sums` (C, L),
  the number of class-c images in which semantic class l is present, and
  `image_counts` (C,) = N_c. Eq. 1: S_c = presence_sums[c] / N_c; then
  Eq. 2-4. For builds that accumulate the sums themselves (streaming from
  a segmenter, merged across hosts)."""
  names = tuple(str(n) for n in class_names)
  counts = np.asarray(image_counts, np.int64)
  check_every_class_seen(counts, names)
  representation = np.asarray(presence_sums, np.float64) / counts[:, None]
  return _prototype(representation, counts, names, metric, semantic_class_names)


def prototype_from_representation(proto: Prototype, metric: str) -> Prototype:
  """`proto` under another metric: Eq. 2 or Eq. 3-4 applied to its stored
  Eq. 1 representations (no new pass over the images)."""
  if proto.representation is None or proto.class_names is None:
    raise PrototypeError(
      "this prototype stores no class representations (a bare published "
      f"matrix?): it cannot be turned into a {metric} prototype"
    )
  return _prototype(
    np.asarray(proto.representation, np.float64),
    proto.image_counts,
    proto.class_names,
    metric,
    proto.semantic_class_names,
  )


def _prototype(representation, counts, names, metric, semantic_class_names):
  similarity = similarity_prototype(representation, metric, class_names=names)
  return Prototype(
    similarity=similarity.astype(np.float32),
    metric=metric,
    class_names=names,
    representation=representation.astype(np.float32),
    image_counts=counts,
    semantic_class_names=(
      None
      if semantic_class_names is None
      else tuple(map(str, semantic_class_names))
    ),
    format_version=FORMAT_VERSION,
  )


def check_similarity_matrix(matrix, source: str) -> np.ndarray:
  """Validates a similarity prototype; returns it as float64.

  A prototype must be square, finite, in [0, 1], symmetric and have a unit
  diagonal: Eq. 2 and Eq. 4 give exactly that, and GLS / BCL rely on it
  (symmetry is what makes Eq. 9's column S_norm[:, target] equal to the row).
  """
  m = np.asarray(matrix)
  if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
    raise PrototypeError(
      f"{source}: similarity must be a non-empty square "
      f"matrix, got shape {m.shape}"
    )
  if not (
    np.issubdtype(m.dtype, np.floating) or np.issubdtype(m.dtype, np.integer)
  ):
    raise PrototypeError(f"{source}: similarity must be numeric, got {m.dtype}")
  m = m.astype(np.float64)
  bad = np.argwhere(~np.isfinite(m))
  if bad.size:
    raise PrototypeError(
      f"{source}: similarity has {len(bad)} non-finite "
      f"entries, first at (row, col) {tuple(bad[0])}"
    )
  bad = np.argwhere((m < -MATRIX_ATOL) | (m > 1 + MATRIX_ATOL))
  if bad.size:
    i, j = bad[0]
    raise PrototypeError(
      f"{source}: similarity must lie in [0, 1]; {len(bad)} entries do not, "
      f"first S[{i}, {j}] = {m[i, j]}"
    )
  diag_err = np.abs(np.diag(m) - 1.0)
  if diag_err.max() > MATRIX_ATOL:
    i = int(diag_err.argmax())
    raise PrototypeError(
      f"{source}: similarity must have a unit diagonal; S[{i}, {i}] = {m[i, i]}"
    )
  asym = np.abs(m - m.T)
  if asym.max() > MATRIX_ATOL:
    i, j = np.unravel_index(asym.argmax(), asym.shape)
    raise PrototypeError(
      f"{source}: similarity must be symmetric; "
      f"S[{i}, {j}] = {m[i, j]} but S[{j}, {i}] = {m[j, i]}"
    )
  return np.clip(m, 0.0, 1.0)


def most_similar_pairs(
  similarity: np.ndarray, k: int = 10
) -> list[tuple[int, int, float]]:
  """The k class pairs (i < j) with the highest similarity, best first."""
  s = np.asarray(similarity)
  i, j = np.triu_indices(s.shape[0], k=1)
  order = np.argsort(-s[i, j], kind="stable")[:k]
  return [(int(i[o]), int(j[o]), float(s[i[o], j[o]])) for o in order]
