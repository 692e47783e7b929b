"""Figures of a prototype: its heatmap and labelled close-up, the GLS soft
labels across epochs ([SP] Fig. 3, 4), its agreement with another prototype
of the same classes, and label maps blended over example images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scenejax import prototype as prototype_lib
from scenejax.errors import UserError
from scenejax.report.plots import (
  MAX_LABELLED_CLASSES,
  _heatmap,
  _names,
  _pyplot,
  _save,
  cluster_order,
  label_palette,
)


def plot_prototype(
  similarity, class_names, path, *, metric=None, order=None
) -> str:
  """Heatmap of S with rows/columns in `order` (default: clustering)."""
  plt = _pyplot()
  s = np.asarray(similarity)
  num = s.shape[0]
  order = cluster_order(s) if order is None else order
  names = [_names(class_names, num)[i] for i in order]
  size = min(4 + 0.16 * num, 16)
  fig, ax = plt.subplots(figsize=(size + 1.5, size))
  _heatmap(
    ax,
    fig,
    s[np.ix_(order, order)],
    names,
    title=f"Similarity prototype S (C = {num}), clustered",
    cbar_label=f"similarity ({metric or 'unknown metric'})",
    cmap="Blues",
    vmax=1.0,
  )
  if num > MAX_LABELLED_CLASSES:
    ax.set_xlabel(
      f"{num} classes in clustering order (every "
      f"{-(-num // 50)}th labelled; see the close-up)"
    )
  return _save(fig, path)


def zoom_classes(
  similarity, num_pairs: int = 25, limit: int = 40
) -> np.ndarray:
  """Classes of the most similar pairs (at most `limit`), for a labelled
  close-up of a prototype too large to label whole."""
  chosen = []
  for i, j, _ in prototype_lib.most_similar_pairs(similarity, num_pairs * 4):
    for c in (i, j):
      if c not in chosen and len(chosen) < limit:
        chosen.append(c)
  return np.asarray(chosen, int)


def plot_prototype_zoom(similarity, class_names, path, *, metric=None) -> str:
  """Labelled heatmap of the classes in the most similar pairs."""
  plt = _pyplot()
  s = np.asarray(similarity)
  classes = zoom_classes(s)
  classes = classes[cluster_order(s[np.ix_(classes, classes)])]
  names = [_names(class_names, s.shape[0])[c] for c in classes]
  fig, ax = plt.subplots(figsize=(11, 9.5))
  _heatmap(
    ax,
    fig,
    s[np.ix_(classes, classes)],
    names,
    title=f"Close-up: the {len(classes)} classes of the most similar pairs",
    cbar_label=f"similarity ({metric or 'unknown'})",
    cmap="Blues",
    vmax=1.0,
  )
  return _save(fig, path)


def default_gls_classes(similarity, k: int = 3) -> list[int]:
  """The first class of each of the k most similar pairs (distinct)."""
  chosen = []
  for i, _, _ in prototype_lib.most_similar_pairs(similarity, 10 * k):
    if i not in chosen:
      chosen.append(i)
    if len(chosen) == k:
      break
  return chosen or [0]


def gls_evolution(
  similarity,
  classes: Sequence[int],
  num_soft_epochs: int,
  final_confidence: float,
  neighbours: int = 4,
) -> tuple[np.ndarray, dict[int, tuple[list[int], np.ndarray]]]:
  """(epochs, {class: (label indices, (epochs, k+2) values)}) of the GLS
  soft label ([SP] Algorithm 2) of each class: its own entry, its
  `neighbours` most similar classes, and the rest summed."""
  from scenejax import losses

  s = np.asarray(similarity, np.float64)
  epochs = np.arange(num_soft_epochs + 2)  # the last one is hard
  matrices = np.stack(
    [
      np.asarray(
        losses.gls_label_matrix(s, e, num_soft_epochs, final_confidence)
      )
      for e in epochs
    ]
  )
  curves = {}
  for c in classes:
    others = np.argsort(
      -np.where(np.arange(len(s)) == c, -np.inf, s[c]), kind="stable"
    )[:neighbours]
    shown = [c] + [int(o) for o in others]
    rows = matrices[:, c, :]
    values = np.concatenate(
      [rows[:, shown], 1.0 - rows[:, shown].sum(1, keepdims=True)], 1
    )
    curves[c] = (shown, values)
  return epochs, curves


def plot_gls_evolution(
  similarity,
  class_names,
  path,
  *,
  classes=None,
  num_soft_epochs: int = 20,
  final_confidence: float = 0.99,
) -> str:
  """[SP] Fig. 4: how each chosen class's soft label moves to one-hot."""
  plt = _pyplot()
  s = np.asarray(similarity)
  names = _names(class_names, s.shape[0])
  classes = default_gls_classes(s) if classes is None else list(classes)
  epochs, curves = gls_evolution(s, classes, num_soft_epochs, final_confidence)
  fig, axes = plt.subplots(
    1, len(classes), figsize=(5.2 * len(classes), 4.2), squeeze=False
  )
  for ax, c in zip(axes[0], classes):
    shown, values = curves[c]
    ax.plot(
      epochs + 1,
      values[:, 0],
      "o-",
      color="black",
      lw=2,
      label=f"{names[c]} (target)",
    )
    for k, other in enumerate(shown[1:], start=1):
      ax.plot(epochs + 1, values[:, k], ".-", label=names[other])
    ax.plot(
      epochs + 1,
      values[:, -1],
      ":",
      color="grey",
      label=f"other {len(s) - len(shown)} classes (sum)",
    )
    ax.axvline(num_soft_epochs + 1.5, color="grey", lw=0.8)
    if values[0, 1:-1].max() < 0.05:  # many classes: neighbours ~1/C
      ax.set_yscale("log")
      ax.set_ylim(1e-4, 1.5)
    else:
      ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("epoch (1-based); hard labels right of the line")
    ax.set_ylabel("soft-label probability")
    ax.set_title(f"GLS soft label of '{names[c]}'")
    ax.legend(fontsize=7, loc="best")
  fig.suptitle(
    f"Gradient Label Softening: STEP = {num_soft_epochs} epochs, "
    f"final confidence {final_confidence}"
  )
  return _save(fig, path)


