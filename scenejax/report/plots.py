"""What every figure of the report shares: pyplot on the Agg backend, class
names as shown, the clustering order of a prototype, the heatmap, the label
colours, and saving a figure as a PNG."""

from __future__ import annotations

import os

import numpy as np

from scenejax import fileio

# Up to this many classes a heatmap gets one tick label per class.
MAX_LABELLED_CLASSES = 70


def _pyplot():
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def display_name(name: str) -> str:
  """SUN397/SAS-Net style '/a/abbey' -> 'abbey'; other names unchanged."""
  parts = name.strip("/").split("/")
  if len(parts) > 1 and len(parts[0]) == 1:
    parts = parts[1:]
  return "/".join(parts)


def _names(class_names, num: int) -> list[str]:
  if class_names is None:
    return [str(c) for c in range(num)]
  return [display_name(n) for n in class_names]


def cluster_order(similarity: np.ndarray) -> np.ndarray:
  """Class order of the leaves of an average-linkage clustering of the
  distance 1 - S / max(S), so that similar scenes sit next to each other."""
  from scipy.cluster import hierarchy
  from scipy.spatial import distance

  s = np.asarray(similarity, np.float64)
  num = s.shape[0]
  if num < 3:
    return np.arange(num)
  s = (s + s.T) / 2
  top = s.max()
  d = 1.0 - s / top if top > 0 else np.ones_like(s)
  np.fill_diagonal(d, 0.0)
  linkage = hierarchy.linkage(
    distance.squareform(np.clip(d, 0, None), checks=False), method="average"
  )
  return hierarchy.leaves_list(
    hierarchy.optimal_leaf_ordering(
      linkage, distance.squareform(np.clip(d, 0, None), checks=False)
    )
  )


def _save(fig, path) -> str:
  fileio.atomic_write(
    path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
  )
  _pyplot().close(fig)
  return os.fspath(path)


def _heatmap(ax, fig, matrix, names, *, title, cbar_label, cmap, vmax=None):
  num = matrix.shape[0]
  image = ax.imshow(
    matrix, cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest"
  )
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=cbar_label)
  if names is not None and num <= MAX_LABELLED_CLASSES:
    size = max(5, 10 - num // 10)
    ax.set_xticks(range(num), names, rotation=90, fontsize=size)
    ax.set_yticks(range(num), names, fontsize=size)
  elif names is not None:  # too many to label each: every k-th row
    every = -(-num // 50)
    ax.set_yticks(range(0, num, every), names[::every], fontsize=6)
    ax.set_xticks([])
  else:
    ax.set_xticks([])
    ax.set_yticks([])
  ax.set_title(title)


def label_palette(num_ids: int = 256) -> np.ndarray:
  """(num_ids, 3) uint8 colours, id 0 (unlabeled) black, the others fixed
  pseudo-random colours (the same id, the same colour in every figure)."""
  rng = np.random.default_rng(2018)  # fixed: stable colours across runs
  palette = rng.integers(40, 256, (num_ids, 3)).astype(np.uint8)
  palette[0] = 0
  return palette
