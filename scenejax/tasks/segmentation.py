"""The segmentation task of the trainer ([SEG], Jia et al. 2025): its train step, its
eval step and metrics, and the class weights of its focal loss.

`loop.train_and_evaluate` runs it for config.task = "segmentation": the
same loop, mesh, checkpoints and preemption as classification, with this
module's `make_task(...)` in place of scene classification's. Label maps hold
ADE20K-convention ids (1..K, 0 = unlabeled and ignored); logit channel k is
id k + 1.

Loss ([SEG]: "a fused loss of a weighted focal loss and the contrastive
loss"):

  L = FL_w(logits↑, y) + λ · L_con(embeddings, y↓)

FL_w: `losses.weighted_focal_loss` on the logits upsampled to the crop
(bilinear, as DeepLab trains), class weights w from the training maps;
L_con: `losses.pixel_contrastive_loss` on the stride-4 embeddings against
the labels taken by nearest neighbour at that stride. λ =
config.segmentation.contrastive_weight.

References:
  [SEG] X. Jia, Y. Zhang, X. Chang, J. Sun. Scene recognition based on deep
        metric learning and semantic segmentation. Chinese Journal of Liquid
        Crystals and Displays 40(5), 740,
        2025 (only the abstract is public).
  A. Paszke, A. Chaurasia, S. Kim, E. Culurciello. ENet: A Deep Neural
        Network Architecture for Real-Time Semantic Segmentation. 2016.
        arXiv:1606.02147 (the 1 / ln(1.02 + p) weights, "inverse" here).
  D. Eigen, R. Fergus. Predicting Depth, Surface Normals and Semantic Labels
        with a Common Multi-Scale Convolutional Architecture. ICCV 2015.
        doi:10.1109/ICCV.2015.304 (median frequency balancing).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from scenejax import (
  datasets,
  fileio,
  input_pipeline,
  losses,
  models,
)
from scenejax import metrics as metrics_lib
from scenejax.errors import ConfigError
from scenejax.models.segmenter import resize_bilinear
from scenejax.tasks import base

# The report command's page of a workdir of this task.
REPORT = "scenejax.report.run_report:segmentation_report"
TERMS = ("focal", "contrastive")
# config.segmentation.class_weights, besides a path to an NPZ.
CLASS_WEIGHTS = ("uniform", "inverse", "median_frequency")


def config_sections() -> dict[str, ml_collections.ConfigDict]:
  """config.segmentation and its defaults."""
  sections = ml_collections.ConfigDict()
  # config.task = "segmentation" ([SEG]): the
  # DeepLabV3+ architecture, the augmentation, and the fused loss
  # focal + contrastive_weight · contrastive.
  sections.segmentation = ml_collections.ConfigDict(
    dict(
      crop_size=512,  # training crop (padded with unlabeled where smaller)
      base_size=512,  # shorter side before the random scale
      scale_range=(0.5, 2.0),
      jitter=True,  # photometric distortion
      output_stride=16,  # 16 | 8: the backbone's, by dilation
      aspp_rates=(6, 12, 18),  # doubled at output stride 8
      aspp_width=256,
      low_level_width=48,
      decoder_width=256,
      embedding_dim=64,  # D of the pixel embeddings
      focal_gamma=2.0,  # 0 with uniform weights = cross-entropy
      # uniform | inverse | median_frequency (from the training maps,
      # computed once into WORKDIR/class_weights.npz) | a path to an NPZ
      # (key "class_weights") from `python -m scenejax.prototype
      # class_weights`.
      class_weights="median_frequency",
      contrastive_weight=0.1,  # λ; 0 trains with the focal loss only
      contrastive_form="margin",  # margin (Hadsell) | supcon
      margin=1.0,  # margin form: m
      temperature=0.1,  # supcon form: τ
      num_samples=1024,  # sampled pixels per image
      per_class=64,  # at most this many per class and image
    )
  )
  return {k: sections[k] for k in ("segmentation",)}


def build_model(config, num_classes: int) -> nnx.Module:
  """A trainable segmenter with `config.segmentation`'s architecture
  options."""
  if config.model not in models.TRAINABLE_SEGMENTERS:
    raise ConfigError(
      f"config.model = {config.model!r}; config.task = 'segmentation' "
      f"trains one of {', '.join(models.TRAINABLE_SEGMENTERS)}"
    )
  seg = config.segmentation
  return models.create(
    config.model,
    num_classes,
    init_from=config.init_from or None,
    rngs=nnx.Rngs(config.seed),
    dtype=models.DTYPES[config.dtype],
    output_stride=seg.output_stride,
    aspp_rates=tuple(seg.aspp_rates),
    aspp_width=seg.aspp_width,
    low_level_width=seg.low_level_width,
    decoder_width=seg.decoder_width,
    embedding_dim=seg.embedding_dim,
  )


@dataclasses.dataclass(frozen=True)
class SegmentationLoss:
  """The loss settings of config.segmentation (plain values closed over by
  the step)."""

  num_classes: int
  focal_gamma: float
  contrastive_weight: float
  contrastive_form: str
  margin: float
  temperature: float
  num_samples: int
  per_class: int
  seed: int

  @classmethod
  def from_config(cls, config, num_classes: int) -> SegmentationLoss:
    seg = config.segmentation
    return cls(
      num_classes=num_classes,
      focal_gamma=seg.focal_gamma,
      contrastive_weight=seg.contrastive_weight,
      contrastive_form=seg.contrastive_form,
      margin=seg.margin,
      temperature=seg.temperature,
      num_samples=seg.num_samples,
      per_class=seg.per_class,
      seed=config.seed,
    )


def loss_terms(
  logits, embeddings, labels, class_weights, key, cfg: SegmentationLoss
) -> dict:
  """{"focal", "contrastive"}: the weighted terms; their sum is the loss.

  logits (B, h, w, K) and embeddings (B, h, w, D) at the decoder's stride;
  labels (B, H, W) ids at the crop's size.
  """
  full = resize_bilinear(logits.astype(jnp.float32), labels.shape[1:3])
  terms = {
    "focal": losses.weighted_focal_loss(
      full, labels, class_weights, gamma=cfg.focal_gamma
    )
  }
  if cfg.contrastive_weight:
    terms["contrastive"] = cfg.contrastive_weight * (
      losses.pixel_contrastive_loss(
        embeddings,
        labels,
        key,
        num_classes=cfg.num_classes,
        num_samples=cfg.num_samples,
        per_class=cfg.per_class,
        form=cfg.contrastive_form,
        margin=cfg.margin,
        temperature=cfg.temperature,
      )
    )
  return terms


def train_step(
  graphdef, state, batch, epoch, class_weights, *, cfg, mean, std
) -> tuple[nnx.State, dict]:
  """One optimizer step on a batch of crops and label maps. Pure. The
  contrastive loss's pixel sample is keyed by (seed, optimizer step), so a
  resumed run draws what an uninterrupted one does."""
  del epoch  # no per-epoch schedule in the loss
  model, optimizer = nnx.merge(graphdef, state)
  images = input_pipeline.normalize(batch["image"], mean, std)
  labels = batch["label"].astype(jnp.int32)
  key = jax.random.fold_in(jax.random.key(cfg.seed), optimizer.step[...])

  def loss_fn(model):
    logits, embeddings = model.decode_with_embeddings(images)
    terms = loss_terms(logits, embeddings, labels, class_weights, key, cfg)
    return sum(terms.values()), (terms, logits)

  grads, (terms, logits) = nnx.grad(loss_fn, has_aux=True)(model)
  optimizer.update(model, grads)
  metrics = dict(terms, loss=sum(terms.values()))
  # Pixel accuracy of the labelled pixels at the decoder's stride.
  small = losses.nearest_labels(labels, logits.shape[1:3])
  labelled = (small >= 1) & (small <= cfg.num_classes)
  hits = (jnp.argmax(logits, -1) + 1 == small) & labelled
  metrics["pixel_accuracy"] = hits.sum() / jnp.maximum(labelled.sum(), 1)
  return nnx.state((model, optimizer)), metrics


def eval_step(graphdef, state, batch, *, num_classes, mean, std) -> jax.Array:
  """(K, K) int32 confusion counts [truth - 1, predicted - 1] of one batch,
  over the labelled pixels of the unpadded examples."""
  model = nnx.merge(graphdef, state)[0]
  model.eval()
  images = input_pipeline.normalize(batch["image"], mean, std)
  predicted = jnp.argmax(model(images), -1)
  truth = batch["label"].astype(jnp.int32)
  keep = (truth >= 1) & (truth <= num_classes) & batch["mask"][:, None, None]
  index = jnp.where(keep, (truth - 1) * num_classes + predicted, 0)
  counts = jnp.bincount(
    index.ravel(), weights=keep.ravel().astype(jnp.int32),
    length=num_classes * num_classes,
  )  # fmt: skip
  return counts.reshape(num_classes, num_classes).astype(jnp.int32)


# --------------------------------------------------------------------------
# Class weights of the focal loss.


def class_frequencies(label_maps, num_classes: int) -> np.ndarray:
  """(K,) int64 pixel counts of ids 1..K over `label_maps` (0 ignored)."""
  counts = np.zeros(num_classes + 1, np.int64)
  for label_map in label_maps:
    ids = np.asarray(label_map).ravel()
    counts += np.bincount(ids[ids <= num_classes], minlength=num_classes + 1)
  return counts[1:]


def class_weights_from_counts(counts, method: str) -> np.ndarray:
  """(K,) float32 focal-loss weights from pixel counts.

  median_frequency (Eigen & Fergus): w_k = median(f) / f_k, f_k = n_k / N
  over the classes present; inverse (ENet): w_k = 1 / ln(1.02 + f_k)
  (bounded, unlike 1 / f_k: 1.42 .. 50.5); uniform: 1. A class absent
  from the training maps gets weight 0 (it has no pixel to weigh).
  """
  counts = np.asarray(counts, np.float64)
  present = counts > 0
  if method == "uniform":
    return np.ones(len(counts), np.float32)
  if not present.any():
    raise ConfigError("the training label maps have no labelled pixel")
  freq = counts / counts.sum()
  weights = np.zeros(len(counts))
  if method == "median_frequency":
    weights[present] = np.median(freq[present]) / freq[present]
  elif method == "inverse":
    weights[present] = 1.0 / np.log(1.02 + freq[present])
  else:
    raise ConfigError(
      f"config.segmentation.class_weights = {method!r}; expected one of "
      f"{CLASS_WEIGHTS} or a path to an NPZ"
    )
  return weights.astype(np.float32)


def save_class_weights(path: str, weights, counts, method: str, names) -> None:
  arrays = dict(
    class_weights=np.asarray(weights, np.float32),
    pixel_counts=np.asarray(counts, np.int64),
    method=np.str_(method),
    class_names=np.asarray(list(names), np.str_),
  )
  fileio.atomic_write(path, lambda f: np.savez(f, **arrays))


def load_class_weights(path: str, num_classes: int) -> np.ndarray:
  try:
    with np.load(path, allow_pickle=False) as f:
      weights = np.asarray(f["class_weights"], np.float32)
  except FileNotFoundError:
    raise ConfigError(
      f"config.segmentation.class_weights = {path!r}: no such file"
    ) from None
  except KeyError:
    raise ConfigError(
      f"{path}: no key 'class_weights' (write the file with python -m "
      "scenejax.prototype class_weights)"
    ) from None
  except (OSError, ValueError) as e:
    raise ConfigError(f"{path}: not a readable NPZ ({e})") from None
  if (
    weights.shape != (num_classes,)
    or not np.all(np.isfinite(weights))
    or np.any(weights < 0)
    or not np.any(weights > 0)
  ):
    raise ConfigError(
      f"{path}: class_weights has shape {weights.shape}, expected "
      f"({num_classes},) finite, non-negative values, not all 0, for this "
      "dataset's classes"
    )
  return weights


def class_weights_for(config, data, workdir: str) -> np.ndarray:
  """The run's focal-loss weights: uniform, a file, or computed once from
  the training label maps into WORKDIR/class_weights.npz (reused by a
  resumed run)."""
  method = config.segmentation.class_weights
  num_classes = len(data.class_names)
  if method == "uniform":
    return np.ones(num_classes, np.float32)
  if method not in CLASS_WEIGHTS:
    return load_class_weights(method, num_classes)
  path = os.path.join(workdir, "class_weights.npz")
  if os.path.exists(path):
    try:
      with np.load(path, allow_pickle=False) as f:
        reuse = "method" in f.files and str(f["method"]) == method
    except (OSError, ValueError):
      reuse = False  # unreadable: computed again and replaced
    if reuse:
      return load_class_weights(path, num_classes)
  counts = class_frequencies(data.train.label_maps(), num_classes)
  weights = class_weights_from_counts(counts, method)
  if jax.process_index() == 0:
    save_class_weights(path, weights, counts, method, data.class_names)
  return weights


# --------------------------------------------------------------------------
# The task the loop runs.


def load_data(config: ml_collections.ConfigDict):
  """The run's dataset (`datasets.segmentation_from_config`)."""
  return datasets.segmentation_from_config(config)


