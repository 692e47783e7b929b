"""Figures of a prototype or a training run, as PNGs and one HTML page.

  python -m scenejax.report --workdir=/tmp/run [--out=DIR] [--classes=a,b]
  python -m scenejax.report --prototype=proto.npz [--class_names=FILE]
  # A segmenter's prototype against the ground-truth one, and its maps:
  python -m scenejax.report --prototype=seg.npz --compare=gt.npz \
      --compare_label="ground truth" --images=photos/ --label_maps=maps/

For a prototype alone: the heatmap ordered by hierarchical clustering, the
most similar pairs, and the GLS soft labels across epochs ([SP] Fig. 3, 4);
with --compare, another prototype of the same classes beside it and the
Pearson / Spearman agreement of their off-diagonal entries; with --images
and --label_maps, label maps blended over example images.
For a training workdir, also: the training curves from metrics.jsonl, and,
from one pass of the best checkpoint over the evaluation split, the
confusion matrix, the prototype's similarity against the confusion rate of
every class pair, and a t-SNE of the penultimate features ([SP] Fig. 8).

Everything lands in `--out` (default workdir/report): one PNG per figure
and report.html, which embeds them (one file to mail or attach).
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Sequence

import numpy as np
from absl import logging

from scenejax import fileio
from scenejax import prototype as prototype_lib
from scenejax.errors import UserError
from scenejax.prototype import published

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


def read_history(workdir) -> list[dict]:
  """The rows of WORKDIR/metrics.jsonl, one per epoch. A last line cut
  short (the trainer killed while writing it) is skipped with a warning;
  any other bad line is an error naming it."""
  path = os.path.join(workdir, "metrics.jsonl")
  try:
    with open(path) as f:
      lines = f.read().split("\n")
  except FileNotFoundError:
    raise UserError(
      f"{path}: no metrics.jsonl; is {workdir} a scenejax training workdir?"
    ) from None
  except (OSError, UnicodeDecodeError) as e:
    raise UserError(f"{path}: cannot read it ({e})") from e
  rows = []
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
      if not isinstance(row, dict) or "epoch" not in row:
        raise ValueError("not an epoch's metrics")
    except ValueError as e:
      if number == len(lines):  # no newline after it: an unfinished write
        logging.warning("%s: skipping its unfinished last line", path)
        break
      raise UserError(
        f"{path}, line {number}: {e}; the trainer rewrites this file from "
        "its checkpoint when the run resumes"
      ) from None
    rows.append(row)
  return rows


def plot_training_curves(
  history: list[dict], path, *, num_soft_epochs: int | None = None
) -> str:
  """Each training loss term, and train accuracy / Top-1 / MCA per epoch."""
  plt = _pyplot()
  epochs = [row["epoch"] for row in history]
  accuracies = ("train_accuracy", "train_pixel_accuracy", "train_f1")
  terms = [
    k for k in history[0] if k.startswith("train_") and k not in accuracies
  ]
  fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
  for key in terms:
    left.plot(
      epochs,
      [row[key] for row in history],
      ".-",
      lw=2.5 if key == "train_loss" else 1.2,
      label=("total" if key == "train_loss" else key[6:]),
    )
  left.set_xlabel("epoch")
  left.set_ylabel("mean training loss")
  left.set_title("Training loss, by term")
  left.legend(fontsize=8)
  for key, label in (
    ("train_accuracy", "train accuracy (batch)"),
    ("top1", "eval Top-1"),
    ("mean_class_accuracy", "eval mean class accuracy"),
    ("top5", "eval Top-5"),
    ("train_pixel_accuracy", "train pixel accuracy (batch)"),
    ("mIoU", "eval mIoU"),
    ("pixel_accuracy", "eval pixel accuracy"),
    ("train_f1", "train overall F1 (batch)"),
    ("mAP", "eval mAP"),
    ("CF1", "eval CF1"),
    ("OF1", "eval OF1"),
  ):
    if key in history[0]:
      # Top-1 drawn thick and dashed: on a balanced split it equals MCA.
      thick = key in ("top1", "mIoU", "mAP")
      style = dict(lw=3, ls="--") if thick else dict(ls="-")
      right.plot(
        epochs, [row[key] for row in history], marker=".", label=label, **style
      )
  right.set_xlabel("epoch")
  right.set_ylabel("accuracy")
  right.set_ylim(0, 1.02)
  right.set_title("Accuracy" + (" and mIoU" if "mIoU" in history[0] else ""))
  right.legend(fontsize=8)
  if num_soft_epochs:
    for ax in (left, right):
      ax.axvline(num_soft_epochs + 1.5, color="grey", lw=0.8, ls="--")
    left.annotate(
      "GLS labels hard from here",
      (num_soft_epochs + 1.5, 1),
      xycoords=("data", "axes fraction"),
      fontsize=7,
      va="top",
      ha="left",
      color="grey",
    )
  return _save(fig, path)


def confusion_rates(confusion: np.ndarray) -> np.ndarray:
  """Row-normalised confusion: [i, j] = P(predicted j | true i); rows of
  absent classes are NaN."""
  confusion = np.asarray(confusion, np.float64)
  totals = confusion.sum(axis=1, keepdims=True)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(totals > 0, confusion / totals, np.nan)


def plot_confusion(confusion, class_names, path, *, order=None) -> str:
  """Row-normalised confusion matrix, classes in the prototype's order."""
  plt = _pyplot()
  rates = confusion_rates(confusion)
  num = rates.shape[0]
  order = np.arange(num) if order is None else order
  names = [_names(class_names, num)[i] for i in order]
  size = min(4 + 0.16 * num, 16)
  fig, ax = plt.subplots(figsize=(size + 1.5, size))
  _heatmap(
    ax,
    fig,
    rates[np.ix_(order, order)],
    names,
    title="Confusion of the best checkpoint (rows: true class), "
    "prototype order",
    cbar_label="fraction of the true class",
    cmap="Oranges",
    vmax=1.0,
  )
  ax.set_xlabel("predicted class")
  ax.set_ylabel("true class")
  return _save(fig, path)


