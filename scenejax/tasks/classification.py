"""Scene classification ([SP], [PCL], SAS-Net's metrics): the loss
composition (GLS / LSR / CE targets, BCL, the classic-CL baseline, PCL),
the train step, the run's prototype, the eval step and the one loop over an
evaluation split, and the `Task` the training loop runs.

The train step is one jitted function over a `jax.sharding.Mesh` of all
devices: the model and optimizer state are replicated, the batch is split
along "data", and XLA inserts the collectives. The losses see the global
batch, so BCL and BatchNorm statistics are the same on 1 or 8 devices. The
GLS epoch is a traced scalar: one compile per run.

The evaluation loop counts exact integers over the whole split (the padded
last batch is masked out), so Top-k and MCA do not depend on the batch size
or the device count. With `feature_every` it also keeps the penultimate
features of every k-th image (the report's t-SNE), from the same pass.

References:
  [SP]  C. Song, H. Wu, X. Ma, Y. Li. Semantic-embedded Similarity Prototype
        for Scene Recognition. Pattern Recognition, 2024. arXiv:2308.05896.
  [PCL] G. Chen, X. Song, B. Wang, S. Jiang. See More for Scene: Pairwise
        Consistency Learning for Scene Classification. NeurIPS 2021.
  [SAS] A. López-Cifuentes, M. Escudero-Viñolo, J. Bescós, Á. García-Martín.
  Semantic-Aware Scene Recognition. Pattern Recognition 102, 2020.
  doi:10.1016/j.patcog.2020.107256.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from scenejax import (
  datasets,
  fileio,
  input_pipeline,
  losses,
  metrics,
  models,
  prototype,
)
from scenejax.errors import ConfigError
from scenejax.models import pcl
from scenejax.tasks.base import Task, jit_step, update
from scenejax.training import checkpoints


def config_sections() -> dict[str, ml_collections.ConfigDict]:
  """This task's config sections and defaults ([SP]'s recipe): config.loss
  (the loss composition) and config.prototype (where S comes from)."""
  sections = ml_collections.ConfigDict()
  sections.loss = ml_collections.ConfigDict(
    dict(
      labels="gls",  # ce | lsr | gls: targets of the CE term
      num_soft_epochs=20,  # GLS STEP ([SP] Algorithm 2)
      final_confidence=0.99,
      lsr_alpha=0.1,
      bcl_weight=1.0,  # 0 disables BCL ([SP] Eq. 16 uses 1)
      bcl_metric="cosine",
      bcl_reduction="mean_inter",
      bcl_pairing="gather",  # or "product", the literal Eq. 11
      cl_weight=0.0,  # classic contrastive loss baseline
      pcl=False,  # pairwise consistency ([PCL] Eq. 3)
      pcl_alpha=1.0,  # weight of the erased image's CE
      pcl_beta=2.0,  # weight of KL(q || p)
      pcl_gamma=0.7,  # CAM threshold ([PCL] Eq. 2)
      pcl_cam_stage=-1,  # -1: input of the last down-sampling stage
    )
  )
  # An NPZ from `python -m scenejax.prototype` ("{metric}" is replaced by
  # `metric`); or, with path '', a segmenter (`scenejax.models.SEGMENTERS`)
  # and its checkpoint segment the training images into
  # WORKDIR/prototype.npz before training ([SP] §3.2; resumable, reused by
  # later runs of the workdir); with neither, the synthetic scenes' label
  # maps are used.
  sections.prototype = ml_collections.ConfigDict(
    dict(
      path="",
      metric="cosine",
      segmenter="",
      init_from="",
      size=512,  # shorter side the images are resized to for segmenting
      window=0,  # > 0: sliding-window inference with crops of this size
      batch_size=8,  # images per segmenter step, per process
      dtype="float32",  # the segmenter's compute dtype
    )
  )
  return {k: sections[k] for k in ("loss", "prototype")}


def build_model(config, num_classes: int) -> nnx.Module:
  """The model of a training config: `config.model` with `config.init_from`
  and `config.dtype`, wrapped in the PCL model when `config.loss.pcl`."""
  if config.model not in models.CLASSIFIERS + models.SEMANTIC_AWARE:
    raise ConfigError(
      f"config.model = {config.model!r}; expected a classifier, one of "
      f"{', '.join(models.CLASSIFIERS + models.SEMANTIC_AWARE)}"
    )
  if config.dtype not in models.DTYPES:
    raise ConfigError(
      f"config.dtype = {config.dtype!r}; expected one of {sorted(models.DTYPES)}"
    )
  options = dict(dtype=models.DTYPES[config.dtype])
  if config.model.startswith("vit"):  # position embeddings fit the input
    options["image_size"] = config.data.image_size
  model = models.create(
    config.model,
    num_classes,
    init_from=config.init_from or None,
    rngs=nnx.Rngs(config.seed),
    **options,
  )
  if config.loss.pcl:
    stage = config.loss.pcl_cam_stage
    model = pcl.PCLModel(
      model,
      num_classes,
      cam_stage=None if stage == -1 else stage,
      gamma=config.loss.pcl_gamma,
      rngs=nnx.Rngs(config.seed + 1),
    )
  return model


# The targets of the CE term: hard, smoothed, GLS soft labels.
LABELS = ("ce", "lsr", "gls")


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """The loss composition, from `config.loss` (defaults live in
  `config_lib.base()` only); plain Python values closed over by the step."""

  labels: str  # ce | lsr | gls: targets of the CE term
  num_soft_epochs: int  # GLS STEP ([SP] Algorithm 2)
  final_confidence: float
  lsr_alpha: float
  bcl_weight: float  # 0 disables BCL ([SP] Eq. 16 uses 1)
  bcl_metric: str
  bcl_reduction: str
  bcl_pairing: str
  cl_weight: float  # classic contrastive loss baseline
  pcl: bool  # pairwise consistency learning ([PCL] Eq. 3)
  pcl_alpha: float  # weight of the erased image's CE
  pcl_beta: float  # weight of KL(q || p)
  pcl_gamma: float  # CAM threshold γ ([PCL] Eq. 2)
  pcl_cam_stage: int  # -1: the input of the last down-sampling stage

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> LossConfig:
    return cls(**{f.name: config[f.name] for f in dataclasses.fields(cls)})

  @classmethod
  def with_defaults(cls, **overrides) -> LossConfig:
    """`config_lib.base()`'s loss with `overrides` (tests, benchmarks)."""
    return dataclasses.replace(
      cls.from_config(config_sections()["loss"]), **overrides
    )


