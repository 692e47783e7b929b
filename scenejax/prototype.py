"""Semantic similarity prototypes (Song et al., Pattern Recognition 2024).

Paper: ``../shared/seeds/000_…`` ("Semantic-embedded Similarity Prototype for
Scene Recognition"), Section 3.2.

A scene image is summarised by which of the L semantic (object) classes its
segmentation label map contains; a scene class by the mean of those presence
vectors (Algorithm 1, Eq. 1); two scene classes by the cosine similarity or
exp(-euclidean distance) of their class vectors (Eq. 2-4). The C x C result is
the similarity prototype S used by `scenejax.losses` during training only.

This module also defines the prototype file format (NPZ, see
`save_prototype`) and a command line::

  python -m scenejax.prototype build --label-maps DIR --list LIST --out P.npz
  python -m scenejax.prototype import-xlsx --xlsx SP.xlsx --class-names N.txt \
      --metric cosine --out P.npz
  python -m scenejax.prototype show P.npz [--png heatmap.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import multiprocessing
import os
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence

import numpy as np

FORMAT_VERSION = 1
METRICS = ("cosine", "euclidean")
# ADE20K (SceneParsing 150): 0 = unlabeled, 1..150 = semantic classes.
ADE20K_NUM_CLASSES = 150
# Tolerance for the unit diagonal / symmetry / [0, 1] range of a loaded
# matrix: the published xlsx matrices are written with ~15 significant digits,
# ours are stored as float32.
MATRIX_ATOL = 1e-5


class PrototypeError(ValueError):
  """Bad prototype input; the message names the file, key or class."""


# --------------------------------------------------------------------------
# Algorithm 1 / Eq. 1: class-level semantic representations.


def read_label_map(path: str | os.PathLike) -> np.ndarray:
  """Reads a 2-D integer label map from a PNG (or other PIL image) or NPY."""
  path = os.fspath(path)
  try:
    if path.endswith(".npy"):
      label_map = np.load(path, allow_pickle=False)
    else:
      from PIL import Image  # pylint: disable=g-import-not-at-top
      with Image.open(path) as image:
        if image.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
          raise PrototypeError(
              f"{path}: label map must be a single-channel image (mode L, P, "
              f"I or I;16), got mode {image.mode!r}")
        label_map = np.asarray(image)
  except PrototypeError:
    raise
  except (OSError, ValueError) as e:
    raise PrototypeError(f"{path}: cannot read label map: {e}") from e
  if label_map.ndim != 2 or not np.issubdtype(label_map.dtype, np.integer):
    raise PrototypeError(
        f"{path}: label map must be a 2-D integer array, got shape "
        f"{label_map.shape} dtype {label_map.dtype}")
  return label_map


def _as_label_map(item, index: int):
  """(array, name for errors) from an array or a PNG/NPY path."""
  if isinstance(item, (str, os.PathLike)):
    return read_label_map(item), os.fspath(item)
  array = np.asarray(item)
  if not np.issubdtype(array.dtype, np.integer):
    raise PrototypeError(f"label map #{index}: must hold integer ids, got "
                         f"{array.dtype}")
  return array, f"label map #{index}"


def presence_vectors(label_maps, num_semantic_classes: int = ADE20K_NUM_CLASSES,
                     *, first_index: int = 0) -> np.ndarray:
  """Instance-level semantic representations s ([SP] Algorithm 1, inner loop).

  s(l) = 1 if semantic id l occurs anywhere in the label map, else 0, for
  l = 1..L (ADE20K convention: id 0 is "unlabeled" and ignored; id l goes to
  column l - 1).

  No loop over L and no histogram of every pixel: a value occurs in a map
  iff it occurs at the first pixel or at a pixel whose predecessor (raster
  order) differs - its first occurrence is such a pixel. Segmentation maps
  are piecewise constant, so these change points are few (~2% of pixels in
  benchmarks/prototype_build.py) and `np.bincount` runs over them only.
  Exact for any map.

  Args:
    label_maps: sequence of integer arrays or PNG/NPY paths, any shapes.
    num_semantic_classes: L.
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
    values = np.concatenate([flat[:1], flat[change]]).astype(np.int64)
    lo, hi = values.min(), values.max()
    if lo < 0 or hi > num_semantic_classes:
      raise PrototypeError(
          f"{source}: semantic id {lo if lo < 0 else hi} outside 0..L = "
          f"{num_semantic_classes} (ids must be 0 = unlabeled or 1..L)")
    out[i] = np.bincount(values, minlength=num_semantic_classes + 1)[1:] > 0
  return out