def similarity_vs_confusion(
  similarity, confusion
) -> tuple[np.ndarray, np.ndarray, float]:
  """(S[i, j], rate[i, j], Spearman rho) over ordered pairs i != j whose
  true class i occurs in the split."""
  from scipy import stats

  rates = confusion_rates(confusion)
  s = np.asarray(similarity, np.float64)
  pairs = ~np.eye(s.shape[0], dtype=bool) & ~np.isnan(rates)
  x, y = s[pairs], rates[pairs]
  rho = (
    float(stats.spearmanr(x, y).statistic)
    if len(x) > 2 and np.ptp(x) > 0 and np.ptp(y) > 0
    else float("nan")
  )
  return x, y, rho


def plot_similarity_vs_confusion(similarity, confusion, path) -> str:
  """Does the prior predict the errors? One point per ordered class pair,
  plus the mean confusion rate in bins of similarity."""
  plt = _pyplot()
  x, y, rho = similarity_vs_confusion(similarity, confusion)
  fig, ax = plt.subplots(figsize=(6.5, 4.5))
  ax.scatter(
    x,
    y,
    s=6,
    alpha=0.35 if len(x) < 5000 else 0.1,
    rasterized=True,
    label="class pair (i, j), i ≠ j",
  )
  if len(x) and np.ptp(x) > 0:  # equal-width bins: centres stay honest
    edges = np.linspace(x.min(), x.max(), 11)
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, 9)
    full = [b for b in range(10) if (which == b).any()]
    ax.plot(
      [x[which == b].mean() for b in full],
      [y[which == b].mean() for b in full],
      "o-",
      color="C3",
      lw=2,
      label="mean rate per similarity bin (10 equal bins)",
    )
  ax.set_xlabel("prototype similarity S[i, j]")
  ax.set_ylabel("confusion rate P(predict j | true i)")
  ax.set_title(f"Prior vs errors: Spearman ρ = {rho:.2f} over {len(x)} pairs")
  ax.legend(fontsize=8)
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


def label_palette(num_ids: int = 256) -> np.ndarray:
  """(num_ids, 3) uint8 colours, id 0 (unlabeled) black, the others fixed
  pseudo-random colours (the same id, the same colour in every figure)."""
  rng = np.random.default_rng(2018)  # fixed: stable colours across runs
  palette = rng.integers(40, 256, (num_ids, 3)).astype(np.uint8)
  palette[0] = 0
  return palette


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


def plot_embedding(points, labels, class_names, path, *, order=None) -> str:
  """[SP] Fig. 8: 2-D t-SNE of penultimate features, coloured by class
  (a legend up to 20 classes; beyond that, colours follow the prototype's
  clustering order, so similar scenes get similar hues)."""
  plt = _pyplot()
  labels = np.asarray(labels)
  num = len(class_names)
  names = _names(class_names, num)
  fig, ax = plt.subplots(figsize=(8, 6.5))
  if num <= 20:
    cmap = plt.get_cmap("tab20" if num > 10 else "tab10")
    for c in range(num):
      sel = labels == c
      if sel.any():
        ax.scatter(
          points[sel, 0], points[sel, 1], s=9, color=cmap(c), label=names[c]
        )
    ax.legend(fontsize=7, markerscale=2, loc="best", ncol=2 if num > 10 else 1)
  else:
    rank = np.empty(num, int)
    rank[np.arange(num) if order is None else order] = np.arange(num)
    ax.scatter(
      points[:, 0],
      points[:, 1],
      s=4,
      c=rank[labels],
      cmap="hsv",
      rasterized=True,
    )
  ax.set_xticks([])
  ax.set_yticks([])
  ax.set_xlabel("t-SNE 1")
  ax.set_ylabel("t-SNE 2")
  ax.set_title(f"t-SNE of penultimate features, {len(labels)} eval images")
  return _save(fig, path)