def loss_terms(
  logits,
  labels,
  similarity,
  epoch,
  cfg: LossConfig,
  *,
  pcl_logits: dict | None = None,
) -> dict:
  """The weighted loss terms of one batch; their sum is the training loss.

  "ce": softmax cross-entropy against hard (ce), smoothed (lsr, [SP]
  Table 1 baseline) or GLS soft labels ([SP] Eq. 9); "bcl": [SP] Eq. 10-15
  on the softmax probabilities (see `losses.bcl_loss` on why not logits);
  "cl": the classic-CL baseline ([SP] Table 2); with `pcl_logits` ({"side",
  "mod"}), "side", "mod" and "kl": the other terms of [PCL] Eq. 3, against
  the same targets as "ce".
  """
  num_classes = logits.shape[-1]
  if cfg.labels == "gls":
    label_matrix = losses.gls_label_matrix(
      similarity, epoch, cfg.num_soft_epochs, cfg.final_confidence
    )
    targets = label_matrix[labels]
  elif cfg.labels == "lsr":
    targets = losses.label_smoothing_targets(labels, num_classes, cfg.lsr_alpha)
  else:
    targets = jax.nn.one_hot(labels, num_classes)
  terms = {"ce": optax.softmax_cross_entropy(logits, targets).mean()}
  probs = jax.nn.softmax(logits)
  if cfg.bcl_weight:
    terms["bcl"] = cfg.bcl_weight * losses.bcl_loss(
      probs,
      labels,
      similarity,
      metric=cfg.bcl_metric,
      reduction=cfg.bcl_reduction,
      pairing=cfg.bcl_pairing,
    )
  if cfg.cl_weight:
    terms["cl"] = cfg.cl_weight * losses.contrastive_loss(
      probs, labels, metric=cfg.bcl_metric
    )
  if pcl_logits is not None:
    _, parts = losses.pcl_loss(
      logits,
      pcl_logits["side"],
      pcl_logits["mod"],
      targets,
      cfg.pcl_alpha,
      cfg.pcl_beta,
    )
    terms["side"] = parts["side"]
    terms["mod"] = cfg.pcl_alpha * parts["mod"]
    terms["kl"] = cfg.pcl_beta * parts["kl"]
  return terms


