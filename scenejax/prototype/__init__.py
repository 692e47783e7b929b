"""Semantic similarity prototypes ([SP], Song et al., Pattern Recognition
2024, arXiv:2308.05896).

  algorithm.py   Algorithm 1 and Eq. 1-4; `build_prototype`, the one path
                 from label maps to a `Prototype`
  files.py       the NPZ format, the authors' xlsx matrices, text lists
  published.py   the authors' eight matrices as `published:DATASET/METRIC`
  __main__.py    python -m scenejax.prototype build | fetch | import_xlsx |
                 show | class_weights
"""

import os

from scenejax.errors import PrototypeError
from scenejax.prototype import files, published
from scenejax.prototype.algorithm import (
  ADE20K_NUM_CLASSES,
  FORMAT_VERSION,
  METRICS,
  Prototype,
  build_prototype,
  check_similarity_matrix,
  class_representation,
  most_similar_pairs,
  presence_vector,
  presence_vectors,
  prototype_from_counts,
  prototype_from_representation,
  similarity_prototype,
)
from scenejax.prototype.files import (
  read_class_names,
  read_list_file,
  read_xlsx_matrix,
  save_prototype,
  with_class_names,
)


def load_prototype(path, num_classes=None, class_names=None, *, metric=None):
  """`files.load_prototype`, where `path` may also name one of the authors'
  matrices, `published:DATASET/METRIC` (fetched once, then cached)."""
  path = os.fspath(path)
  if published.is_published(path):
    path = published.fetch(path)
  return files.load_prototype(path, num_classes, class_names, metric=metric)


__all__ = [
  "ADE20K_NUM_CLASSES",
  "FORMAT_VERSION",
  "METRICS",
  "Prototype",
  "PrototypeError",
  "build_prototype",
  "check_similarity_matrix",
  "class_representation",
  "load_prototype",
  "most_similar_pairs",
  "presence_vector",
  "presence_vectors",
  "prototype_from_counts",
  "prototype_from_representation",
  "read_class_names",
  "read_list_file",
  "read_xlsx_matrix",
  "save_prototype",
  "similarity_prototype",
  "with_class_names",
]