def tsne(features: np.ndarray, seed: int = 0) -> np.ndarray:
  """2-D t-SNE (scikit-learn, Barnes-Hut, PCA init, perplexity <= 30)."""
  from sklearn.manifold import TSNE

  n = len(features)
  perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
  return TSNE(
    n_components=2,
    perplexity=perplexity,
    init="pca",
    learning_rate="auto",
    random_state=seed,
  ).fit_transform(np.asarray(features, np.float64))


def model_pass(
  workdir: str,
  *,
  step: int | None = None,
  max_images: int | None = None,
  data=None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, int]:
  """(confusion, features, labels, step) of the best checkpoint (or `step`)
  over the eval split, from one `scenejax.evaluation.evaluate` pass: the
  confusion over every image, the penultimate features of at most
  `max_images`, spread over the split. `data` is the run's dataset if the
  caller has it loaded already."""
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  from scenejax import checkpoints, datasets, evaluation, input_pipeline, train

  config = checkpoints.read_workdir_config(workdir)
  config.data.ten_crop = False
  if data is None:
    data = datasets.from_config(config)
  _, eval_preprocess = input_pipeline.preprocessors(config, data)
  mesh = train.data_parallel_mesh()
  _, graphdef, state, step = checkpoints.restore_workdir(
    workdir, data.num_classes, step, NamedSharding(mesh, P())
  )
  from flax import nnx

  model = nnx.merge(graphdef, state)[0]
  eval_fn = evaluation.jit_eval_step(
    graphdef, mesh, (model.pixel_mean, model.pixel_std), features=True
  )
  result = evaluation.evaluate(
    eval_fn,
    state,
    data.test,
    batch_size=config.eval_batch_size,
    num_classes=data.num_classes,
    data_sharding=NamedSharding(mesh, P("data")),
    preprocess=eval_preprocess,
    feature_every=max(1, -(-len(data.test) // max_images)) if max_images else 1,
  )
  return result.confusion, result.features, result.feature_labels, step


# --------------------------------------------------------------------------
# The HTML page.


def _img(path, alt) -> str:
  with open(path, "rb") as f:
    data = base64.b64encode(f.read()).decode("ascii")
  return (
    f'<img alt="{html.escape(alt)}" style="max-width:100%" '
    f'src="data:image/png;base64,{data}">'
  )


def _table(header, rows) -> str:
  head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
  body = "".join(
    "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
    for row in rows
  )
  return f"<table><tr>{head}</tr>{body}</table>"


_STYLE = (
  "body{font-family:sans-serif;max-width:1100px;margin:2em auto;"
  "line-height:1.4} table{border-collapse:collapse} td,th{border:1px "
  "solid #ccc;padding:2px 8px;text-align:left} h2{margin-top:2em}"
)


def write_html(path, title: str, sections) -> str:
  """sections: (heading, [html fragments]); written atomically."""
  parts = [
    f"<!doctype html><html><head><meta charset='utf-8'><title>"
    f"{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
    f"<h1>{html.escape(title)}</h1>"
  ]
  for heading, fragments in sections:
    parts.append(f"<h2>{html.escape(heading)}</h2>" + "".join(fragments))
  parts.append("</body></html>")
  fileio.write_text(path, "".join(parts))
  return os.fspath(path)


def _p(text) -> str:
  return f"<p>{html.escape(text)}</p>"


def _prototype_sections(
  proto, out, *, classes, num_soft_epochs, final_confidence, confusion=None
):
  s = proto.similarity
  names = _names(proto.class_names, s.shape[0])
  order = cluster_order(s)
  figures = {
    "prototype": plot_prototype(
      s,
      proto.class_names,
      os.path.join(out, "prototype.png"),
      metric=proto.metric,
      order=order,
    )
  }
  fragments = [
    _p(
      "Each cell is the similarity of two scene classes' object "
      "statistics ([SP] Eq. 2/4); rows and columns are ordered "
      "by average-linkage clustering, so blocks are groups of "
      "scenes that share objects."
    ),
    _img(figures["prototype"], "prototype"),
  ]
  if s.shape[0] > MAX_LABELLED_CLASSES:
    figures["prototype_zoom"] = plot_prototype_zoom(
      s,
      proto.class_names,
      os.path.join(out, "prototype_zoom.png"),
      metric=proto.metric,
    )
    fragments.append(_img(figures["prototype_zoom"], "prototype close-up"))
  rates = None if confusion is None else confusion_rates(confusion)
  rows = []
  for i, j, v in prototype_lib.most_similar_pairs(s, 15):
    row = [names[i], names[j], f"{v:.4f}"]
    if rates is not None:
      row.append(f"{rates[i, j]:.3f} / {rates[j, i]:.3f}")
    rows.append(row)
  header = ["class", "class", "similarity"] + (
    ["confusion i→j / j→i"] if rates is not None else []
  )
  sections = [
    ("Similarity prototype", fragments),
    ("Most confusable pairs by the prototype", [_table(header, rows)]),
  ]
  classes = default_gls_classes(s) if classes is None else classes
  figures["gls"] = plot_gls_evolution(
    s,
    proto.class_names,
    os.path.join(out, "gls_evolution.png"),
    classes=classes,
    num_soft_epochs=num_soft_epochs,
    final_confidence=final_confidence,
  )
  start = float(np.max(np.diagonal(s) / s.sum(axis=1)))
  sections.append(
    (
      "GLS soft labels across epochs",
      [
        _p(
          f"The soft labels of {', '.join(names[c] for c in classes)} "
          "([SP] Algorithm 2): the target's own entry rises linearly from "
          f"{start:.3f} (Eq. 8) to {final_confidence} over STEP = "
          f"{num_soft_epochs} epochs; the mass on similar classes shrinks "
          "with it; after STEP the label is one-hot."
        ),
        _img(figures["gls"], "GLS evolution"),
      ],
    )
  )
  return sections, figures, order


def _class_indices(names_arg: str, class_names, num: int) -> list[int] | None:
  if not names_arg:
    return None
  names = list(class_names or [str(c) for c in range(num)])
  short = [display_name(n) for n in names]
  chosen = []
  for name in names_arg.split(","):
    name = name.strip()
    if name in names:
      chosen.append(names.index(name))
    elif name in short:
      chosen.append(short.index(name))
    elif name.isdigit() and int(name) < num:
      chosen.append(int(name))
    else:
      raise UserError(
        f"--classes: no class named {name!r} (the classes are e.g. {short[:5]})"
      )
  return chosen


def _comparison_section(proto, other_path, out, label):
  """Section comparing `proto` with the prototype at `other_path` (same
  classes, matched by name when both files carry names)."""
  other = prototype_lib.load_prototype(other_path)
  if other.metric and proto.metric and other.metric != proto.metric:
    raise UserError(
      f"--compare={other_path} is a {other.metric} prototype, this one is "
      f"{proto.metric}: compare prototypes of one metric"
    )
  if proto.class_names and other.class_names:
    if set(proto.class_names) != set(other.class_names):
      missing = sorted(set(proto.class_names) ^ set(other.class_names))
      raise UserError(
        f"--compare={other_path}: the two prototypes' classes differ "
        f"(e.g. {missing[:3]})"
      )
    index = [other.class_names.index(n) for n in proto.class_names]
    b = other.similarity[np.ix_(index, index)]
  elif other.num_classes == proto.num_classes:
    b = other.similarity
  else:
    raise UserError(
      f"--compare={other_path} has {other.num_classes} classes, this "
      f"prototype {proto.num_classes}"
    )
  agreement = prototype_agreement(proto.similarity, b)
  figure = plot_prototype_comparison(
    proto.similarity,
    b,
    proto.class_names,
    os.path.join(out, "prototype_comparison.png"),
    labels=("this prototype", label),
    metric=proto.metric,
  )
  fragments = [
    _p(
      f"This prototype against {label} ({os.path.basename(other_path)}), "
      "in the same class order. Agreement of the off-diagonal entries "
      f"S[i, j], i ≠ j ({agreement['pairs']} pairs): Pearson r = "
      f"{agreement['pearson']:.4f}, Spearman ρ = "
      f"{agreement['spearman']:.4f}; largest |difference| "
      f"{agreement['max_abs_difference']:.4f}."
    ),
    _img(figure, "prototype comparison"),
  ]
  return (f"Against {label}", fragments), figure, agreement


def _overlay_section(images_dir, maps_dir, out, semantic_names, count):
  """Section of label maps (`maps_dir`, PNG per image as `scenejax.segment`
  writes them) blended over the first `count` images of `images_dir`."""
  from PIL import Image

  from scenejax.datasets import label_maps as label_maps_lib
  from scenejax.segment import image_files, png_name

  chosen = []
  for rel in image_files(images_dir):
    if len(chosen) == count:
      break
    path = os.path.join(maps_dir, png_name(rel))
    if os.path.exists(path):
      chosen.append((rel, path))
  if not chosen:
    raise UserError(
      f"--label_maps={maps_dir} holds no map of the images in "
      f"--images={images_dir} (expected e.g. {png_name('a.jpg')} for a.jpg)"
    )
  images, maps = [], []
  for rel, path in chosen:
    with Image.open(os.path.join(images_dir, rel)) as image:
      images.append(np.asarray(image.convert("RGB")))
    maps.append(label_maps_lib.read_label_map(path).astype(np.int64))
  figure = plot_overlays(
    images,
    maps,
    os.path.join(out, "overlays.png"),
    titles=[rel for rel, _ in chosen],
    semantic_names=semantic_names,
  )
  fragments = [
    _p(
      f"Label maps from {maps_dir} over the first {len(chosen)} images of "
      f"{images_dir} ({', '.join(rel for rel, _ in chosen)}; ADE20K ids, "
      "unlabeled pixels left as they are)."
    ),
    _img(figure, "label-map overlays"),
  ]
  return ("Label maps on example images", fragments), figure


def prototype_report(
  path,
  out,
  *,
  class_names_file: str = "",
  classes: str = "",
  num_soft_epochs: int = 20,
  final_confidence: float = 0.99,
  compare: str = "",
  compare_label: str = "",
  images: str = "",
  label_maps: str = "",
  semantic_class_names_file: str = "",
  num_overlays: int = 6,
) -> dict:
  """Figures and report.html of a prototype NPZ alone; returns the paths
  (and, with `compare`, the agreement under "agreement").

  Args:
    compare: another prototype of the same classes (e.g. from
      ground-truth maps): both side by side, and the Pearson / Spearman
      agreement of their off-diagonal entries.
    images, label_maps: a folder of images and one of their label maps
      (`python -m scenejax.segment --images=... --out=...`): overlays of
      the first `num_overlays`.
  """
  names = (
    prototype_lib.read_class_names(class_names_file)
    if class_names_file
    else None
  )
  if bool(images) != bool(label_maps):
    raise UserError("give both --images and --label_maps for overlays")
  if images and num_overlays < 1:
    raise UserError(f"--num_overlays={num_overlays}: need at least 1")
  proto = prototype_lib.load_prototype(path, class_names=names)
  if names is not None:
    proto = prototype_lib.with_class_names(proto, names)
  os.makedirs(out, exist_ok=True)
  sections, figures, _ = _prototype_sections(
    proto,
    out,
    classes=_class_indices(classes, proto.class_names, proto.num_classes),
    num_soft_epochs=num_soft_epochs,
    final_confidence=final_confidence,
  )
  summary = f"<pre>{html.escape(proto.summary())}</pre>"
  sections.insert(0, (f"{os.path.basename(os.fspath(path))}", [summary]))
  if compare:
    section, figures["prototype_comparison"], agreement = _comparison_section(
      proto, compare, out, compare_label or "the other prototype"
    )
    sections.insert(2, section)
    figures["agreement"] = agreement
  if images:
    semantic = (
      prototype_lib.read_class_names(semantic_class_names_file)
      if semantic_class_names_file
      else proto.semantic_class_names
    )
    section, figures["overlays"] = _overlay_section(
      images, label_maps, out, semantic, num_overlays
    )
    sections.append(section)
  figures["html"] = write_html(
    os.path.join(out, "report.html"), "scenejax prototype report", sections
  )
  return figures


def plot_class_iou(
  per_class_iou, class_names, path, *, title="", ylabel="IoU"
) -> str:
  """Per-class IoU (or AP) bars, best first; classes absent from the
  ground truth (no value) are left out and counted in the title."""
  plt = _pyplot()
  present = [(i, v) for i, v in enumerate(per_class_iou) if v is not None]
  present.sort(key=lambda item: -item[1])
  names = _names(class_names, len(per_class_iou))
  fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(present) + 2), 4))
  ax.bar(range(len(present)), [v for _, v in present], color="#4878a8")
  ax.set_xticks(range(len(present)))
  ax.set_xticklabels([names[i] for i, _ in present], rotation=90, fontsize=7)
  ax.set_ylim(0, 1)
  ax.set_ylabel(ylabel)
  absent = len(per_class_iou) - len(present)
  ax.set_title(title + (f" ({absent} classes absent)" if absent else ""))
  fig.tight_layout()
  return _save(fig, path)


