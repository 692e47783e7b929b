"""Evaluation metrics, pure NumPy: scene classification (Top-k, mean class
accuracy, as SAS-Net reports them), multi-label (AP as scikit-learn's,
mAP, ML-GCN's CP/CR/CF1/OP/OR/OF1), segmentation (mIoU and pixel accuracy,
mmsegmentation's convention). Each takes counts or scores on the host;
the tasks' evaluation loops produce them.

References:
  [SAS] A. López-Cifuentes, M. Escudero-Viñolo, J. Bescós, Á. García-Martín.
  Semantic-Aware Scene Recognition. Pattern Recognition 102, 2020.
  doi:10.1016/j.patcog.2020.107256.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
  """(C, C) int64 counts, rows = true class, columns = predicted class."""
  flat = np.asarray(labels, np.int64) * num_classes + np.asarray(predictions)
  return np.bincount(flat, minlength=num_classes * num_classes).reshape(
    num_classes, num_classes
  )


def accuracy_metrics(
  confusion: np.ndarray, topk_hits: dict[int, int] | None = None
) -> dict:
  """Top-1/2/5 and mean class accuracy (MCA) from exact integer counts.

  MCA averages per-class recall over the classes present in the split;
  classes with no example are excluded and listed in "absent_classes".
  `topk_hits[k]` is the number of examples whose label is among the k best
  scores.
  """
  per_class_total = confusion.sum(axis=1)
  present = per_class_total > 0
  recall = np.diag(confusion)[present] / per_class_total[present]
  total = int(confusion.sum())
  out = dict(top1=float(np.trace(confusion) / total))
  for k, hits in sorted((topk_hits or {}).items()):
    if k > 1:
      out[f"top{k}"] = hits / total
  out.update(
    mean_class_accuracy=float(recall.mean()),
    absent_classes=np.flatnonzero(~present).tolist(),
    num_examples=total,
  )
  return out


def average_precision(scores, targets) -> float:
  """Average precision of one class, Σ_n (R_n - R_{n-1}) P_n over the
  distinct score thresholds in decreasing order (tied scores enter
  together): scikit-learn's `average_precision_score`, no interpolation.
  NaN when the class has no positive."""
  scores = np.asarray(scores, np.float64)
  targets = np.asarray(targets) > 0
  positives = int(targets.sum())
  if positives == 0:
    return float("nan")
  order = np.argsort(-scores, kind="stable")
  scores, targets = scores[order], targets[order]
  # The last index of each run of equal scores: one threshold per run.
  last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
  hits = np.cumsum(targets)[last]
  precision = hits / (last + 1)
  recall = hits / positives
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def multilabel_metrics(
  scores, targets, threshold: float = 0.5, top_k: int = 3, ignore=None
) -> dict:
  """Multi-label metrics from exact counts over a whole split, in the
  convention of ML-GCN's evaluation code, which SADCL's tables follow.

  scores: (N, K) probabilities; targets: (N, K) 0/1. A label is predicted
  when its score >= `threshold`; for the "top{k}_" metrics, when it is
  also among the image's k highest scores. Per class c: N_c^g ground-truth
  positives, N_c^p predictions (taken as 1 when 0, i.e. precision 0),
  N_c^c correct predictions.

    CP = mean_c N_c^c / N_c^p     CR = mean_c N_c^c / N_c^g
    OP = Σ N^c / Σ N^p            OR = Σ N^c / Σ N^g
    CF1 = 2·CP·CR / (CP + CR)     OF1 = 2·OP·OR / (OP + OR)
    mAP = mean over the classes with a positive of `average_precision`

  CR averages over the classes with a positive (ML-GCN divides by zero
  there); "absent_classes" lists the others. `ignore` (N, K) bool leaves
  those (image, label) pairs out of every count and AP (VOC's difficult
  examples); the top-k ranking still sees all K scores. Returns floats in
  [0, 1], and "per_class_ap" (None for a label without a positive).
  """
  scores = np.asarray(scores, np.float64)
  targets = np.asarray(targets) > 0
  if scores.shape != targets.shape or scores.ndim != 2:
    raise ValueError(
      f"scores {scores.shape} and targets {targets.shape}: expected the "
      "same (N, K) shape"
    )
  keep = np.ones_like(targets) if ignore is None else ~np.asarray(ignore, bool)
  targets &= keep
  present = targets.sum(axis=0) > 0
  ap = [
    average_precision(scores[keep[:, c], c], targets[keep[:, c], c])
    if present[c]
    else None
    for c in range(scores.shape[1])
  ]
  out = dict(
    mAP=float(np.mean([v for v in ap if v is not None])),
    per_class_ap=ap,  # None for a label without a positive
  )
  predicted = scores >= threshold
  k = min(top_k, scores.shape[1])
  top = np.zeros_like(predicted)
  np.put_along_axis(
    top, np.argsort(-scores, axis=1, kind="stable")[:, :k], True, axis=1
  )
  for prefix, pred in (
    ("", predicted & keep),
    (f"top{top_k}_", predicted & top & keep),
  ):
    correct = (pred & targets).sum(axis=0).astype(np.float64)
    made = pred.sum(axis=0).astype(np.float64)
    truth = targets.sum(axis=0).astype(np.float64)
    cp = float(np.mean(correct / np.maximum(made, 1)))
    cr = float(np.mean(correct[present] / truth[present]))
    op = float(correct.sum() / max(made.sum(), 1))
    orr = float(correct.sum() / max(truth.sum(), 1))
    out.update(
      {
        f"{prefix}CP": cp,
        f"{prefix}CR": cr,
        f"{prefix}CF1": _f1(cp, cr),
        f"{prefix}OP": op,
        f"{prefix}OR": orr,
        f"{prefix}OF1": _f1(op, orr),
      }
    )
  out["absent_classes"] = np.flatnonzero(~present).tolist()
  return out


def _f1(precision: float, recall: float) -> float:
  total = precision + recall
  return 2 * precision * recall / total if total else 0.0


def multilabel_confusion(
  scores, targets, threshold: float, ignore=None
) -> np.ndarray:
  """(K, 2, 2) int64 per-label counts [[TN, FP], [FN, TP]] at `threshold`
  (scikit-learn's `multilabel_confusion_matrix` layout), the `ignore`d
  (image, label) pairs left out."""
  predicted = np.asarray(scores) >= threshold
  truth = np.asarray(targets) > 0
  keep = True if ignore is None else ~np.asarray(ignore, bool)
  out = np.empty((predicted.shape[1], 2, 2), np.int64)
  for t in (0, 1):
    for p in (0, 1):
      out[:, t, p] = np.sum((truth == t) & (predicted == p) & keep, axis=0)
  return out


def segmentation_confusion(
  predicted: np.ndarray, truth: np.ndarray, num_classes: int
) -> np.ndarray:
  """(K, K) int64 counts [truth - 1, predicted - 1] over pixels whose truth
  id is in 1..K (0 = unlabeled, ignored)."""
  truth = truth.astype(np.int64).ravel()
  predicted = predicted.astype(np.int64).ravel()
  keep = (truth >= 1) & (truth <= num_classes)
  index = (truth[keep] - 1) * num_classes + (predicted[keep] - 1)
  return np.bincount(index, minlength=num_classes * num_classes).reshape(
    num_classes, num_classes
  )


def segmentation_metrics(confusion: np.ndarray) -> dict:
  """mIoU, pixel accuracy and per-class IoU from confusion counts.

  IoU_k = TP_k / (TP_k + FP_k + FN_k); mIoU is the mean over classes that
  occur in the ground truth (mmsegmentation's convention: a class absent
  from the truth has no IoU, NaN, and is left out of the mean); pixel
  accuracy = sum_k TP_k / labelled pixels.
  """
  confusion = np.asarray(confusion, np.float64)
  tp = np.diag(confusion)
  truth, predicted = confusion.sum(1), confusion.sum(0)
  with np.errstate(invalid="ignore", divide="ignore"):
    iou = np.where(truth > 0, tp / (truth + predicted - tp), np.nan)
  return {
    "mIoU": float(np.nanmean(iou)) if np.any(truth > 0) else float("nan"),
    "pixel_accuracy": float(tp.sum() / max(confusion.sum(), 1)),
    "per_class_iou": [None if np.isnan(v) else float(v) for v in iou],
    "labelled_pixels": int(confusion.sum()),
  }