def make_task(
  config: ml_collections.ConfigDict, data, graphdef, mesh, pixel_stats
):
  """`base.Task` of config.task = "segmentation" for `data` (a
  `datasets.segmentation_from_config` dataset)."""
  num_classes = len(data.class_names)
  if num_classes > 255:
    raise ConfigError(
      f"{num_classes} classes: label maps travel as uint8 (ids <= 255)"
    )
  seg = config.segmentation
  cfg = SegmentationLoss.from_config(config, num_classes)
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P("data"))
  mean, std = pixel_stats
  step = base.jit_step(
    functools.partial(train_step, graphdef, cfg=cfg, mean=mean, std=std), mesh
  )
  count = jax.jit(
    functools.partial(
      eval_step, graphdef, num_classes=num_classes, mean=mean, std=std
    ),
    in_shardings=(replicated, batch_sharding),
    out_shardings=replicated,
  )
  options = dict(crop_size=seg.crop_size, on_corrupt=config.data.on_corrupt)
  train_preprocess = input_pipeline.SegmentationPreprocess(
    train=True,
    base_size=seg.base_size,
    scale_range=tuple(seg.scale_range),
    jitter=seg.jitter,
    **options,
  )
  eval_preprocess = input_pipeline.SegmentationPreprocess(
    train=False, **options
  )

  def evaluate(state):
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for batch in input_pipeline.eval_batches(
      data.test,
      config.eval_batch_size // jax.process_count(),
      preprocess=eval_preprocess,
    ):
      counts = count(state, input_pipeline.shard_batch(batch, batch_sharding))
      confusion += np.asarray(jax.device_get(counts), np.int64)
    metrics = metrics_lib.segmentation_metrics(confusion)
    return (
      dict(
        mIoU=metrics["mIoU"],
        pixel_accuracy=metrics["pixel_accuracy"],
        per_class_iou=metrics["per_class_iou"],
      ),
      confusion,
    )

  def prepare(workdir):
    weights = class_weights_for(config, data, workdir)
    return jax.device_put(jnp.asarray(weights), replicated)

  return base.Task(
    step=step,
    evaluate=evaluate,
    prepare=prepare,
    terms=[t for t in TERMS if t == "focal" or seg.contrastive_weight],
    columns=(
      ("train_pixel_accuracy", "train pix", "9.3f"),
      ("mIoU", "mIoU", "9.3f"),
      ("pixel_accuracy", "pixel acc", "9.3f"),
    ),
    best_metric="mIoU",
    train_preprocess=train_preprocess,
    eval_preprocess=eval_preprocess,
  )