def plot_segmentation_examples(
  images, truths, predictions, path, *, semantic_names=None, alpha=0.5
) -> str:
  """Rows of image | ground truth | prediction, the maps (ids, 0 =
  unlabeled, shown as the image) blended over the image in
  `label_palette` colours; pixel accuracy of each prediction over the
  labelled pixels in its title."""
  plt = _pyplot()
  palette = label_palette(256)
  fig, axes = plt.subplots(
    len(images), 3, figsize=(8, 2.8 * len(images)), squeeze=False
  )
  for r, (image, truth, pred) in enumerate(zip(images, truths, predictions)):
    labelled = truth > 0
    accuracy = (
      (pred[labelled] == truth[labelled]).mean() if labelled.any() else 0
    )
    for c, (ids, title) in enumerate(
      (
        (None, "image"),
        (truth, "ground truth"),
        (pred, f"prediction ({accuracy:.2f})"),
      )
    ):
      shown = image[..., :3]
      if ids is not None:
        blend = (1 - alpha) * shown + alpha * palette[ids]
        shown = np.where(ids[..., None] == 0, shown, blend).astype(np.uint8)
      axes[r, c].imshow(shown, interpolation="nearest")
      axes[r, c].set_title(title, fontsize=8)
      axes[r, c].set_axis_off()
  fig.tight_layout()
  return _save(fig, path)