def train_step(
  graphdef, state, batch, epoch, similarity, *, loss_cfg: LossConfig, mean, std
) -> tuple[nnx.State, dict[str, jax.Array]]:
  """One optimizer step. Pure: (state, batch) -> (new state, metrics)."""
  model, optimizer = nnx.merge(graphdef, state)
  images = input_pipeline.normalize(batch["image"], mean, std)
  labels = batch["label"]

  def loss_fn(model):
    if loss_cfg.pcl:
      outputs = model.pcl_outputs(images)
      logits = outputs["main"].astype(jnp.float32)
      terms = loss_terms(
        logits, labels, similarity, epoch, loss_cfg, pcl_logits=outputs
      )
    else:
      logits = model(images).astype(jnp.float32)
      terms = loss_terms(logits, labels, similarity, epoch, loss_cfg)
    return sum(terms.values()), (terms, logits)

  return update(model, optimizer, loss_fn, labels)


def jit_train_step(
  graphdef, loss_cfg: LossConfig, mesh, pixel_stats
) -> jax.stages.Wrapped:
  """`train_step` jitted for `mesh` (`jit_step`), the prototype as aux.
  Images are normalised with the statistics the model's weights expect
  (`model.pixel_mean/std`: ImageNet's, or [-1, 1] for big_vision ViTs)."""
  return jit_step(
    functools.partial(
      train_step,
      graphdef,
      loss_cfg=loss_cfg,
      mean=pixel_stats[0],
      std=pixel_stats[1],
    ),
    mesh,
  )


def prototype_for(
  config: ml_collections.ConfigDict,
  data: datasets.Dataset,
  workdir: str | None = None,
) -> prototype.Prototype:
  """The run's prototype ([SP] Algorithm 1, Eq. 1-4), in this order:

  - `config.prototype.path` (with "{metric}" replaced by
    `config.prototype.metric`), checked against the dataset's classes and
    the metric;
  - `config.prototype.segmenter`: WORKDIR/prototype.npz if an earlier run
    of the workdir built it, else the training images segmented now
    (`scenejax.prototype.segmented`; partial sums in
    WORKDIR/prototype.npz.partial/, so a preempted build resumes);
  - the synthetic scenes' training label maps.
  """
  metric = config.prototype.metric
  if config.prototype.path:
    path = prototype_path(config)
    return prototype.with_class_names(
      prototype.load_prototype(
        path, class_names=data.class_names, metric=metric
      ),
      data.class_names,
    )
  if config.prototype.segmenter:
    if workdir is None:
      raise ConfigError("config.prototype.segmenter needs a workdir")
    return _prototype_from_segmenter(config, data, workdir)
  if data.spec is None:
    raise ConfigError(
      f"config.prototype.path is empty and {config.dataset!r} is not the "
      "synthetic dataset: build the prototype first (python -m "
      "scenejax.prototype build --images=DIR/train --segmenter=... for an "
      "image folder, --dataset=NAME --segmenter=... for a prepared one) and "
      "set config.prototype.path, or set config.prototype.segmenter "
      "(+ init_from) to build it here, or train without one (variant ce)"
    )
  spec = data.spec
  return prototype.build_prototype(
    data.train.label_maps,
    data.train.labels,
    spec.class_names,
    metric=metric,
    num_semantic_classes=spec.num_semantic_classes,
    semantic_class_names=spec.semantic_class_names,
  )


def _prototype_from_segmenter(config, data, workdir) -> prototype.Prototype:
  """WORKDIR/prototype.npz built from `config.prototype.segmenter`'s maps of
  the training images, or reused when WORKDIR/prototype_build.json shows
  an earlier run built it with the same segmenter, weights and settings
  (another metric is derived from the stored Eq. 1 representations)."""
  from scenejax.prototype import segmented

  cfg = config.prototype
  if cfg.batch_size % jax.local_device_count():
    raise ConfigError(
      f"config.prototype.batch_size = {cfg.batch_size} must be a multiple "
      f"of the {jax.local_device_count()} local devices"
    )
  settings = dict(
    segmenter=cfg.segmenter,
    init_from=cfg.init_from,
    size=cfg.size,
    window=cfg.window,
    dtype=cfg.dtype,
  )
  wanted = segmented.build_fingerprint(data, dataset=config.dataset, **settings)
  out = os.path.join(workdir, "prototype.npz")
  record = os.path.join(workdir, "prototype_build.json")
  exists = os.path.exists(out)
  if jax.process_count() > 1:  # process 0 decides, so no host waits alone
    from jax.experimental import multihost_utils

    exists = bool(multihost_utils.broadcast_one_to_all(np.int32(exists)))
  if exists:
    try:
      with open(record) as f:
        built = json.load(f)
    except (OSError, ValueError):
      built = None
    if built != json.loads(json.dumps(wanted)):
      raise ConfigError(
        f"{out} was not built by config.prototype.segmenter with these "
        f"settings (its record {record}: {built}; this run: {wanted}). "
        "Delete both files to rebuild, or use another workdir"
      )
    proto = prototype.load_prototype(out, class_names=data.class_names)
    if proto.metric != config.prototype.metric:
      proto = prototype.prototype_from_representation(
        proto, config.prototype.metric
      )
    if jax.process_index() == 0:
      print(f"prototype: {out}, built by an earlier run (reused)")
    return prototype.with_class_names(proto, data.class_names)
  proto, stats = segmented.build_for_dataset(
    data,
    dataset=config.dataset,
    out=out,
    metric=config.prototype.metric,
    batch_size=cfg.batch_size,
    progress=config.progress_bar,
    **settings,
  )
  if jax.process_index() == 0:
    fileio.write_text(record, json.dumps(wanted, indent=1))
    print(
      f"prototype: {out} from {stats['images']} images segmented by "
      f"{cfg.segmenter} ({stats['images_per_s']:.1f} images/s in process 0"
      + (
        f"; {stats['skipped']} undecodable, skipped" if stats["skipped"] else ""
      )
      + ")"
    )
  return prototype.with_class_names(proto, data.class_names)