def prototype_agreement(a, b) -> dict:
  """How far two prototypes of the same classes agree (e.g. one built from
  a segmenter's maps, one from ground-truth maps): Pearson r and Spearman
  rho of their off-diagonal entries S[i, j], i != j (the diagonal is 1 in
  both by Eq. 2/4 and would inflate r), and the largest |difference|."""
  from scipy import stats

  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1]:
    raise UserError(
      f"prototypes of shapes {a.shape} and {b.shape}: need two C x C"
    )
  pairs = ~np.eye(a.shape[0], dtype=bool)
  x, y = a[pairs], b[pairs]
  ok = len(x) > 2 and np.ptp(x) > 0 and np.ptp(y) > 0
  return dict(
    pairs=int(len(x)),
    pearson=float(stats.pearsonr(x, y).statistic) if ok else float("nan"),
    spearman=float(stats.spearmanr(x, y).statistic) if ok else float("nan"),
    max_abs_difference=float(np.abs(x - y).max()) if len(x) else 0.0,
  )


def plot_prototype_comparison(
  a, b, class_names, path, *, labels=("this", "other"), metric=None
) -> str:
  """The two prototypes side by side in one class order (clustering of
  `a`), and their off-diagonal entries against each other."""
  plt = _pyplot()
  a, b = np.asarray(a), np.asarray(b)
  num = a.shape[0]
  order = cluster_order(a)
  names = [_names(class_names, num)[i] for i in order]
  agreement = prototype_agreement(a, b)
  size = min(4 + 0.12 * num, 12)
  fig, axes = plt.subplots(
    1, 3, figsize=(2 * size + 5.5, size), width_ratios=[size, size, 5]
  )
  for ax, matrix, label in zip(axes, (a, b), labels):
    _heatmap(
      ax,
      fig,
      matrix[np.ix_(order, order)],
      names,
      title=f"{label} (C = {num})",
      cbar_label=f"similarity ({metric or 'unknown metric'})",
      cmap="Blues",
      vmax=1.0,
    )
  pairs = ~np.eye(num, dtype=bool)
  ax = axes[2]
  ax.scatter(a[pairs], b[pairs], s=5, alpha=0.3, rasterized=True)
  top = float(max(a[pairs].max(initial=0), b[pairs].max(initial=0)))
  ax.plot([0, top], [0, top], color="C3", lw=1, label="equal")
  ax.set_xlabel(f"S[i, j], {labels[0]}")
  ax.set_ylabel(f"S[i, j], {labels[1]}")
  ax.set_aspect("equal")
  ax.set_title(
    f"Pearson r = {agreement['pearson']:.3f}, Spearman ρ = "
    f"{agreement['spearman']:.3f}\n({agreement['pairs']} pairs i ≠ j)",
    fontsize=9,
  )
  ax.legend(fontsize=8)
  return _save(fig, path)


def plot_overlays(
  images, label_maps, path, *, titles=None, semantic_names=None, alpha=0.5
) -> str:
  """Each image beside its label map (ADE20K ids, 0 = unlabeled) blended
  over it, with the five largest classes named."""
  plt = _pyplot()
  palette = label_palette(max(256, max(int(m.max()) for m in label_maps) + 1))
  rows = len(images)
  fig, axes = plt.subplots(rows, 2, figsize=(9, 3.3 * rows), squeeze=False)
  for r, (image, ids) in enumerate(zip(images, label_maps)):
    if image.shape[:2] != ids.shape:
      raise UserError(
        f"{titles[r] if titles else r}: image {image.shape[:2]} and label "
        f"map {ids.shape} differ in size"
      )
    blend = (1 - alpha) * image[..., :3] + alpha * palette[ids]
    blend = np.where(ids[..., None] == 0, image[..., :3], blend)
    axes[r, 0].imshow(image)
    axes[r, 1].imshow(blend.astype(np.uint8))
    counts = np.bincount(ids.ravel())
    counts[0] = 0
    largest = [int(i) for i in np.argsort(-counts)[:5] if counts[i]]
    named = [
      semantic_names[i - 1]
      if semantic_names and i - 1 < len(semantic_names)
      else f"id {i}"
      for i in largest
    ]
    handles = [
      plt.Rectangle((0, 0), 1, 1, color=palette[i] / 255) for i in largest
    ]
    axes[r, 1].legend(
      handles, named, fontsize=7, loc="upper right", framealpha=0.8
    )
    axes[r, 0].set_title(titles[r] if titles else "", fontsize=8)
    for ax in axes[r]:
      ax.set_axis_off()
  fig.tight_layout()
  return _save(fig, path)
