"""The [SP] authors' published prototypes, as `published:DATASET/METRIC`.

The authors published eight C x C matrices (GitHub
ChuanxinSong/SimilarityPrototype, `SP/*.xlsx`): MIT-67, SUN397,
Places365-7 and Places365-14, each with the cosine (Eq. 2) and the
exp(-euclidean) (Eq. 3-4) metric. `config.prototype.path` and the prototype
command accept `published:mit67/cosine` (also with "{metric}"); the sheet
is downloaded once into the cache, checked against the sha256 recorded
below (a mismatch is an error naming the file and both sums), and
converted to a version-1 NPZ with the dataset's class names, the metric and
its provenance.

The sheets are bare numbers: the class order is not documented. We assume
the datasets' class names sorted (the order of PyTorch's ImageFolder, which
the authors' SAS-Net-based code uses, and of our label ids). The evidence,
from the matrices alone (tests/test_prototype.py checks each point):
  - Places365-7 and Places365-14 share five classes; under this order their
    25 entries are equal (to 4e-16) in both metrics, as Algorithm 1 makes
    them when both come from the same images. The order the paper lists
    Places365-14's classes in (§4.2) gives no such match.
  - MIT-67 and SUN397 share 41 classes (by name); the Spearman correlation
    of their pairwise similarities is 0.81 (cosine) / 0.78 (Euclidean),
    where class orders drawn at random give 0.00 +- 0.09.
  - The paper's own examples hold: MIT-67's nearest class to "auditorium"
    is "concert_hall" (Fig. 1), and in Places365-14 S(bedroom, living_room)
    > S(bedroom, kitchen) and S(kitchen, dining_room) > S(kitchen, bedroom)
    (Fig. 3).

Where from: `SCENEJAX_PUBLISHED_SOURCE` (a URL prefix or a local directory
holding the eight .xlsx files; default the repository's raw files), cached
in `SCENEJAX_CACHE`/prototypes (default ~/.cache/scenejax/prototypes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import importlib.util
import os
import urllib.error
import urllib.request

from scenejax import fileio
from scenejax.errors import PrototypeError
from scenejax.prototype import files
from scenejax.prototype.algorithm import (
  METRICS,
  Prototype,
  check_similarity_matrix,
)

PREFIX = "published:"
REPOSITORY = "https://github.com/ChuanxinSong/SimilarityPrototype"
# The commit that added the sheets (the sums below are of these files).
COMMIT = "c0a46485257106a1184667242384ec123720f4a6"
DEFAULT_SOURCE = (
  "https://raw.githubusercontent.com/ChuanxinSong/SimilarityPrototype/"
  f"{COMMIT}/SP"
)
SOURCE_ENV = "SCENEJAX_PUBLISHED_SOURCE"
CACHE_ENV = "SCENEJAX_CACHE"


@dataclasses.dataclass(frozen=True)
class PublishedFile:
  file_name: str  # in the repository's SP/ directory
  sha256: str  # of the file as published


# (dataset, metric) -> the sheet; datasets by their scenejax names.
FILES = {
  ("mit67", "cosine"): PublishedFile(
    "MIT67_SP_cosine.xlsx",
    "dfcced34a3ba645421086e1983fc1657133a6ed64c65ae173e4e71ed7304c546",
  ),
  ("mit67", "euclidean"): PublishedFile(
    "MIT67_SP_Euclidean.xlsx",
    "7653306198085d7a01463e618b50edee7836604b4ef28662484c2ae523304f2f",
  ),
  ("sun397", "cosine"): PublishedFile(
    "SUN397_SP_cosine.xlsx",
    "724c21faa267a8855d51a147121cc559b50a0f8eb3dcd003db57e74501266ff7",
  ),
  ("sun397", "euclidean"): PublishedFile(
    "SUN397_SP_Euclidean.xlsx",
    "423da781003cd82204d035e209cf461ae172a89162c65312f62c469c7f1c12d3",
  ),
  ("places365_7", "cosine"): PublishedFile(
    "Places_7_SP_cosine.xlsx",
    "b761aedc8841fd5f1a078d561e5df7627804f6c718175e0baddc723b52acde4c",
  ),
  ("places365_7", "euclidean"): PublishedFile(
    "Places_7_SP_Euclidean.xlsx",
    "d832051fd2e434eeb9ac82f91d24469ec6627cc454eadb5d5db49cc122062470",
  ),
  ("places365_14", "cosine"): PublishedFile(
    "Places_14_SP_cosine.xlsx",
    "3758139a4d13918ddc689572b26a671d97f507a24d91a58d927777ea5a810219",
  ),
  ("places365_14", "euclidean"): PublishedFile(
    "Places_14_SP_Euclidean.xlsx",
    "4448774fa1a900ca578928319dedd0628112f1861467310285a695496b20a24f",
  ),
}
DATASETS = tuple(dict.fromkeys(d for d, _ in FILES))


def is_published(path) -> bool:
  return isinstance(path, str) and path.startswith(PREFIX)


def parse(spec: str) -> tuple[str, str]:
  """`published:DATASET/METRIC` -> (dataset, metric), or an error listing
  what exists."""
  dataset, _, metric = spec[len(PREFIX) :].partition("/")
  if (dataset, metric) not in FILES:
    raise PrototypeError(
      f"{spec!r}: no such published prototype; use published:DATASET/METRIC"
      f" with DATASET one of {', '.join(DATASETS)} and METRIC one of "
      f"{', '.join(METRICS)}"
    )
  return dataset, metric


def class_names(dataset: str) -> tuple[str, ...]:
  """The dataset's class names in label order (the assumed row order)."""
  from scenejax import datasets

  if dataset == "mit67":
    from scenejax.datasets import mit67

    return mit67.CLASS_NAMES
  if dataset == "sun397":
    # TFDS's label list (ImageFolder-sorted "/a/abbey" ...), read without
    # importing tensorflow_datasets.
    spec = importlib.util.find_spec("tensorflow_datasets")
    if spec is None:
      raise PrototypeError(
        "published:sun397/...: SUN397's class names come from "
        "tensorflow_datasets, which is not installed (pip install "
        "tensorflow-datasets)"
      )
    path = os.path.join(
      os.path.dirname(spec.origin), "image_classification", "sun397_labels.txt"
    )
    with open(path) as f:
      return tuple(line.strip() for line in f if line.strip())
  return {
    "places365_7": datasets.PLACES365_7,
    "places365_14": datasets.PLACES365_14,
  }[dataset]