def presence_vector(label_map, num_semantic_classes: int = ADE20K_NUM_CLASSES
                    ) -> np.ndarray:
  """`presence_vectors` of a single map (array or path): bool (L,)."""
  return presence_vectors([label_map], num_semantic_classes)[0]


def _presence_task(args):
  chunk, num_semantic_classes, first_index = args
  return presence_vectors(chunk, num_semantic_classes, first_index=first_index)


# Maps per task: amortises the per-task cost of worker processes.
_CHUNK = 64


def class_representation(
    label_maps: Iterable,
    scene_labels: Iterable[int],
    num_scene_classes: int,
    num_semantic_classes: int = ADE20K_NUM_CLASSES,
    *,
    class_names: Sequence[str] | None = None,
    workers: int = 0,
    progress: bool = False,
    return_counts: bool = False,
):
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
    class_names: optional names of the C scene classes, for error messages.
    workers: number of worker processes (0 = in this process).
    progress: show a progress bar.
    return_counts: also return the (C,) number of images per class.

  Returns:
    float64 array (C, L); with `return_counts`, also the int64 counts (C,).

  Raises:
    PrototypeError: a label id outside 0..L, a scene label outside [0, C),
      more or fewer labels than maps, or a scene class with no images.
  """
  sums = np.zeros((num_scene_classes, num_semantic_classes), np.int64)
  counts = np.zeros((num_scene_classes,), np.int64)
  labels_iter = iter(scene_labels)

  def tasks():
    it = iter(label_maps)
    first = 0
    while chunk := list(itertools.islice(it, _CHUNK)):
      yield chunk, num_semantic_classes, first
      first += len(chunk)

  pool = multiprocessing.get_context("spawn").Pool(workers) if workers else None
  bar = None
  if progress:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm(desc="label maps", unit="map")
  try:
    chunks = pool.imap(_presence_task, tasks()) if pool else map(
        _presence_task, tasks())
    seen = 0
    for presence in chunks:
      labels = np.fromiter(itertools.islice(labels_iter, len(presence)),
                           np.int64)
      if len(labels) < len(presence):
        raise PrototypeError(
            f"more label maps than scene labels (label map #"
            f"{seen + len(labels)} has no scene label)")
      bad = (labels < 0) | (labels >= num_scene_classes)
      if bad.any():
        k = int(np.argmax(bad))
        raise PrototypeError(
            f"label map #{seen + k}: scene label {labels[k]} outside [0, "
            f"{num_scene_classes})")
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
  empty = np.flatnonzero(counts == 0)
  if empty.size:
    names = [_class_name(c, class_names) for c in empty[:10]]
    raise PrototypeError(
        f"{empty.size} scene class(es) have no images: {', '.join(names)}"
        + (" ..." if empty.size > 10 else ""))
  representation = sums / counts[:, None]
  return (representation, counts) if return_counts else representation


def _class_name(c: int, class_names: Sequence[str] | None) -> str:
  return f"{c} ({class_names[c]})" if class_names is not None else str(c)


# --------------------------------------------------------------------------
# Eq. 2-4: the similarity prototype.


def similarity_prototype(representation: np.ndarray, metric: str, *,
                         class_names: Sequence[str] | None = None
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
          f"have no labelled pixel: {', '.join(names)}")
    unit = rep / norms[:, None]
    similarity = np.clip(unit @ unit.T, 0.0, 1.0)
  else:
    # Row by row rather than |a|^2 + |b|^2 - 2ab: no cancellation for close
    # classes, and O(C * L) memory.
    similarity = np.stack(
        [np.exp(-np.linalg.norm(rep - row, axis=1)) for row in rep])
  np.fill_diagonal(similarity, 1.0)
  return similarity


def check_similarity_matrix(matrix, source: str) -> np.ndarray:
  """Validates a similarity prototype; returns it as float64.

  A prototype must be square, finite, in [0, 1], symmetric and have a unit
  diagonal: Eq. 2 and Eq. 4 give exactly that, and GLS / BCL rely on it
  (symmetry is what makes Eq. 9's column S_norm[:, target] equal to the row).
  """
  m = np.asarray(matrix)
  if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
    raise PrototypeError(f"{source}: similarity must be a non-empty square "
                         f"matrix, got shape {m.shape}")
  if not (np.issubdtype(m.dtype, np.floating)
          or np.issubdtype(m.dtype, np.integer)):
    raise PrototypeError(f"{source}: similarity must be numeric, got "
                         f"{m.dtype}")
  m = m.astype(np.float64)
  bad = np.argwhere(~np.isfinite(m))
  if bad.size:
    raise PrototypeError(f"{source}: similarity has {len(bad)} non-finite "
                         f"entries, first at (row, col) {tuple(bad[0])}")
  bad = np.argwhere((m < -MATRIX_ATOL) | (m > 1 + MATRIX_ATOL))
  if bad.size:
    i, j = bad[0]
    raise PrototypeError(
        f"{source}: similarity must lie in [0, 1]; {len(bad)} entries do not, "
        f"first S[{i}, {j}] = {m[i, j]}")
  diag_err = np.abs(np.diag(m) - 1.0)
  if diag_err.max() > MATRIX_ATOL:
    i = int(diag_err.argmax())
    raise PrototypeError(f"{source}: similarity must have a unit diagonal; "
                         f"S[{i}, {i}] = {m[i, i]}")
  asym = np.abs(m - m.T)
  if asym.max() > MATRIX_ATOL:
    i, j = np.unravel_index(asym.argmax(), asym.shape)
    raise PrototypeError(f"{source}: similarity must be symmetric; "
                         f"S[{i}, {j}] = {m[i, j]} but S[{j}, {i}] = {m[j, i]}")
  return np.clip(m, 0.0, 1.0)


# --------------------------------------------------------------------------
# File format.


@dataclasses.dataclass(frozen=True)
class Prototype:
  """A loaded prototype file. Optional fields are None when absent."""
  similarity: np.ndarray            # (C, C) float32
  metric: str | None                # "cosine" | "euclidean" | None (bare)
  class_names: tuple[str, ...] | None
  representation: np.ndarray | None = None   # (C, L) float32
  image_counts: np.ndarray | None = None     # (C,) int64
  semantic_class_names: tuple[str, ...] | None = None
  format_version: int | None = None          # None: a bare `similarity` NPZ

  @property
  def num_classes(self) -> int:
    return self.similarity.shape[0]


def atomic_write(path: str | os.PathLike, write_fn, mode: str = "wb") -> None:
  """Calls write_fn(file) on a temp file beside `path`, then renames it.

  A crash or an exception leaves either the old file or none, never a half
  written one.
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory,
                             prefix="." + os.path.basename(path) + ".",
                             suffix=".tmp")
  try:
    with os.fdopen(fd, mode) as f:
      write_fn(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def save_prototype(path, similarity, *, metric: str,
                   class_names: Sequence[str],
                   representation=None, image_counts=None,
                   semantic_class_names: Sequence[str] | None = None) -> None:
  """Writes a prototype NPZ (format version 1), atomically.

  Keys (all plain arrays, readable with ``np.load(allow_pickle=False)``):
    similarity            (C, C) float32, validated by check_similarity_matrix
    metric                0-d str, "cosine" or "euclidean"
    class_names           (C,) str, scene class order of the rows
    format_version        0-d int64, 1
    representation        optional (C, L) float32, Eq. 1 class vectors
    image_counts          optional (C,) int64, images per class behind them
    semantic_class_names  optional (L,) str, the L semantic classes
  """
  similarity = check_similarity_matrix(similarity, os.fspath(path))
  num = similarity.shape[0]
  if metric not in METRICS:
    raise PrototypeError(f"metric must be one of {METRICS}, got {metric!r}")
  if len(class_names) != num:
    raise PrototypeError(f"{path}: {len(class_names)} class names for a "
                         f"{num}x{num} similarity")
  arrays = dict(
      similarity=similarity.astype(np.float32),
      metric=np.array(metric),
      class_names=np.array([str(n) for n in class_names]),
      format_version=np.array(FORMAT_VERSION, np.int64),
  )
  if representation is not None:
    representation = np.asarray(representation, np.float32)
    if representation.ndim != 2 or representation.shape[0] != num:
      raise PrototypeError(f"{path}: representation must be ({num}, L), got "
                           f"{representation.shape}")
    arrays["representation"] = representation
  if image_counts is not None:
    arrays["image_counts"] = np.asarray(image_counts, np.int64)
  if semantic_class_names is not None:
    arrays["semantic_class_names"] = np.array(
        [str(n) for n in semantic_class_names])
  atomic_write(path, lambda f: np.savez(f, **arrays))


def load_prototype(path, num_classes: int | None = None,
                   class_names: Sequence[str] | None = None) -> Prototype:
  """Loads and validates a prototype NPZ.

  Reads files written by `save_prototype` and bare NPZs holding only a
  `similarity` array (the authors' published matrices), never pickles.

  Args:
    path: the .npz file.
    num_classes: if given, the dataset's class count C must match.
    class_names: if given, must match the file's class names in order (a bare
      file without names is only checked for its size).

  Raises:
    PrototypeError naming the file (and key / class) on any problem.
  """
  path = os.fspath(path)
  if os.path.exists(path) and not zipfile.is_zipfile(path):
    # np.load would otherwise try to read it as a pickle (and refuse).
    raise PrototypeError(f"{path}: not a readable NPZ file (not a zip "
                         "archive; truncated or another format)")
  try:
    with np.load(path, allow_pickle=False) as npz:
      arrays = {k: npz[k] for k in npz.files}
  except FileNotFoundError:
    raise PrototypeError(f"{path}: no such prototype file") from None
  except ValueError as e:
    if "allow_pickle" in str(e) or "Object arrays" in str(e):
      raise PrototypeError(f"{path}: holds a pickled object array; prototype "
                           "files must contain plain arrays only") from e
    raise PrototypeError(f"{path}: not a readable NPZ file ({e})") from e
  except (OSError, EOFError, zipfile.BadZipFile) as e:
    raise PrototypeError(
        f"{path}: not a readable NPZ file (truncated or not an .npz: {e})"
    ) from e
  if "similarity" not in arrays:
    raise PrototypeError(f"{path}: missing key 'similarity' (has "
                         f"{sorted(arrays)})")
  similarity = check_similarity_matrix(arrays["similarity"],
                                       f"{path}: key 'similarity'")
  num = similarity.shape[0]
  version = None
  metric = names = None
  if "format_version" in arrays:
    version = int(arrays["format_version"])
    if version > FORMAT_VERSION:
      raise PrototypeError(f"{path}: format_version {version} is newer than "
                           f"this scenejax reads ({FORMAT_VERSION})")
    for key in ("metric", "class_names"):
      if key not in arrays:
        raise PrototypeError(f"{path}: missing key {key!r}")
    metric = str(arrays["metric"])
    if metric not in METRICS:
      raise PrototypeError(f"{path}: key 'metric' is {metric!r}, expected one "
                           f"of {METRICS}")
    names = tuple(str(n) for n in arrays["class_names"])
    if len(names) != num:
      raise PrototypeError(f"{path}: key 'class_names' has {len(names)} names "
                           f"for a {num}x{num} similarity")
  if num_classes is not None and num != num_classes:
    raise PrototypeError(f"{path}: prototype has {num} classes, the dataset "
                         f"has {num_classes}")
  if class_names is not None:
    if len(class_names) != num:
      raise PrototypeError(f"{path}: prototype has {num} classes, the dataset "
                           f"has {len(class_names)}")
    if names is not None:
      for i, (a, b) in enumerate(zip(names, class_names)):
        if a != b:
          raise PrototypeError(
              f"{path}: class {i} is {a!r} in the prototype but {b!r} in the "
              "dataset (class order must match)")
  rep = arrays.get("representation")
  counts = arrays.get("image_counts")
  sem = arrays.get("semantic_class_names")
  return Prototype(
      similarity=similarity.astype(np.float32),
      metric=metric,
      class_names=names,
      representation=None if rep is None else rep.astype(np.float32),
      image_counts=None if counts is None else counts.astype(np.int64),
      semantic_class_names=None if sem is None else tuple(map(str, sem)),
      format_version=version)


# --------------------------------------------------------------------------
# Reading the published matrices and class lists.


def read_class_names(path) -> list[str]:
  """Reads scene class names, one per line.

  Accepts a plain list (``name`` per line) and SAS-Net's ``name index`` lists
  (e.g. ``/a/abbey 0``), which are put in index order.
  """
  path = os.fspath(path)
  try:
    with open(path, encoding="utf-8") as f:
      lines = [line.strip() for line in f if line.strip()]
  except OSError as e:
    raise PrototypeError(f"{path}: cannot read class names: {e}") from e
  parts = [line.rsplit(maxsplit=1) for line in lines]
  if parts and all(len(p) == 2 and p[1].isdigit() for p in parts):
    indexed = {int(i): name for name, i in parts}
    if sorted(indexed) != list(range(len(parts))):
      raise PrototypeError(f"{path}: class indices must be 0..{len(parts)-1} "
                           "each once")
    return [indexed[i] for i in range(len(parts))]
  return lines


def read_xlsx_matrix(path) -> np.ndarray:
  """Reads a bare numeric C x C grid from the first sheet of an .xlsx file."""
  import openpyxl  # pylint: disable=g-import-not-at-top
  from openpyxl.utils import get_column_letter  # pylint: disable=g-import-not-at-top
  path = os.fspath(path)
  try:
    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
  except Exception as e:  # openpyxl raises several unrelated types.
    raise PrototypeError(f"{path}: not a readable .xlsx file ({e})") from e
  try:
    rows = [row for row in workbook.worksheets[0].iter_rows(values_only=True)
            if any(v is not None for v in row)]
  finally:
    workbook.close()
  if not rows:
    raise PrototypeError(f"{path}: the first sheet is empty")
  width = max(len(r) for r in rows)
  matrix = np.empty((len(rows), width), np.float64)
  for i, row in enumerate(rows):
    for j in range(width):
      value = row[j] if j < len(row) else None
      if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PrototypeError(f"{path}: cell {get_column_letter(j + 1)}{i + 1}"
                             f" is {value!r}, expected a number")
      matrix[i, j] = value
  return matrix


# --------------------------------------------------------------------------
# Summaries.


def most_similar_pairs(similarity: np.ndarray, k: int = 10):
  """The k class pairs (i < j) with the highest similarity, best first."""
  s = np.asarray(similarity)
  i, j = np.triu_indices(s.shape[0], k=1)
  order = np.argsort(-s[i, j], kind="stable")[:k]
  return [(int(i[o]), int(j[o]), float(s[i[o], j[o]])) for o in order]


def summary(proto: Prototype, top: int = 10) -> str:
  s = proto.similarity.astype(np.float64)
  num = s.shape[0]
  off = s[~np.eye(num, dtype=bool)]
  names = proto.class_names or tuple(str(c) for c in range(num))
  lines = [
      f"classes C        {num}",
      f"metric           {proto.metric or 'unknown (bare similarity file)'}",
      f"format_version   {proto.format_version}",
  ]
  if off.size:
    lines.append(f"off-diagonal     min {off.min():.4f}  mean {off.mean():.4f}"
                 f"  max {off.max():.4f}")
  if proto.representation is not None:
    lines.append(f"semantic classes L {proto.representation.shape[1]}")
  if proto.image_counts is not None:
    lines.append(f"images           {int(proto.image_counts.sum())} "
                 f"(per class {int(proto.image_counts.min())}.."
                 f"{int(proto.image_counts.max())})")
  if num > 1:
    lines.append(f"most similar pairs (top {min(top, num*(num-1)//2)}):")
    for i, j, v in most_similar_pairs(s, top):
      lines.append(f"  {v:.4f}  {names[i]}  ~  {names[j]}")
  return "\n".join(lines)


def write_heatmap(proto: Prototype, path, max_labels: int = 70) -> None:
  """Writes a Fig. 3 style heatmap of the prototype to a PNG, atomically."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  s = proto.similarity
  num = s.shape[0]
  size = min(4 + 0.18 * num, 24)
  fig, ax = plt.subplots(figsize=(size + 1.5, size))
  image = ax.imshow(s, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
               label=f"similarity ({proto.metric or 'unknown metric'})")
  if proto.class_names and num <= max_labels:
    ax.set_xticks(range(num), proto.class_names, rotation=90,
                  fontsize=max(4, 10 - num // 10))
    ax.set_yticks(range(num), proto.class_names,
                  fontsize=max(4, 10 - num // 10))
  else:
    ax.set_xlabel("scene class index")
    ax.set_ylabel("scene class index")
  ax.set_title(f"Similarity prototype, C = {num}")
  fig.tight_layout()
  atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
  plt.close(fig)


# --------------------------------------------------------------------------
# Command line.


def read_list_file(path, class_names: Sequence[str] | None = None):
  """Reads ``relative/path scene_label`` lines; label is an index or a name."""
  path = os.fspath(path)
  index = {n: i for i, n in enumerate(class_names or ())}
  files, labels = [], []
  try:
    with open(path, encoding="utf-8") as f:
      lines = f.readlines()
  except OSError as e:
    raise PrototypeError(f"{path}: cannot read list file: {e}") from e
  for lineno, line in enumerate(lines, 1):
    if not line.strip() or line.lstrip().startswith("#"):
      continue
    parts = line.rsplit(maxsplit=1)
    if len(parts) != 2:
      raise PrototypeError(f"{path}:{lineno}: expected 'relative/path "
                           f"scene_label', got {line.strip()!r}")
    rel, label = parts
    if label.lstrip("-").isdigit():
      labels.append(int(label))
    elif label in index:
      labels.append(index[label])
    else:
      raise PrototypeError(
          f"{path}:{lineno}: scene label {label!r} is neither an index nor a "
          "name in --class-names")
    files.append(rel.strip())
  if not files:
    raise PrototypeError(f"{path}: the list is empty")
  return files, labels


def _build_from_dataset(args) -> None:
  """[SP] Algorithm 1 over a prepared dataset's training label maps."""
  from scenejax import datasets  # pylint: disable=g-import-not-at-top
  data = datasets.load(args.dataset, data_dir=args.data_dir)
  if not getattr(data.train, "has_label_maps", False):
    raise PrototypeError(
        f"dataset {args.dataset!r} has no label maps; segment its images "
        "and use --label-maps/--list instead")
  names = list(data.class_names)
  representation, counts = class_representation(
      data.train.label_maps(), data.train.labels(), len(names),
      args.num_semantic_classes, class_names=names, progress=True,
      return_counts=True)
  # A scene class with no training map (possible in ADE20K's long tail)
  # is an error from class_representation that names it.
  similarity = similarity_prototype(representation, args.metric,
                                    class_names=names)
  semantic_names = (read_class_names(args.semantic_class_names)
                    if args.semantic_class_names else None)
  save_prototype(args.out, similarity, metric=args.metric, class_names=names,
                 representation=representation, image_counts=counts,
                 semantic_class_names=semantic_names)
  print(f"wrote {args.out}: {len(names)} classes from {int(counts.sum())} "
        f"label maps of {args.dataset}")


def _cmd_build(args) -> None:
  if args.dataset:
    return _build_from_dataset(args)
  if not (args.label_maps and args.list):
    raise PrototypeError("build needs --dataset, or --label-maps and --list")
  class_names = read_class_names(args.class_names) if args.class_names else None
  files, labels = read_list_file(args.list, class_names)
  num = len(class_names) if class_names else max(labels) + 1
  paths = []
  for rel in files:
    p = os.path.join(args.label_maps, rel)
    if not os.path.exists(p):
      raise PrototypeError(f"label map {p} (listed in {args.list}) does not "
                           "exist")
    paths.append(p)
  names = class_names or [str(c) for c in range(num)]
  semantic_names = (read_class_names(args.semantic_class_names)
                    if args.semantic_class_names else None)
  representation, counts = class_representation(
      paths, labels, num, args.num_semantic_classes, class_names=names,
      workers=args.workers, progress=True, return_counts=True)
  similarity = similarity_prototype(representation, args.metric,
                                    class_names=names)
  save_prototype(args.out, similarity, metric=args.metric, class_names=names,
                 representation=representation, image_counts=counts,
                 semantic_class_names=semantic_names)
  print(f"wrote {args.out}: {num} classes from {len(paths)} label maps")


def _cmd_import_xlsx(args) -> None:
  matrix = read_xlsx_matrix(args.xlsx)
  names = read_class_names(args.class_names)
  if matrix.shape[0] != matrix.shape[1]:
    raise PrototypeError(f"{args.xlsx}: the sheet is {matrix.shape[0]}x"
                         f"{matrix.shape[1]}, not square")
  if len(names) != matrix.shape[0]:
    raise PrototypeError(f"{args.class_names} has {len(names)} class names but "
                         f"{args.xlsx} is {matrix.shape[0]}x{matrix.shape[1]}")
  check_similarity_matrix(matrix, args.xlsx)
  save_prototype(args.out, matrix, metric=args.metric, class_names=names)
  print(f"wrote {args.out}: {len(names)} classes ({args.metric})")


def _cmd_show(args) -> None:
  proto = load_prototype(args.prototype)
  print(summary(proto, args.top))
  if args.png:
    write_heatmap(proto, args.png)
    print(f"wrote {args.png}")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m scenejax.prototype",
                                   description=__doc__.split("\n\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  b = sub.add_parser("build", help="build a prototype from label maps")
  b.add_argument("--dataset", help="a prepared dataset with label maps "
                 "(ade20k_scenes), instead of --label-maps/--list")
  b.add_argument("--data_dir", help="TFDS data_dir of --dataset")
  b.add_argument("--label-maps",
                 help="directory holding the PNG/NPY label maps")
  b.add_argument("--list", help="file of 'relative/path scene_label' lines")
  b.add_argument("--class-names", help="scene class names, one per line")
  b.add_argument("--semantic-class-names",
                 help="names of the L semantic classes (stored in the file)")
  b.add_argument("--num-semantic-classes", type=int,
                 default=ADE20K_NUM_CLASSES, help="L (default 150, ADE20K)")
  b.add_argument("--metric", choices=METRICS, default="cosine")
  b.add_argument("--workers", type=int, default=0)
  b.add_argument("--out", required=True)
  b.set_defaults(fn=_cmd_build)
  x = sub.add_parser("import-xlsx", help="import a published xlsx matrix")
  x.add_argument("--xlsx", required=True)
  x.add_argument("--class-names", required=True,
                 help="class names in the sheet's row order")
  x.add_argument("--metric", choices=METRICS, required=True)
  x.add_argument("--out", required=True)
  x.set_defaults(fn=_cmd_import_xlsx)
  s = sub.add_parser("show", help="summarise a prototype file")
  s.add_argument("prototype")
  s.add_argument("--top", type=int, default=10)
  s.add_argument("--png", help="also write a heatmap to this PNG")
  s.set_defaults(fn=_cmd_show)
  args = parser.parse_args(argv)
  try:
    args.fn(args)
  except PrototypeError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