def plot_pixel_embeddings(panels, class_names, path) -> str:
  """Side-by-side 2-D t-SNE of sampled pixel embeddings, coloured by class:
  `panels` is [(title, points (N, 2), labels (N,) ids 1..K)]."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5.2))
  axes = np.atleast_1d(axes)
  num = len(class_names)
  for ax, (title, points, labels) in zip(axes, panels):
    ax.scatter(
      points[:, 0], points[:, 1], s=4, c=labels, cmap="hsv", vmin=1,
      vmax=max(num, 2), rasterized=True,
    )  # fmt: skip
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.tight_layout()
  return _save(fig, path)


def sampled_pixel_embeddings(
  model, images, label_maps, *, per_class: int = 16, num_samples: int = 256
) -> tuple[np.ndarray, np.ndarray]:
  """(embeddings (N, D), ids (N,)) of a class-balanced sample of the
  labelled pixels of `images` (`losses.sample_pixels`, a fixed key): what
  the contrastive loss sees, at the embedding's stride."""
  import jax
  import jax.numpy as jnp

  from scenejax import losses

  model.eval()
  x = (np.asarray(images, np.float32) / 255.0 - np.array(model.pixel_mean)) / (
    np.array(model.pixel_std)
  )
  _, emb = model.decode_with_embeddings(jnp.asarray(x, jnp.float32))
  b, h, w, d = emb.shape
  labels = losses.nearest_labels(np.asarray(label_maps), (h, w)).reshape(b, -1)
  idx, valid = losses.sample_pixels(
    labels,
    jax.random.key(0),
    num_samples=min(num_samples, h * w),
    per_class=per_class,
    num_classes=model.num_classes,
  )
  idx, valid = np.asarray(idx), np.asarray(valid)
  emb = np.asarray(emb).reshape(b, h * w, d)
  picked = np.take_along_axis(emb, idx[..., None], 1)[valid]
  ids = np.take_along_axis(np.asarray(labels), idx, 1)[valid]
  return picked, ids