def load_data(config: ml_collections.ConfigDict) -> datasets.Dataset:
  """The run's scene dataset (`datasets.from_config`)."""
  return datasets.from_config(config)


def make_task(
  config,
  data,
  graphdef,
  mesh,
  pixel_stats,
  *,
  step=None,
  eval_fn=None,
  sources=None,
) -> Task:
  """Scene classification with GLS / BCL / PCL ([SP], [PCL]): `train_step`
  against the run's prototype, Top-k and MCA (`evaluate`, below).
  `step`, `eval_fn` and the (train, eval) `sources` replace the jitted
  train and eval steps and `data`'s splits (SAS-Net's, with its semantic
  files: `scenejax.tasks.semantic_aware`)."""
  train_source, eval_source = sources or (data.train, data.test)
  loss_cfg = LossConfig.from_config(config.loss)
  train_preprocess, eval_preprocess = input_pipeline.preprocessors(config, data)
  # A segmenter build can take hours: it runs in `prepare`, once the run's
  # own checks passed and the workdir is locked; a prototype file is
  # checked now.
  build_later = bool(config.prototype.segmenter) and not config.prototype.path
  # A loss without S (ce / lsr, no BCL) on a real dataset trains without a
  # prototype: S is then a placeholder the loss never reads.
  unused = not (loss_cfg.labels == "gls" or loss_cfg.bcl_weight) and not (
    config.prototype.path or config.prototype.segmenter or data.spec is not None
  )
  early = None if build_later or unused else prototype_for(config, data, None)
  eval_fn = eval_fn or jit_eval_step(graphdef, mesh, pixel_stats)
  data_sharding = NamedSharding(mesh, P("data"))

  def evaluate_state(state):
    result = evaluate(
      eval_fn,
      state,
      eval_source,
      batch_size=config.eval_batch_size // jax.process_count(),
      num_classes=data.num_classes,
      data_sharding=data_sharding,
      preprocess=eval_preprocess,
    )
    return result.metrics(), result.confusion

  def prepare(workdir):
    if unused:
      return jax.device_put(
        jnp.eye(data.num_classes, dtype=jnp.float32), NamedSharding(mesh, P())
      )
    proto = early if early is not None else prototype_for(config, data, workdir)
    if jax.process_index() == 0 and not config.prototype.path:
      prototype.save_prototype(os.path.join(workdir, "prototype.npz"), proto)
    return jax.device_put(
      jnp.asarray(proto.similarity), NamedSharding(mesh, P())
    )

  return Task(
    step=step or jit_train_step(graphdef, loss_cfg, mesh, pixel_stats),
    evaluate=evaluate_state,
    prepare=prepare,
    terms=loss_term_names(loss_cfg),
    columns=(
      ("train_accuracy", "train acc", "9.3f"),
      ("top1", "Top-1", "9.3f"),
      ("mean_class_accuracy", "MCA", "9.3f"),
    ),
    best_metric="top1",
    train_preprocess=train_preprocess,
    eval_preprocess=eval_preprocess,
    train_source=train_source,
  )


def loss_term_names(cfg: LossConfig) -> list[str]:
  return (
    ["ce"]
    + (["bcl"] if cfg.bcl_weight else [])
    + (["cl"] if cfg.cl_weight else [])
    + (["side", "mod", "kl"] if cfg.pcl else [])
  )


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
      "(scenejax.tasks.semantic_aware); the report's evaluation and export do "
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


