"""Prototype files: the NPZ format, the authors' xlsx matrices, and the text
lists (class names; "relative/path scene_label" lists) the command reads.

File format version 1: an `.npz` of plain arrays, read with
`np.load(allow_pickle=False)` (never a pickle):

  similarity            (C, C) float32, validated by check_similarity_matrix
  metric                0-d str, "cosine" or "euclidean"
  class_names           (C,) str, scene class order of the rows
  format_version        0-d int64, 1
  representation        optional (C, L) float32, Eq. 1 class vectors
  image_counts          optional (C,) int64, images per class behind them
  semantic_class_names  optional (L,) str, the L semantic classes
  provenance            optional 0-d str, where the matrix came from (e.g.
                        the published file, its URL and sha256)

A bare NPZ holding only `similarity` (the authors' published conversions)
also loads, with no metric or names.
"""

from __future__ import annotations

import dataclasses
import os
import unicodedata
import zipfile
from collections.abc import Sequence

import numpy as np

from scenejax import fileio
from scenejax.errors import PrototypeError
from scenejax.prototype.algorithm import (
  FORMAT_VERSION,
  METRICS,
  Prototype,
  check_similarity_matrix,
)


def save_prototype(path: str | os.PathLike, proto: Prototype) -> None:
  """Writes `proto` as a version-1 NPZ, atomically (temp file + rename)."""
  path = os.fspath(path)
  similarity = check_similarity_matrix(proto.similarity, path)
  num = similarity.shape[0]
  if proto.metric not in METRICS:
    raise PrototypeError(
      f"{path}: metric must be one of {METRICS}, got {proto.metric!r}"
    )
  if proto.class_names is None or len(proto.class_names) != num:
    raise PrototypeError(
      f"{path}: {0 if proto.class_names is None else len(proto.class_names)}"
      f" class names for a {num}x{num} similarity"
    )
  arrays = dict(
    similarity=similarity.astype(np.float32),
    metric=np.array(proto.metric),
    class_names=np.array([str(n) for n in proto.class_names]),
    format_version=np.array(FORMAT_VERSION, np.int64),
  )
  if proto.representation is not None:
    representation = np.asarray(proto.representation, np.float32)
    if representation.ndim != 2 or representation.shape[0] != num:
      raise PrototypeError(
        f"{path}: representation must be ({num}, L), got {representation.shape}"
      )
    arrays["representation"] = representation
  if proto.image_counts is not None:
    arrays["image_counts"] = np.asarray(proto.image_counts, np.int64)
  if proto.semantic_class_names is not None:
    arrays["semantic_class_names"] = np.array(
      [str(n) for n in proto.semantic_class_names]
    )
  if proto.provenance is not None:
    arrays["provenance"] = np.array(str(proto.provenance))
  fileio.atomic_write(path, lambda f: np.savez(f, **arrays))