def validate(config, check) -> None:
  """config.segmentation and what a segmentation run needs
  (`config_lib.Checks`)."""
  if config.dataset in datasets.MULTILABEL_ONLY:
    raise ConfigError(
      f"config.dataset = {config.dataset!r} has object labels, not scene "
      "labels: set config.task = 'multilabel'"
    )
  check.one_of("config.model", models.TRAINABLE_SEGMENTERS)
  seg = "config.segmentation."
  for name in (
    "crop_size",
    "base_size",
    "aspp_width",
    "low_level_width",
    "decoder_width",
    "embedding_dim",
    "num_samples",
    "per_class",
  ):
    check.at_least(seg + name, 1)
  for name in ("focal_gamma", "contrastive_weight", "margin"):
    check.at_least(seg + name, 0)
  check.one_of(seg + "output_stride", (8, 16, 32))
  check.one_of(seg + "contrastive_form", losses.PIXEL_CONTRASTIVE_FORMS)
  check.between(seg + "temperature", 1e-6, 100.0)
  scale = config.segmentation.scale_range
  if not (
    isinstance(scale, (tuple, list))
    and len(scale) == 2
    and all(isinstance(v, (int, float)) for v in scale)
    and 0 < scale[0] <= scale[1]
  ):
    raise ConfigError(
      f"config.segmentation.scale_range = {scale!r}; need two numbers "
      "0 < low <= high"
    )
  weights = config.segmentation.class_weights
  if weights not in CLASS_WEIGHTS and not os.path.isfile(weights):
    raise ConfigError(
      f"config.segmentation.class_weights = {weights!r}: neither one of "
      f"{' | '.join(CLASS_WEIGHTS)} nor an existing file (write "
      "one with python -m scenejax.prototype class_weights)"
    )
  if config.optimizer.backbone_learning_rate and tuple(
    map(tuple, config.optimizer.param_groups)
  ) == tuple(map(tuple, check.defaults.optimizer.param_groups)):
    raise ConfigError(
      f"config.optimizer.backbone_learning_rate = "
      f"{config.optimizer.backbone_learning_rate}: with the default "
      "param_groups only the segmenter's 1x1 classifier would get "
      "config.optimizer.learning_rate, and its ASPP, decoder and embedding "
      "head the backbone's rate. Set backbone_learning_rate = 0 (one rate, "
      "as the shipped configs), or param_groups such as (('head', "
      "r'(aspp|low_level|refine|head|embedding)/.*'), ('backbone', '.*'))"
    )
  if config.loss.pcl:
    raise ConfigError(
      "config.loss.pcl is a classification loss; it does not apply to "
      "config.task = 'segmentation'"
    )


def apply_variant(config, arg: str):
  """config.task = "segmentation": a comma list of
  ce (γ = 0, uniform weights, no contrastive term: plain cross-entropy),
  focal (no contrastive term), uniform (uniform class weights),
  supcon (the SupCon form of the contrastive term)."""
  seg = config.segmentation
  for token in (t.strip() for t in arg.split(",") if t.strip()):
    if token == "ce":
      seg.focal_gamma, seg.class_weights, seg.contrastive_weight = (
        0.0,
        "uniform",
        0.0,
      )
    elif token == "focal":
      seg.contrastive_weight = 0.0
    elif token == "uniform":
      seg.class_weights = "uniform"
    elif token == "supcon":
      seg.contrastive_form = "supcon"
    else:
      raise ConfigError(
        f"unknown config argument {token!r} in {arg!r}; a segmentation "
        "config takes ce, focal, uniform, supcon"
      )
  return config