def _run_record(workdir, out):
  """(the report's directory, created; the run's config; its epochs from
  metrics.jsonl, at least one)."""
  from scenejax import checkpoints

  out = out or os.path.join(workdir, "report")
  os.makedirs(out, exist_ok=True)
  config = checkpoints.read_workdir_config(workdir)
  history = read_history(workdir)
  if not history:
    raise UserError(f"{workdir}/metrics.jsonl is empty: no finished epoch")
  return out, config, history


def segmentation_report(
  workdir, out=None, *, num_examples: int = 4, max_images: int = 32
) -> dict:
  """Figures and report.html of a segmentation run ([SEG]): loss terms and
  mIoU per epoch, per-class IoU of the best epoch (from metrics.jsonl),
  the best checkpoint's predictions beside the ground truth on the first
  eval images, and a t-SNE of sampled pixel embeddings of those images
  before (random weights of the run's seed) and after training."""
  from scenejax import datasets, input_pipeline, models, segment

  out, config, history = _run_record(workdir, out)
  data = datasets.segmentation_from_config(config)
  names = list(data.class_names)
  best = max(history, key=lambda row: row["mIoU"])
  figures = {
    "curves": plot_training_curves(
      history, os.path.join(out, "training_curves.png")
    ),
    "class_iou": plot_class_iou(
      best["per_class_iou"],
      names,
      os.path.join(out, "class_iou.png"),
      title=f"Per-class IoU, epoch {best['epoch']} (mIoU {best['mIoU']:.3f})",
    ),
  }
  trained = segment.load_segmenter(config.model, workdir)
  count = min(max_images, len(data.test))
  records = [data.test[i] for i in range(count)]
  prepare = input_pipeline.SegmentationPreprocess(
    train=False, crop_size=config.segmentation.crop_size
  )
  prepared = [prepare(r) for r in records]
  prepared = [p for p in prepared if p is not None]
  images = np.stack([p["image"] for p in prepared])
  truths = np.stack([p["label"] for p in prepared])
  predictor = segment.Predictor(
    trained, batch_size=1, resize=segment.Resize(config.segmentation.crop_size)
  )
  predictions = [
    ids[..., 0] + 1 for ids, _ in predictor(list(images[:num_examples]))
  ]
  figures["examples"] = plot_segmentation_examples(
    images[:num_examples],
    truths[:num_examples],
    predictions,
    os.path.join(out, "examples.png"),
  )
  # The run's initial weights when it started from random ones (the same
  # seed); an `init_from` backbone is not reloaded (the workdir's config
  # keeps no path to it).
  initial = models.from_config(config, len(names))
  panels = []
  for title, model in (("initial weights", initial), ("trained", trained)):
    emb, ids = sampled_pixel_embeddings(model, images, truths)
    panels.append((f"{title}: {len(ids)} pixels", tsne(emb, config.seed), ids))
  figures["pixel_tsne"] = plot_pixel_embeddings(
    panels, names, os.path.join(out, "pixel_tsne.png")
  )
  run = [
    _p(
      f"{config.model} on {config.dataset}, {len(history)} epochs, focal "
      f"γ {config.segmentation.focal_gamma}, class weights "
      f"{config.segmentation.class_weights}, contrastive "
      f"{config.segmentation.contrastive_form} × "
      f"{config.segmentation.contrastive_weight}. Best epoch {best['epoch']}: "
      f"mIoU {best['mIoU']:.4f}, pixel accuracy "
      f"{best['pixel_accuracy']:.4f} (per-epoch evaluation)."
    ),
    _img(figures["curves"], "training curves"),
  ]
  sections = [
    ("Training", run),
    ("Per-class IoU", [_img(figures["class_iou"], "per-class IoU")]),
    ("Predictions", [_img(figures["examples"], "predictions")]),
    (
      "Pixel embeddings",
      [
        _p(
          "t-SNE of a class-balanced sample of labelled pixels' "
          "embeddings (what the contrastive loss sees), coloured by class."
        ),
        _img(figures["pixel_tsne"], "pixel embedding t-SNE"),
      ],
    ),
  ]
  figures["html"] = write_html(
    os.path.join(out, "report.html"), f"scenejax report: {workdir}", sections
  )
  return figures