def load_prototype(
  path: str | os.PathLike,
  num_classes: int | None = None,
  class_names: Sequence[str] | None = None,
  *,
  metric: str | None = None,
) -> Prototype:
  """Loads and validates a prototype NPZ.

  Reads files written by `save_prototype` and bare NPZs holding only a
  `similarity` array (the authors' published matrices), never pickles.

  Args:
    path: the .npz file (`scenejax.prototype.load_prototype` also takes
      `published:DATASET/METRIC`, the authors' matrices).
    num_classes: if given, the dataset's class count C must match.
    class_names: if given, must match the file's class names in order (a bare
      file without names is only checked for its size).
    metric: if given, the metric the file records must be this one (a bare
      file records none).

  Raises:
    PrototypeError: naming the file (and key / class) on any problem.
  """
  path = os.fspath(path)
  if os.path.exists(path) and not zipfile.is_zipfile(path):
    # np.load would otherwise try to read it as a pickle (and refuse).
    raise PrototypeError(
      f"{path}: not a readable NPZ file (not a zip "
      "archive; truncated or another format)"
    )
  try:
    with np.load(path, allow_pickle=False) as npz:
      arrays = {k: npz[k] for k in npz.files}
  except FileNotFoundError:
    raise PrototypeError(f"{path}: no such prototype file") from None
  except ValueError as e:
    if "allow_pickle" in str(e) or "Object arrays" in str(e):
      raise PrototypeError(
        f"{path}: holds a pickled object array; prototype "
        "files must contain plain arrays only"
      ) from e
    raise PrototypeError(f"{path}: not a readable NPZ file ({e})") from e
  except (OSError, EOFError, zipfile.BadZipFile) as e:
    raise PrototypeError(
      f"{path}: not a readable NPZ file (truncated or not an .npz: {e})"
    ) from e
  if "similarity" not in arrays:
    raise PrototypeError(
      f"{path}: missing key 'similarity' (has {sorted(arrays)})"
    )
  similarity = check_similarity_matrix(
    arrays["similarity"], f"{path}: key 'similarity'"
  )
  num = similarity.shape[0]
  version = None
  recorded_metric = names = None
  if "format_version" in arrays:
    version = _scalar(arrays["format_version"], path, "format_version", int)
    if version < 1 or version > FORMAT_VERSION:
      raise PrototypeError(
        f"{path}: format_version {version}; this scenejax "
        f"reads 1..{FORMAT_VERSION}"
      )
    for key in ("metric", "class_names"):
      if key not in arrays:
        raise PrototypeError(f"{path}: missing key {key!r}")
    recorded_metric = _scalar(arrays["metric"], path, "metric", str)
    if recorded_metric not in METRICS:
      raise PrototypeError(
        f"{path}: key 'metric' is {recorded_metric!r}, "
        f"expected one of {METRICS}"
      )
    if arrays["class_names"].ndim != 1:
      raise PrototypeError(
        f"{path}: key 'class_names' must be 1-D, got shape "
        f"{arrays['class_names'].shape}"
      )
    names = tuple(str(n) for n in arrays["class_names"])
    if len(names) != num:
      raise PrototypeError(
        f"{path}: key 'class_names' has {len(names)} names "
        f"for a {num}x{num} similarity"
      )
  if metric is not None and recorded_metric not in (None, metric):
    raise PrototypeError(
      f"{path}: the file records metric {recorded_metric!r} but the config "
      f"asks for {metric!r} (config.prototype.metric); use the "
      f"{metric} prototype or change the metric"
    )
  if num_classes is not None and num != num_classes:
    raise PrototypeError(
      f"{path}: prototype has {num} classes, the dataset has {num_classes}"
    )
  if class_names is not None:
    if len(class_names) != num:
      raise PrototypeError(
        f"{path}: prototype has {num} classes, the dataset "
        f"has {len(class_names)}"
      )
    if names is not None:
      for i, (a, b) in enumerate(zip(names, class_names)):
        if a != b:
          raise PrototypeError(
            f"{path}: class {i} is {a!r} in the prototype but {b!r} in the "
            "dataset (class order must match)"
          )
  rep = arrays.get("representation")
  counts = arrays.get("image_counts")
  sem = arrays.get("semantic_class_names")
  provenance = arrays.get("provenance")
  if provenance is not None:
    provenance = _scalar(provenance, path, "provenance", str)
  return Prototype(
    similarity=similarity.astype(np.float32),
    metric=recorded_metric,
    class_names=names,
    representation=None if rep is None else rep.astype(np.float32),
    image_counts=None if counts is None else counts.astype(np.int64),
    semantic_class_names=None if sem is None else tuple(map(str, sem)),
    format_version=version,
    provenance=provenance,
  )


def with_class_names(proto: Prototype, class_names: Sequence[str]) -> Prototype:
  """`proto` with names for a bare matrix (its own names win if it has
  them)."""
  if proto.class_names is not None:
    return proto
  return dataclasses.replace(proto, class_names=tuple(class_names))


def _scalar(array: np.ndarray, path: str, key: str, kind):
  if array.shape != ():
    raise PrototypeError(
      f"{path}: key {key!r} must be a scalar, got shape {array.shape}"
    )
  try:
    return kind(array.item() if kind is int else str(array))
  except (TypeError, ValueError) as e:
    raise PrototypeError(
      f"{path}: key {key!r} is {array!r}, not a {kind.__name__}"
    ) from e


# --------------------------------------------------------------------------
# Text lists and the published xlsx matrices.


