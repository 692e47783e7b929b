"""The report of a training workdir (`python -m scenejax.report
--workdir=...`): classification, segmentation ([SEG]) or multi-label
([SADCL]) by the run's task."""

from __future__ import annotations

import importlib
import os

import numpy as np

from scenejax import metrics as metrics_lib
from scenejax import prototype as prototype_lib
from scenejax.errors import UserError
from scenejax.prototype import published
from scenejax.report.html_page import _img, _p, write_html
from scenejax.report.proto_report import _class_indices, _prototype_sections
from scenejax.report.run_data import (
  model_pass,
  read_history,
  sampled_pixel_embeddings,
  tsne,
)
from scenejax.report.run_plots import (
  plot_class_iou,
  plot_confusion,
  plot_embedding,
  plot_pixel_embeddings,
  plot_segmentation_examples,
  plot_similarity_vs_confusion,
  plot_training_curves,
  similarity_vs_confusion,
)


def _run_record(workdir, out):
  """(the report's directory, created; the run's config; its epochs from
  metrics.jsonl, at least one)."""
  from scenejax.training import checkpoints

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
  # Deferred: a prototype-only report needs no model, dataset or task.
  from scenejax import datasets, input_pipeline, segment, tasks

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
  initial = tasks.build_model(config, len(names))
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
  from scenejax.training import checkpoints

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
  from scenejax import datasets, tasks
  from scenejax.tasks import classification
  from scenejax.training import checkpoints

  config = checkpoints.read_workdir_config(workdir)
  # A task with its own page names it ("module:function", loaded by name).
  page = getattr(tasks.for_config(config), "REPORT", None)
  if page:
    module, _, function = page.partition(":")
    return getattr(importlib.import_module(module), function)(workdir, out)
  out = out or os.path.join(workdir, "report")
  os.makedirs(out, exist_ok=True)
  history = read_history(workdir)
  if not history:
    raise UserError(f"{workdir}/metrics.jsonl is empty: no finished epoch")
  data = datasets.from_config(config)
  data_names = data.class_names
  proto_path = (
    classification.prototype_path(config)
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
  metrics = metrics_lib.accuracy_metrics(confusion, {})
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
