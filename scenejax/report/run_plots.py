"""Figures of a training run: the training curves, the confusion matrix and
the prototype's similarity against it, t-SNE of penultimate features
([SP] Fig. 8), and, for segmentation, per-class IoU, predictions beside the
ground truth and t-SNE of pixel embeddings."""

from __future__ import annotations

import numpy as np

from scenejax.report.plots import (
  _heatmap,
  _names,
  _pyplot,
  _save,
  label_palette,
)


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
