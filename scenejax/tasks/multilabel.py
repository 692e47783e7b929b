"""The multi-label task of the trainer ([SADCL], Ma et al. 2023): its train
step, its eval step and metrics.

`loop.train_and_evaluate` runs it for config.task = "multilabel": the
same loop, mesh, checkpoints and preemption as classification, with this
module's `make_task(...)`. Labels are (K,) 0/1 presence vectors
(`scenejax.datasets.multilabel`); the model is `models.sadcl.SADCLModel`
(config.model's backbone under the SARL head).

Loss ([SADCL]: classification loss plus the two contrastive losses):

  L = L_cls(s, y) + λ₁ · SSCL(r, y) + λ₂ · PSCL(r, y, P)

L_cls: the asymmetric loss ([ASL] Eq. 4, `losses.asymmetric_loss`) or
binary cross-entropy (its γ+ = γ- = m = 0 case), summed over the K labels
and averaged over the batch; SSCL, PSCL: `losses.label_contrastive_loss`,
`losses.prototype_contrastive_loss` on the label-level representations r
(B, K, D) of the global batch (every device's images, as BCL), with
temperature τ; P the model's category prototypes (learnable, or an EMA
updated after each step). λ₁, λ₂ = config.multilabel.sscl_weight,
pscl_weight. The poster gives no λ: 1 each by default.

Evaluation: `metrics.multilabel_metrics` on the sigmoid scores of the
whole split (mAP, CP, CR, CF1, OP, OR, OF1 and their top-3 forms); the
best checkpoint is the one of the highest mAP.

References:
  [SADCL] L. Ma, D. Sun, L. Wang, H. Zhao, B. Luo. Semantic-Aware Dual
          Contrastive Learning for Multi-label Image Classification. ECAI
          2023.
  [ASL]   T. Ridnik, E. Ben-Baruch, N. Zamir, A. Noy, I. Friedman,
          M. Protter, L. Zelnik-Manor. Asymmetric Loss For Multi-Label
          Classification. ICCV 2021. doi:10.1109/ICCV48922.2021.00015.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from scenejax import datasets, input_pipeline, losses, metrics, models
from scenejax.datasets import multilabel as multilabel_data
from scenejax.errors import ConfigError
from scenejax.models import sadcl
from scenejax.tasks import base
from scenejax.training import checkpoints

# The report command's page of a workdir of this task.
REPORT = "scenejax.report.run_report:multilabel_report"
TERMS = ("cls", "sscl", "pscl")


def config_sections() -> dict[str, ml_collections.ConfigDict]:
  """config.multilabel and its defaults."""
  sections = ml_collections.ConfigDict()
  # config.task = "multilabel" ([SADCL]): the SARL
  # head on config.model's last feature map, and the loss
  # classification + sscl_weight · SSCL + pscl_weight · PSCL.
  sections.multilabel = ml_collections.ConfigDict(
    dict(
      dim=256,  # D of the label-level representations
      num_heads=8,
      encoder_layers=1,  # transformer encoder layers over the tokens
      classification_loss="asl",  # asl ([ASL] Eq. 4) | bce
      asl_gamma_positive=0.0,
      asl_gamma_negative=4.0,
      asl_margin=0.05,
      sscl_weight=1.0,  # λ1; 0 disables SSCL
      pscl_weight=1.0,  # λ2; 0 disables PSCL
      temperature=0.1,  # τ of both contrastive losses
      pscl_unactivated="negatives",  # negatives | ignore (our reading)
      prototypes="learnable",  # learnable | ema
      ema_momentum=0.99,  # prototypes = "ema": p ← m·p + (1 - m)·batch mean
      threshold=0.5,  # CP/CR/CF1/OP/OR/OF1 (mAP needs none)
      drop_unlabeled=True,  # COCO, NUS-WIDE: leave out images without a label
    )
  )
  return {k: sections[k] for k in ("multilabel",)}


def build_model(config, num_labels: int) -> nnx.Module:
  """[SADCL]: config.model's backbone under the SARL head of
  config.multilabel (the backbone's own classifier is built, unused)."""
  if config.model not in models.CLASSIFIERS:
    raise ConfigError(
      f"config.model = {config.model!r}; config.task = 'multilabel' puts "
      f"the SARL head on a classifier backbone, one of {', '.join(models.CLASSIFIERS)}"
    )
  options = dict(dtype=models.DTYPES[config.dtype])
  if config.model.startswith("vit"):
    options["image_size"] = config.data.image_size
  backbone = models.create(
    config.model,
    num_labels,
    init_from=config.init_from or None,
    rngs=nnx.Rngs(config.seed),
    **options,
  )
  ml = config.multilabel
  return sadcl.SADCLModel(
    backbone,
    num_labels,
    prototypes=ml.prototypes,
    dim=ml.dim,
    num_heads=ml.num_heads,
    encoder_layers=ml.encoder_layers,
    dtype=models.DTYPES[config.dtype],
    rngs=nnx.Rngs(config.seed + 1),
  )


@dataclasses.dataclass(frozen=True)
class MultilabelLoss:
  """The loss settings of config.multilabel (plain values closed over by
  the step)."""

  classification_loss: str  # asl | bce
  asl_gamma_positive: float
  asl_gamma_negative: float
  asl_margin: float
  sscl_weight: float
  pscl_weight: float
  temperature: float
  pscl_unactivated: str
  prototypes: str  # learnable | ema
  ema_momentum: float

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> MultilabelLoss:
    ml = config.multilabel
    return cls(**{f.name: ml[f.name] for f in dataclasses.fields(cls)})


def loss_terms(logits, representations, targets, prototypes, cfg) -> dict:
  """{"cls", "sscl", "pscl"}: the weighted terms (those with a weight);
  their sum is the loss. logits (B, K), representations (B, K, D),
  targets (B, K) 0/1, prototypes (K, D)."""
  if cfg.classification_loss == "asl":
    cls_loss = losses.asymmetric_loss(
      logits,
      targets,
      gamma_positive=cfg.asl_gamma_positive,
      gamma_negative=cfg.asl_gamma_negative,
      margin=cfg.asl_margin,
    )
  else:  # binary cross-entropy: ASL with γ+ = γ- = m = 0
    cls_loss = losses.asymmetric_loss(
      logits, targets, gamma_positive=0.0, gamma_negative=0.0, margin=0.0
    )
  terms = {"cls": cls_loss}
  if cfg.sscl_weight:
    terms["sscl"] = cfg.sscl_weight * losses.label_contrastive_loss(
      representations, targets, temperature=cfg.temperature
    )
  if cfg.pscl_weight:
    terms["pscl"] = cfg.pscl_weight * losses.prototype_contrastive_loss(
      representations,
      targets,
      prototypes,
      temperature=cfg.temperature,
      unactivated=cfg.pscl_unactivated,
    )
  return terms


def train_step(
  graphdef, state, batch, epoch, aux, *, cfg: MultilabelLoss, mean, std
) -> tuple[nnx.State, dict]:
  """One optimizer step on a batch of images and (B, K) presence labels,
  then, with EMA prototypes, their update from this batch's
  representations. Pure."""
  del epoch, aux  # no per-epoch schedule, no prototype S
  model, optimizer = nnx.merge(graphdef, state)
  images = input_pipeline.normalize(batch["image"], mean, std)
  # VOC's difficult-only labels (`DIFFICULT`) train as positives.
  targets = (batch["label"] > 0).astype(jnp.float32)

  def loss_fn(model):
    out = model.label_outputs(images)
    prototypes = model.prototypes[...]
    if cfg.prototypes == "ema":
      prototypes = jax.lax.stop_gradient(prototypes)
    terms = loss_terms(
      out["logits"], out["representations"], targets, prototypes, cfg
    )
    return sum(terms.values()), (terms, out)

  grads, (terms, out) = nnx.grad(loss_fn, has_aux=True)(model)
  optimizer.update(model, grads)
  if cfg.prototypes == "ema":
    model.prototypes[...] = sadcl.ema_prototypes(
      model.prototypes[...],
      jax.lax.stop_gradient(out["representations"]),
      targets,
      cfg.ema_momentum,
    )
  step_metrics = dict(terms, loss=sum(terms.values()))
  # Overall F1 of the batch at 0.5: 2·TP / (2·TP + FP + FN).
  predicted = out["logits"] >= 0.0
  truth = targets > 0
  tp = jnp.sum(predicted & truth)
  wrong = jnp.sum(predicted != truth)
  step_metrics["f1"] = 2 * tp / jnp.maximum(2 * tp + wrong, 1)
  return nnx.state((model, optimizer)), step_metrics


def eval_step(graphdef, state, batch, *, mean, std) -> dict:
  """{"scores": (B, K) sigmoid probabilities, "label", "mask"} of one
  batch (replicated: every process gets the global batch)."""
  model = nnx.merge(graphdef, state)[0]
  model.eval()
  images = input_pipeline.normalize(batch["image"], mean, std)
  scores = jax.nn.sigmoid(model(images).astype(jnp.float32))
  return dict(scores=scores, label=batch["label"], mask=batch["mask"])


def jit_eval_step(graphdef, mesh, pixel_stats) -> jax.stages.Wrapped:
  """`eval_step` jitted for `mesh`: state replicated, the batch split on
  "data", the outputs replicated (every process reads the global batch)."""
  replicated = NamedSharding(mesh, P())
  return jax.jit(
    functools.partial(
      eval_step, graphdef, mean=pixel_stats[0], std=pixel_stats[1]
    ),
    in_shardings=(replicated, NamedSharding(mesh, P("data"))),
    out_shardings=replicated,
  )


def scores_and_targets(
  eval_fn, state, source, *, batch_size, data_sharding, preprocess=None
) -> tuple[np.ndarray, np.ndarray]:
  """(N, K) float32 scores and (N, K) uint8 targets of every example of
  `source`, in order (padding dropped)."""
  scores, targets = [], []
  for batch in input_pipeline.eval_batches(
    source, batch_size, preprocess=preprocess
  ):
    out = jax.device_get(
      eval_fn(state, input_pipeline.shard_batch(batch, data_sharding))
    )
    mask = np.asarray(out["mask"])
    scores.append(np.asarray(out["scores"])[mask])
    targets.append(np.asarray(out["label"])[mask].astype(np.uint8))
  return np.concatenate(scores), np.concatenate(targets)


def load_data(config: ml_collections.ConfigDict):
  """The run's dataset (`datasets.multilabel_from_config`)."""
  return datasets.multilabel_from_config(config)


def make_task(
  config: ml_collections.ConfigDict, data, graphdef, mesh, pixel_stats
):
  """`base.Task` of config.task = "multilabel" for `data` (a
  `datasets.multilabel_from_config` dataset)."""
  ml = config.multilabel
  cfg = MultilabelLoss.from_config(config)
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P("data"))
  mean, std = pixel_stats
  step = base.jit_step(
    functools.partial(train_step, graphdef, cfg=cfg, mean=mean, std=std), mesh
  )
  scores_fn = jit_eval_step(graphdef, mesh, pixel_stats)
  train_preprocess, eval_preprocess = input_pipeline.preprocessors(config, data)

  def evaluate(state):
    scores, targets = scores_and_targets(
      scores_fn,
      state,
      data.test,
      batch_size=config.eval_batch_size // jax.process_count(),
      data_sharding=batch_sharding,
      preprocess=eval_preprocess,
    )
    return split_metrics(scores, targets, ml.threshold)

  def prepare(workdir):
    del workdir  # nothing to compute before training
    return jax.device_put(jnp.zeros((), jnp.float32), replicated)

  return base.Task(
    step=step,
    evaluate=evaluate,
    prepare=prepare,
    terms=[
      t
      for t in TERMS
      if t == "cls" or ml[f"{t}_weight"]  # sscl_weight, pscl_weight
    ],
    columns=(
      ("train_f1", "train F1", "9.3f"),
      ("mAP", "mAP", "9.3f"),
      ("CF1", "CF1", "9.3f"),
      ("OF1", "OF1", "9.3f"),
    ),
    best_metric="mAP",
    train_preprocess=train_preprocess,
    eval_preprocess=eval_preprocess,
  )