def multilabel_report(workdir, out=None) -> dict:
  """Figures and report.html of a multi-label run ([SADCL]): loss terms,
  mAP / CF1 / OF1 per epoch, and the per-label AP of the best epoch (from
  metrics.jsonl)."""
  from scenejax import checkpoints

  out, config, history = _run_record(workdir, out)
  best = max(history, key=lambda row: row["mAP"])
  step = checkpoints.best_step(checkpoints.directory(workdir))
  names = checkpoints.class_names(workdir, step)
  figures = {
    "curves": plot_training_curves(
      history, os.path.join(out, "training_curves.png")
    ),
    "label_ap": plot_class_iou(
      best["per_class_ap"],
      names,
      os.path.join(out, "label_ap.png"),
      title=f"Per-label AP, epoch {best['epoch']} (mAP {best['mAP']:.3f})",
      ylabel="average precision",
    ),
  }
  ml = config.multilabel
  run = [
    _p(
      f"{config.model} + SARL on {config.dataset} ({len(names)} labels), "
      f"{len(history)} epochs, {ml.classification_loss} + "
      f"{ml.sscl_weight} × SSCL + {ml.pscl_weight} × PSCL ({ml.prototypes} "
      f"prototypes). Best epoch {best['epoch']}: mAP {best['mAP']:.4f}, "
      f"CF1 {best['CF1']:.4f}, OF1 {best['OF1']:.4f} (threshold "
      f"{ml.threshold})."
    ),
    _img(figures["curves"], "training curves"),
  ]
  sections = [
    ("Training", run),
    ("Per-label AP", [_img(figures["label_ap"], "per-label AP")]),
  ]
  figures["html"] = write_html(
    os.path.join(out, "report.html"), f"scenejax report: {workdir}", sections
  )
  return figures


def workdir_report(
  workdir,
  out=None,
  *,
  classes: str = "",
  max_tsne: int = 2000,
  step: int | None = None,
) -> dict:
  """Figures and report.html of a training workdir; returns the paths."""
  from scenejax import checkpoints, config_lib, datasets, evaluation

  config = checkpoints.read_workdir_config(workdir)
  if config.get("task") == "segmentation":
    return segmentation_report(workdir, out)
  if config.get("task") == "multilabel":
    return multilabel_report(workdir, out)
  out = out or os.path.join(workdir, "report")
  os.makedirs(out, exist_ok=True)
  history = read_history(workdir)
  if not history:
    raise UserError(f"{workdir}/metrics.jsonl is empty: no finished epoch")
  data = datasets.from_config(config)
  data_names = data.class_names
  proto_path = (
    config_lib.prototype_path(config)
    if config.prototype.path
    else os.path.join(workdir, "prototype.npz")
  )
  if not (  # before the long model pass
    os.path.exists(proto_path) or published.is_published(proto_path)
  ):
    raise UserError(
      f"{proto_path} not found: the run's loss read no prototype (a CE run "
      "on a real dataset), so the workdir report has none to show; build "
      "one with python -m scenejax.prototype build and report on it with "
      "--prototype=FILE"
    )
  proto = prototype_lib.with_class_names(
    prototype_lib.load_prototype(proto_path, class_names=data_names), data_names
  )
  confusion, features, labels, step = model_pass(
    workdir, step=step, max_images=max_tsne, data=data
  )
  loss = config.loss
  sections, figures, order = _prototype_sections(
    proto,
    out,
    classes=_class_indices(classes, proto.class_names, proto.num_classes),
    num_soft_epochs=loss.num_soft_epochs or 20,
    final_confidence=loss.final_confidence,
    confusion=confusion,
  )
  best = max(history, key=lambda row: row["top1"])
  figures["curves"] = plot_training_curves(
    history,
    os.path.join(out, "training_curves.png"),
    num_soft_epochs=(
      loss.num_soft_epochs
      if loss.labels == "gls" and loss.num_soft_epochs < len(history)
      else None
    ),
  )
  metrics = evaluation.accuracy_metrics(confusion, {})
  figures["confusion"] = plot_confusion(
    confusion,
    proto.class_names,
    os.path.join(out, "confusion.png"),
    order=order,
  )
  figures["similarity_vs_confusion"] = plot_similarity_vs_confusion(
    proto.similarity,
    confusion,
    os.path.join(out, "similarity_vs_confusion.png"),
  )
  _, _, rho = similarity_vs_confusion(proto.similarity, confusion)
  figures["tsne"] = plot_embedding(
    tsne(features, config.seed),
    labels,
    list(proto.class_names),
    os.path.join(out, "tsne.png"),
    order=order,
  )
  run = [
    _p(
      f"{config.model} on {config.dataset}, {len(history)} epochs, "
      f"labels {loss.labels}, BCL weight {loss.bcl_weight}, PCL "
      f"{bool(loss.pcl)}. Best epoch {best['epoch']}: Top-1 "
      f"{best['top1']:.4f}, MCA {best['mean_class_accuracy']:.4f}. "
      f"Checkpoint step {step} re-evaluated here: Top-1 "
      f"{metrics['top1']:.4f}, MCA {metrics['mean_class_accuracy']:.4f}."
    ),
    _img(figures["curves"], "training curves"),
  ]
  sections = (
    [("Training", run)]
    + sections
    + [
      (
        "Confusion",
        [
          _img(figures["confusion"], "confusion"),
          _p(
            f"Spearman correlation of S[i, j] with the confusion "
            f"rate of (i, j): {rho:.3f}. Positive means the "
            "prior's similar pairs are the ones the model "
            "mixes up."
          ),
          _img(figures["similarity_vs_confusion"], "similarity vs confusion"),
        ],
      ),
      ("Penultimate features", [_img(figures["tsne"], "t-SNE")]),
    ]
  )
  figures["html"] = write_html(
    os.path.join(out, "report.html"), f"scenejax report: {workdir}", sections
  )
  return figures