@dataclasses.dataclass
class Evaluation:
  """What one pass over an evaluation split counted."""

  confusion: np.ndarray  # (C, C) int64
  topk_hits: dict[int, int]  # k -> examples with label in top k
  features: np.ndarray | None = None  # (N', D) of every k-th image
  feature_labels: np.ndarray | None = None

  def metrics(self) -> dict:
    return metrics.accuracy_metrics(self.confusion, self.topk_hits)


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
    confusion += metrics.confusion_matrix(labels, top[:, 0], num_classes)
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


def apply_variant(
  config: ml_collections.ConfigDict, arg: str
) -> ml_collections.ConfigDict:
  """A comma list of ce | lsr | gls (the CE term's targets; naming one
  lists every term wanted, the others start off), bcl[=REDUCTION] ([SP]
  Eq. 10-15), cl (the classic contrastive-loss baseline), pcl ([PCL] Eq.
  3), euclidean (the exp(-euclidean) prototype and BCL metric)."""
  loss = config.loss
  tokens = [t.strip() for t in arg.split(",") if t.strip()]
  if any(t in LABELS for t in tokens):
    loss.bcl_weight, loss.cl_weight, loss.pcl = 0.0, 0.0, False
  for token in tokens:
    name, _, value = token.partition("=")
    if name in LABELS and not value:
      loss.labels = name
    elif name == "bcl":
      loss.bcl_weight = 1.0
      if value:
        if value not in losses.BCL_REDUCTIONS:
          raise ConfigError(
            f"config argument {token!r}: BCL reduction must "
            f"be one of {losses.BCL_REDUCTIONS}"
          )
        loss.bcl_reduction = value
    elif name == "cl" and not value:
      loss.cl_weight = 1.0
    elif name == "pcl" and not value:
      loss.pcl = True
    elif name == "euclidean" and not value:
      loss.bcl_metric = "euclidean"
      config.prototype.metric = "euclidean"
    else:
      raise ConfigError(
        f"unknown config argument {token!r} in {arg!r}; "
        "expected ce|lsr|gls, bcl[=reduction], cl, pcl, "
        "euclidean"
      )
  return config


def prototype_path(config: ml_collections.ConfigDict) -> str:
  """`config.prototype.path` with "{metric}" replaced."""
  return config.prototype.path.replace("{metric}", config.prototype.metric)


def validate(config, check) -> None:
  """What a scene-classification run needs beyond the common fields
  (`config_lib.Checks`): a dataset with scene labels."""
  del check  # the loss and prototype fields are checked by config_lib
  if config.dataset == "cityscapes":
    raise ConfigError(
      "config.dataset = 'cityscapes' has label maps, not scene labels: "
      "set config.task = 'segmentation'"
    )
  if config.dataset in datasets.MULTILABEL_ONLY:
    raise ConfigError(
      f"config.dataset = {config.dataset!r} has object labels, not scene "
      "labels: set config.task = 'multilabel'"
    )


def evaluate_checkpoint(
  workdir: str, config, step: int | None, *, ten_crop: bool, head=None
) -> dict:
  """Top-1/2/5 and MCA of checkpoint `step` (default: best Top-1) of a
  scene-classification workdir over its evaluation split, with the
  confusion matrix (rows: true class)."""
  if head is not None:
    raise ConfigError(
      f"--head={head}: {workdir} trained {config.model}, which has one "
      "head; --head is for SAS-Net workdirs"
    )
  data = load_data(config)
  _, eval_preprocess = input_pipeline.preprocessors(config, data)
  mesh, graphdef, state, step, pixel_stats = checkpoints.restore_for_eval(
    workdir, data.num_classes, step
  )
  return checkpoint_result(
    config,
    data,
    jit_eval_step(graphdef, mesh, pixel_stats),
    state,
    data.test,
    mesh,
    eval_preprocess,
    step=step,
    ten_crop=ten_crop,
  )


def checkpoint_result(
  config, data, eval_fn, state, source, mesh, preprocess, **fields
) -> dict:
  """`fields`, the metrics of one `evaluate` pass of `eval_fn` over
  `source`, and the confusion matrix: what `evaluate_checkpoint` returns
  (SAS-Net's too)."""
  result = evaluate(
    eval_fn,
    state,
    source,
    batch_size=config.eval_batch_size // jax.process_count(),
    num_classes=data.num_classes,
    data_sharding=NamedSharding(mesh, P("data")),
    preprocess=preprocess,
  )
  return dict(**fields, **result.metrics(), confusion=result.confusion.tolist())