def read_class_names(path: str | os.PathLike) -> list[str]:
  """Scene class names, one per line.

  Accepts a plain list (``name`` per line) and SAS-Net's ``name index``
  lists (e.g. ``/a/abbey 0``), which are put in index order. A UTF-8 byte
  order mark is ignored. Duplicate names, and a list where only some lines
  carry an index, are errors naming the line.
  """
  path = os.fspath(path)
  try:
    with open(path, encoding="utf-8-sig") as f:
      lines = [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]
  except (OSError, UnicodeDecodeError) as e:
    raise PrototypeError(f"{path}: cannot read class names: {e}") from e
  if not lines:
    raise PrototypeError(f"{path}: no class names")
  parts = [(n, line.rsplit(maxsplit=1)) for n, line in lines]
  indexed = [len(p) == 2 and p[1].isdigit() for _, p in parts]
  if all(indexed):
    by_index = {}
    for n, (name, i) in parts:
      if int(i) in by_index:
        raise PrototypeError(f"{path}:{n}: index {i} given twice")
      by_index[int(i)] = name
    if sorted(by_index) != list(range(len(parts))):
      raise PrototypeError(
        f"{path}: class indices must be 0..{len(parts) - 1}, each once"
      )
    names = [by_index[i] for i in range(len(parts))]
  elif any(indexed) and not all(len(p) == 1 for _, p in parts):
    n = lines[indexed.index(False)][0]
    raise PrototypeError(
      f"{path}:{n}: some lines end in an index and some "
      "do not; use 'name' or 'name index' on every line"
    )
  else:
    names = [line for _, line in lines]
  seen = {}
  for (n, _), name in zip(lines, names):
    key = unicodedata.normalize("NFC", name)
    if key in seen:
      raise PrototypeError(
        f"{path}:{n}: class {name!r} is listed twice "
        f"(first on line {seen[key]})"
      )
    seen[key] = n
  return names


def read_list_file(
  path: str | os.PathLike, class_names: Sequence[str] | None = None
) -> tuple[list[str], list[int]]:
  """Reads ``relative/path scene_label`` lines; label is an index or a name."""
  path = os.fspath(path)
  index = {n: i for i, n in enumerate(class_names or ())}
  files, labels = [], []
  try:
    with open(path, encoding="utf-8-sig") as f:
      lines = f.readlines()
  except (OSError, UnicodeDecodeError) as e:
    raise PrototypeError(f"{path}: cannot read list file: {e}") from e
  for lineno, line in enumerate(lines, 1):
    if not line.strip() or line.lstrip().startswith("#"):
      continue
    parts = line.rsplit(maxsplit=1)
    if len(parts) != 2:
      raise PrototypeError(
        f"{path}:{lineno}: expected 'relative/path "
        f"scene_label', got {line.strip()!r}"
      )
    rel, label = parts
    if label.lstrip("-").isdigit():
      labels.append(int(label))
    elif label in index:
      labels.append(index[label])
    else:
      raise PrototypeError(
        f"{path}:{lineno}: scene label {label!r} is neither an index nor a "
        "name in --class_names"
      )
    files.append(rel.strip())
  if not files:
    raise PrototypeError(f"{path}: the list is empty")
  return files, labels


def read_xlsx_matrix(path: str | os.PathLike) -> np.ndarray:
  """A bare numeric C x C grid from the first sheet of an .xlsx file.

  Cells are addressed as the sheet does (an empty row between numbers is
  an error at its own address); a formula without a cached value is an
  error that says so.
  """
  import openpyxl
  from openpyxl.utils import get_column_letter

  path = os.fspath(path)
  try:
    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
  except Exception as e:  # openpyxl raises several unrelated types.
    raise PrototypeError(f"{path}: not a readable .xlsx file ({e})") from e
  try:
    rows = list(workbook.worksheets[0].iter_rows(values_only=True))
  finally:
    workbook.close()
  while rows and all(v is None for v in rows[-1]):
    rows.pop()
  if not rows:
    raise PrototypeError(f"{path}: the first sheet is empty")
  width = max(len(r) for r in rows)
  matrix = np.empty((len(rows), width), np.float64)
  for i, row in enumerate(rows):
    for j in range(width):
      value = row[j] if j < len(row) else None
      if isinstance(value, bool) or not isinstance(value, (int, float)):
        what = (
          "empty (a formula without a saved value reads as empty: "
          "open and save the file in a spreadsheet program)"
          if value is None
          else f"{value!r}"
        )
        raise PrototypeError(
          f"{path}: cell {get_column_letter(j + 1)}{i + 1}"
          f" is {what}, expected a number"
        )
      matrix[i, j] = value
  return matrix
