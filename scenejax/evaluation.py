"""Evaluation: the eval step, the one loop over an evaluation split, and the
classification metrics (Top-1/2/5 and mean class accuracy, as SAS-Net
reports them).

The loop counts exact integers over the whole split (the padded last batch
is masked out), so Top-k and MCA do not depend on the batch size or the
device count. With `feature_every` it also keeps the penultimate features
of every k-th image (the report's t-SNE), from the same pass.

References:
  [SAS] A. López-Cifuentes, M. Escudero-Viñolo, J. Bescós, Á. García-Martín.
  Semantic-Aware Scene Recognition. Pattern Recognition 102, 2020.
  doi:10.1016/j.patcog.2020.107256.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from scenejax import input_pipeline
from scenejax.errors import ConfigError
from scenejax.models import pcl

TOP_K = (1, 2, 5)


def eval_step(
  graphdef, state, batch, *, mean, std, features: bool = False
) -> dict:
  """Predictions of one batch, the model in inference mode.

  Returns {"top": (B, k) indices of the k = min(5, C) highest scores, best
  first; "label"; "mask"} and, with `features`, "features": the penultimate
  embedding. A ten-crop batch (B, 10, H, W, 3) is scored by the softmax
  averaged over each image's crops. PCL's training-only heads are not used.
  """
  model = pcl.export(nnx.merge(graphdef, state)[0])
  if not hasattr(model, "embed"):
    raise ConfigError(
      f"{type(model).__name__} takes a semantic input besides the image: "
      "its workdir is evaluated by the trainer and by scenejax.evaluate "
      "(scenejax.semantic_aware); the report's evaluation and export do "
      "not support it yet"
    )
  model.eval()
  images = input_pipeline.normalize(batch["image"], mean, std)
  out = dict(label=batch["label"], mask=batch["mask"])
  if images.ndim == 5:  # ten-crop: (B, 10, H, W, 3), average the softmax
    n, crops = images.shape[:2]
    embedding = model.embed(images.reshape((n * crops,) + images.shape[2:]))
    probs = jax.nn.softmax(model.head(embedding))
    scores = probs.reshape(n, crops, -1).mean(axis=1)
    embedding = embedding.reshape(n, crops, -1).mean(axis=1)
  else:
    embedding = model.embed(images)
    scores = model.head(embedding)
  out["top"] = jax.lax.top_k(scores, min(max(TOP_K), scores.shape[-1]))[1]
  if features:
    out["features"] = embedding
  return out


def jit_eval_step(
  graphdef, mesh, pixel_stats, *, features: bool = False
) -> jax.stages.Wrapped:
  """`eval_step` jitted for `mesh`: state replicated, the batch split on
  "data", the outputs replicated so every process counts the whole global
  batch."""
  return jax.jit(
    functools.partial(
      eval_step,
      graphdef,
      mean=pixel_stats[0],
      std=pixel_stats[1],
      features=features,
    ),
    in_shardings=(NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))),
    out_shardings=NamedSharding(mesh, P()),
  )


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


@dataclasses.dataclass
class Evaluation:
  """What one pass over an evaluation split counted."""

  confusion: np.ndarray  # (C, C) int64
  topk_hits: dict[int, int]  # k -> examples with label in top k
  features: np.ndarray | None = None  # (N', D) of every k-th image
  feature_labels: np.ndarray | None = None

  def metrics(self) -> dict:
    return accuracy_metrics(self.confusion, self.topk_hits)


def evaluate(
  eval_fn,
  state,
  split,
  *,
  batch_size: int,
  num_classes: int,
  data_sharding,
  preprocess=None,
  feature_every: int = 0,
) -> Evaluation:
  """One pass of `eval_fn` over `split` (this process's part of each global
  batch of `batch_size` * process count), counted exactly.

  `feature_every` > 0 keeps the features of images 0, k, 2k, ... of the
  split (`eval_fn` must return them: `jit_eval_step(features=True)`).
  """
  confusion = np.zeros((num_classes, num_classes), np.int64)
  hits = {k: 0 for k in TOP_K if k <= num_classes}
  features, feature_labels, seen = [], [], 0
  for batch in input_pipeline.eval_batches(
    split, batch_size, preprocess=preprocess
  ):
    out = jax.device_get(
      eval_fn(state, input_pipeline.shard_batch(batch, data_sharding))
    )
    mask = np.asarray(out["mask"])
    labels, top = np.asarray(out["label"])[mask], np.asarray(out["top"])[mask]
    confusion += confusion_matrix(labels, top[:, 0], num_classes)
    for k in hits:
      hits[k] += int((top[:, :k] == labels[:, None]).any(axis=1).sum())
    if feature_every:
      pick = (seen + np.arange(len(labels))) % feature_every == 0
      features.append(np.asarray(out["features"])[mask][pick])
      feature_labels.append(labels[pick])
    seen += len(labels)
  if not feature_every:
    return Evaluation(confusion, hits)
  return Evaluation(
    confusion, hits, np.concatenate(features), np.concatenate(feature_labels)
  )