def validate(config, check) -> None:
  check.one_of("config.dataset", multilabel_data.NAMES)
  check.one_of("config.model", models.CLASSIFIERS)
  ml = "config.multilabel."
  for name in ("dim", "num_heads", "encoder_layers"):
    check.at_least(ml + name, 1 if name != "encoder_layers" else 0)
  if config.multilabel.dim % config.multilabel.num_heads or (
    config.multilabel.dim % 4
  ):
    raise ConfigError(
      f"config.multilabel.dim = {config.multilabel.dim} must be a multiple "
      f"of config.multilabel.num_heads = {config.multilabel.num_heads} and "
      "of 4 (the sine position code)"
    )
  for name in (
    "asl_gamma_positive",
    "asl_gamma_negative",
    "sscl_weight",
    "pscl_weight",
  ):
    check.at_least(ml + name, 0)
  check.between(ml + "asl_margin", 0.0, 1.0)
  check.between(ml + "temperature", 1e-6, 100.0)
  check.between(ml + "ema_momentum", 0.0, 1.0)
  check.between(ml + "threshold", 0.0, 1.0)
  check.one_of(ml + "classification_loss", CLASSIFICATION_LOSSES)
  check.one_of(ml + "pscl_unactivated", losses.PSCL_UNACTIVATED)
  check.one_of(ml + "prototypes", PROTOTYPES)
  if config.loss.pcl:
    raise ConfigError(
      "config.loss.pcl is a scene-classification loss; it does not apply "
      "to config.task = 'multilabel'"
    )
  if config.data.ten_crop:
    raise ConfigError(
      "config.data.ten_crop: multi-label evaluation is single-crop; set "
      "it to False"
    )
  if config.prototype.segmenter:
    raise ConfigError(
      "config.prototype.segmenter builds a scene prototype; config.task = "
      "'multilabel' reads none: clear it"
    )