def cache_dir() -> str:
  root = os.environ.get(CACHE_ENV) or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
    "scenejax",
  )
  return os.path.join(root, "prototypes")


def _read_source(source: str, file_name: str) -> bytes:
  if "://" in source:
    url = source.rstrip("/") + "/" + file_name
    try:
      with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
      raise PrototypeError(
        f"{url}: cannot download ({e}); with no network, put the eight SP/"
        f"*.xlsx files of {REPOSITORY} in a directory and set "
        f"{SOURCE_ENV}=DIR"
      ) from e
  path = os.path.join(source, file_name)
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError as e:
    raise PrototypeError(
      f"{path}: cannot read ({e.strerror}); {SOURCE_ENV} names a directory "
      f"that should hold {file_name} from {REPOSITORY} (SP/)"
    ) from e


def fetch(spec: str, *, source: str | None = None) -> str:
  """The cached NPZ of `spec`, downloaded and converted when missing.

  Args:
    spec: `published:DATASET/METRIC`.
    source: URL prefix or directory of the sheets (default: $SCENEJAX_
      PUBLISHED_SOURCE, else the authors' repository).

  Returns:
    The NPZ path; every file is written atomically, so concurrent fetches
    (hosts sharing a cache) at worst repeat the work.
  """
  dataset, metric = parse(spec)
  published = FILES[dataset, metric]
  source = source or os.environ.get(SOURCE_ENV) or DEFAULT_SOURCE
  directory = cache_dir()
  npz = os.path.join(directory, f"{dataset}_{metric}.npz")
  provenance = (
    f"{REPOSITORY} SP/{published.file_name} sha256:{published.sha256}; rows "
    "and columns assumed in sorted class-name order"
  )
  if os.path.exists(npz):
    try:
      if files.load_prototype(npz).provenance == provenance:
        return npz
    except PrototypeError:
      pass  # damaged: fetched again below
  sheet = os.path.join(directory, published.file_name)
  data = None
  if os.path.exists(sheet):
    with open(sheet, "rb") as f:
      data = f.read()
    if hashlib.sha256(data).hexdigest() != published.sha256:
      data = None  # a stale or damaged cache entry: fetched again
  if data is None:
    data = _read_source(source, published.file_name)
    got = hashlib.sha256(data).hexdigest()
    if got != published.sha256:
      where = (
        source.rstrip("/") + "/" + published.file_name
        if "://" in source
        else os.path.join(source, published.file_name)
      )
      raise PrototypeError(
        f"{where}: sha256 {got}, expected {published.sha256} (recorded in "
        "scenejax.prototype.published); the file is not the published one "
        "(changed upstream or damaged): check it, or import it yourself "
        "with `python -m scenejax.prototype import_xlsx`"
      )
    try:
      fileio.atomic_write(sheet, lambda f: f.write(data))
    except OSError as e:  # a read-only home, a full disk
      raise PrototypeError(
        f"{sheet}: cannot write the cache ({e.strerror}); set {CACHE_ENV} "
        "to a writable directory"
      ) from None
  matrix = files.read_xlsx_matrix(sheet)
  names = class_names(dataset)
  if matrix.shape != (len(names), len(names)):
    raise PrototypeError(
      f"{sheet}: the sheet is {matrix.shape[0]}x{matrix.shape[1]}, "
      f"{dataset} has {len(names)} classes"
    )
  proto = Prototype(
    similarity=check_similarity_matrix(matrix, sheet),
    metric=metric,
    class_names=names,
    provenance=provenance,
  )
  try:
    files.save_prototype(npz, proto)
  except OSError as e:
    raise PrototypeError(
      f"{npz}: cannot write the cache ({e.strerror}); set {CACHE_ENV} to a "
      "writable directory"
    ) from None
  return npz