def main(argv: list[str]) -> None:
  from absl import flags

  flag = flags.FLAGS
  if len(argv) > 1:
    raise UserError(f"unexpected arguments {argv[1:]}")
  if bool(flag.workdir) == bool(flag.prototype):
    raise UserError("give one of --workdir or --prototype")
  if flag.workdir and (flag.compare or flag.images or flag.label_maps):
    raise UserError(
      "--compare, --images and --label_maps go with --prototype (a "
      "workdir's own is --prototype=WORKDIR/prototype.npz)"
    )
  if flag.workdir:
    figures = workdir_report(
      flag.workdir,
      flag.out,
      classes=flag.classes,
      max_tsne=flag.max_tsne,
      step=flag.step,
    )
  else:
    stem = (  # published:mit67/cosine -> published_mit67_cosine_report
      flag.prototype.replace(":", "_").replace("/", "_")
      if published.is_published(flag.prototype)
      else os.path.splitext(flag.prototype)[0]
    )
    out = flag.out or stem + "_report"
    figures = prototype_report(
      flag.prototype,
      out,
      class_names_file=flag.class_names,
      classes=flag.classes,
      num_soft_epochs=flag.num_soft_epochs,
      final_confidence=flag.final_confidence,
      compare=flag.compare,
      compare_label=flag.compare_label,
      images=flag.images,
      label_maps=flag.label_maps,
      semantic_class_names_file=flag.semantic_class_names,
      num_overlays=flag.num_overlays,
    )
  agreement = figures.pop("agreement", None)
  if agreement:
    print(
      f"agreement with {flag.compare}: Pearson r = {agreement['pearson']:.4f}, "
      f"Spearman rho = {agreement['spearman']:.4f} over "
      f"{agreement['pairs']} off-diagonal pairs"
    )
  for name, path in figures.items():
    print(f"{name:>24}  {path}")


if __name__ == "__main__":
  from absl import flags

  from scenejax import cli

  flags.DEFINE_string("workdir", None, "a training workdir")
  flags.DEFINE_string("prototype", None, "a prototype .npz alone")
  flags.DEFINE_string(
    "out",
    None,
    "output folder (default: workdir/report or the prototype's name + _report)",
  )
  flags.DEFINE_string(
    "class_names", "", "class-name list for a bare prototype NPZ"
  )
  flags.DEFINE_string(
    "classes",
    "",
    "comma list of classes for the GLS "
    "figure (default: from the most similar pairs)",
  )
  flags.DEFINE_integer(
    "num_soft_epochs",
    20,
    "GLS STEP for --prototype (a workdir uses its config)",
  )
  flags.DEFINE_float(
    "final_confidence", 0.99, "GLS final confidence for --prototype"
  )
  flags.DEFINE_integer(
    "max_tsne", 2000, "at most this many eval images in the t-SNE"
  )
  flags.DEFINE_integer(
    "step", None, "checkpoint step (default: the best by the task's metric)"
  )
  flags.DEFINE_string(
    "compare",
    "",
    "--prototype: another prototype of the same classes (e.g. from "
    "ground-truth maps), compared entry by entry",
  )
  flags.DEFINE_string(
    "compare_label",
    "",
    "what --compare is, for the figure (e.g. 'ground truth')",
  )
  flags.DEFINE_string("images", "", "--prototype: images for overlays")
  flags.DEFINE_string(
    "label_maps", "", "their label maps (scenejax.segment --images output)"
  )
  flags.DEFINE_string(
    "semantic_class_names", "", "names of the map ids 1..L, for the legends"
  )
  flags.DEFINE_integer("num_overlays", 6, "images in the overlay figure")
  cli.run(main)