def apply_variant(config, arg: str):
  """config.task = "multilabel": a comma list of
  bce | asl (the classification loss), nocl (no contrastive term),
  nosscl, nopscl (one off), ema (EMA prototypes)."""
  ml = config.multilabel
  for token in (t.strip() for t in arg.split(",") if t.strip()):
    if token in CLASSIFICATION_LOSSES:
      ml.classification_loss = token
    elif token == "nocl":
      ml.sscl_weight, ml.pscl_weight = 0.0, 0.0
    elif token == "nosscl":
      ml.sscl_weight = 0.0
    elif token == "nopscl":
      ml.pscl_weight = 0.0
    elif token == "ema":
      ml.prototypes = "ema"
    else:
      raise ConfigError(
        f"unknown config argument {token!r} in {arg!r}; a multilabel "
        "config takes bce, asl, nocl, nosscl, nopscl, ema"
      )
  return config


CLASSIFICATION_LOSSES = ("asl", "bce")


PROTOTYPES = ("learnable", "ema")


def split_metrics(scores, targets, threshold: float) -> tuple[dict, np.ndarray]:
  """(`metrics.multilabel_metrics` with the per-label AP, the (K, 2, 2)
  confusion) of a split's (N, K) scores and stored targets; VOC's
  `DIFFICULT` pairs are left out of both."""
  ignore = np.asarray(targets) == multilabel_data.DIFFICULT
  result = metrics.multilabel_metrics(
    scores, targets, threshold=threshold, ignore=ignore
  )
  return result, metrics.multilabel_confusion(
    scores, targets, threshold, ignore
  )


def evaluate_checkpoint(
  workdir: str, config, step: int | None, *, ten_crop: bool, head=None
) -> dict:
  """`metrics.multilabel_metrics` of checkpoint `step` (default: best
  mAP) over the run's evaluation split, with the (K, 2, 2) per-label
  confusion at config.multilabel.threshold."""
  if ten_crop:
    raise ConfigError("--ten_crop: multi-label evaluation is single-crop")
  if head is not None:
    raise ConfigError(f"--head={head} is for SAS-Net workdirs")
  data = load_data(config)
  _, eval_preprocess = input_pipeline.preprocessors(config, data)
  mesh, graphdef, state, step, pixel_stats = checkpoints.restore_for_eval(
    workdir, data.num_classes, step
  )
  scores, targets = scores_and_targets(
    jit_eval_step(graphdef, mesh, pixel_stats),
    state,
    data.test,
    batch_size=config.eval_batch_size // jax.process_count(),
    data_sharding=NamedSharding(mesh, P("data")),
    preprocess=eval_preprocess,
  )
  result, confusion = split_metrics(
    scores, targets, config.multilabel.threshold
  )
  return dict(step=step, **result, confusion=confusion.tolist())


def export_fields(config) -> dict:
  """model.json's "multilabel": the SARL head's architecture (an export
  with it is read as per-label sigmoids)."""
  return {
    "multilabel": {
      k: config.multilabel[k]
      for k in ("dim", "num_heads", "encoder_layers", "prototypes", "threshold")
    }
  }
