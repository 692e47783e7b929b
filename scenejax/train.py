"""Training loop: data-parallel train step with CE / LSR / GLS + BCL (+ CL).

One jitted train step over a `jax.sharding.Mesh` of all devices: the model
and optimizer state are replicated (`NamedSharding(mesh, P())`), the batch is
split along the "data" axis (`P("data")`), and XLA inserts the collectives.
The losses see the global batch, so BCL and BatchNorm statistics are the same
on 1 or 8 devices. The GLS epoch is a traced scalar: one compile per run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from scenejax import input_pipeline
from scenejax import losses
from scenejax import models
from scenejax.models import pcl
from scenejax import prototype
from scenejax import datasets

LABEL_KINDS = ("ce", "lsr", "gls")


class ConfigError(ValueError):
  """A config value that cannot work; the message names the field."""


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """The loss composition (plain Python values, closed over by the step)."""
  labels: str = "gls"           # ce | lsr | gls: targets of the CE term
  num_soft_epochs: int = 20     # GLS STEP ([SP] Algorithm 2)
  final_confidence: float = 0.99
  lsr_alpha: float = 0.1
  bcl_weight: float = 0.0       # 0 disables BCL ([SP] Eq. 16 uses 1)
  bcl_metric: str = "cosine"
  bcl_reduction: str = "mean_inter"
  bcl_pairing: str = "gather"
  cl_weight: float = 0.0        # classic contrastive loss baseline
  pcl: bool = False             # pairwise consistency learning ([PCL] Eq. 3)
  pcl_alpha: float = 1.0        # weight of the erased image's CE
  pcl_beta: float = 2.0         # weight of KL(q || p)
  pcl_gamma: float = 0.7        # CAM threshold γ ([PCL] Eq. 2)
  pcl_cam_stage: int = -1       # feature map of the CAM module; -1: the
                                # input of the last down-sampling stage

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> "LossConfig":
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(config.keys()) - fields
    if unknown:
      raise ConfigError(f"config.loss has unknown field(s) {sorted(unknown)}")
    loss = cls(**config.to_dict())
    checks = [("labels", loss.labels, LABEL_KINDS),
              ("bcl_metric", loss.bcl_metric, losses.BCL_METRICS),
              ("bcl_reduction", loss.bcl_reduction, losses.BCL_REDUCTIONS),
              ("bcl_pairing", loss.bcl_pairing, losses.BCL_PAIRINGS)]
    for name, value, allowed in checks:
      if value not in allowed:
        raise ConfigError(f"config.loss.{name} = {value!r}; expected one of "
                          f"{allowed}")
    return loss


def loss_terms(logits, labels, similarity, epoch, cfg: LossConfig, *,
               pcl_logits: dict | None = None) -> dict:
  """The weighted loss terms of one batch; their sum is the training loss.

  "ce": softmax cross-entropy against hard (ce), smoothed (lsr, [SP]
  Table 1 baseline) or GLS soft labels ([SP] Eq. 9); "bcl": [SP] Eq. 10-15
  on the softmax probabilities; "cl": the classic-CL baseline ([SP]
  Table 2); with `pcl_logits` ({"side", "mod"}), "side", "mod" and "kl":
  the other terms of [PCL] Eq. 3, against the same targets as "ce".
  """
  num_classes = logits.shape[-1]
  if cfg.labels == "gls":
    label_matrix = losses.gls_label_matrix(similarity, epoch,
                                           cfg.num_soft_epochs,
                                           cfg.final_confidence)
    targets = label_matrix[labels]
  elif cfg.labels == "lsr":
    targets = losses.label_smoothing_targets(labels, num_classes,
                                             cfg.lsr_alpha)
  else:
    targets = jax.nn.one_hot(labels, num_classes)
  terms = {"ce": optax.softmax_cross_entropy(logits, targets).mean()}
  probs = jax.nn.softmax(logits)
  if cfg.bcl_weight:
    terms["bcl"] = cfg.bcl_weight * losses.bcl_loss(
        probs, labels, similarity, metric=cfg.bcl_metric,
        reduction=cfg.bcl_reduction, pairing=cfg.bcl_pairing)
  if cfg.cl_weight:
    terms["cl"] = cfg.cl_weight * losses.contrastive_loss(
        probs, labels, metric=cfg.bcl_metric)
  if pcl_logits is not None:
    _, parts = losses.pcl_loss(logits, pcl_logits["side"], pcl_logits["mod"],
                               targets, cfg.pcl_alpha, cfg.pcl_beta)
    terms["side"] = parts["side"]
    terms["mod"] = cfg.pcl_alpha * parts["mod"]
    terms["kl"] = cfg.pcl_beta * parts["kl"]
  return terms


def train_step(graphdef, state, batch, epoch, similarity, *,
               loss_cfg: LossConfig, mean=input_pipeline.IMAGENET_MEAN,
               std=input_pipeline.IMAGENET_STD):
  """One optimizer step. Pure: (state, batch) -> (new state, metrics)."""
  model, optimizer = nnx.merge(graphdef, state)
  images = input_pipeline.normalize(batch["image"], mean, std)
  labels = batch["label"]

  def loss_fn(model):
    if loss_cfg.pcl:
      outputs = model.pcl_outputs(images)
      logits = outputs["main"].astype(jnp.float32)
      terms = loss_terms(logits, labels, similarity, epoch, loss_cfg,
                         pcl_logits=outputs)
    else:
      logits = model(images).astype(jnp.float32)
      terms = loss_terms(logits, labels, similarity, epoch, loss_cfg)
    return sum(terms.values()), (terms, logits)

  grads, (terms, logits) = nnx.grad(loss_fn, has_aux=True)(model)
  optimizer.update(model, grads)
  metrics = dict(terms)
  metrics["loss"] = sum(terms.values())
  metrics["accuracy"] = jnp.mean(jnp.argmax(logits, -1) == labels)
  return nnx.state((model, optimizer)), metrics


def eval_step(graphdef, state, batch, *, mean=input_pipeline.IMAGENET_MEAN,
              std=input_pipeline.IMAGENET_STD):
  """Top-1 predictions of a batch, with the model in inference mode.

  Returns ((B, k) indices of the k = min(5, C) highest scores, best first;
  the labels; the mask), all replicated, so every process can count the
  whole global batch. A ten-crop batch (B, 10, H, W, 3) is scored by the
  softmax averaged over each image's crops.
  """
  model, _ = nnx.merge(graphdef, state)
  model.eval()
  images = input_pipeline.normalize(batch["image"], mean, std)
  if images.ndim == 5:  # ten-crop: (B, 10, H, W, 3), average the softmax
    n, crops = images.shape[:2]
    probs = jax.nn.softmax(model(images.reshape((n * crops,) +
                                                images.shape[2:])))
    scores = probs.reshape(n, crops, -1).mean(axis=1)
  else:
    scores = model(images)
  top = jax.lax.top_k(scores, min(5, scores.shape[-1]))[1]
  return top, batch["label"], batch["mask"]


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
  """(C, C) int64 counts, rows = true class, columns = predicted class."""
  flat = np.asarray(labels, np.int64) * num_classes + np.asarray(predictions)
  return np.bincount(flat, minlength=num_classes * num_classes).reshape(
      num_classes, num_classes)


def accuracy_metrics(confusion: np.ndarray,
                     topk_hits: dict[int, int] | None = None) -> dict:
  """Top-1/2/5 and mean class accuracy (MCA), SAS-Net's metrics (003_...),
  from exact integer counts.

  MCA averages per-class recall over the classes present in the split;
  classes with no example are excluded and reported. `topk_hits[k]` is
  the number of examples whose label is among the k best scores.
  """
  per_class_total = confusion.sum(axis=1)
  present = per_class_total > 0
  recall = np.diag(confusion)[present] / per_class_total[present]
  total = int(confusion.sum())
  out = dict(top1=float(np.trace(confusion) / total))
  for k, hits in sorted((topk_hits or {}).items()):
    if k > 1:
      out[f"top{k}"] = hits / total
  out.update(mean_class_accuracy=float(recall.mean()),
             absent_classes=np.flatnonzero(~present).tolist(),
             num_examples=total)
  return out


def learning_rate_schedule(cfg, base_lr: float, steps_per_epoch: int,
                           num_epochs: int):
  """constant | cosine (to 0 over the run, [PCL]) | step (×0.1 at each of
  `cfg.decay_epochs`, [SP]: epochs 10, 15, 20)."""
  total = steps_per_epoch * num_epochs
  if cfg.schedule == "cosine":
    return optax.cosine_decay_schedule(base_lr, total)
  if cfg.schedule == "constant":
    return base_lr
  if cfg.schedule == "step":
    return optax.piecewise_constant_schedule(
        base_lr, {int(e) * steps_per_epoch: 0.1
                  for e in cfg.get("decay_epochs", (10, 15, 20))})
  raise ConfigError(f"config.optimizer.schedule = {cfg.schedule!r}; "
                    "expected 'cosine', 'step' or 'constant'")


HEAD_MODULES = frozenset({"head", "cam_conv", "cam_head", "mod_head"})


def parameter_group(path, _) -> str:
  """"head" for the classifier (and PCL's heads), else "backbone"."""
  names = {getattr(k, "key", getattr(k, "name", None)) for k in path}
  return "head" if names & HEAD_MODULES else "backbone"


def make_optimizer(cfg: ml_collections.ConfigDict, steps_per_epoch: int,
                   num_epochs: int) -> optax.GradientTransformation:
  """Adam with L2 weight decay (PyTorch's Adam(weight_decay), as [SP] uses)
  or SGD with momentum ([PCL]), on the schedule `cfg.schedule`.

  With `cfg.backbone_learning_rate` > 0 the backbone gets that rate and the
  head `cfg.learning_rate` ([SP] fine-tunes with 1e-5 / 1e-3).
  """
  if cfg.name not in ("adam", "sgd"):
    raise ConfigError(f"config.optimizer.name = {cfg.name!r}; expected "
                      "'adam' or 'sgd'")

  def optimizer(base_lr):
    lr = learning_rate_schedule(cfg, base_lr, steps_per_epoch, num_epochs)
    update = (optax.adam(lr) if cfg.name == "adam" else
              optax.sgd(lr, momentum=cfg.momentum))
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay), update)

  backbone_lr = cfg.get("backbone_learning_rate", 0.0)
  if not backbone_lr:
    return optimizer(cfg.learning_rate)
  return optax.multi_transform(
      {"head": optimizer(cfg.learning_rate),
       "backbone": optimizer(backbone_lr)},
      lambda params: jax.tree_util.tree_map_with_path(parameter_group,
                                                      params))


def load_dataset(config: ml_collections.ConfigDict) -> datasets.Dataset:
  """The dataset named by config.dataset (see `scenejax.datasets`)."""
  if config.dataset not in datasets.NAMES:
    raise ConfigError(f"config.dataset = {config.dataset!r}; expected one of "
                      f"{datasets.NAMES}")
  if config.dataset == "synthetic_scenes":
    options = {k: v for k, v in config.data.to_dict().items()
               if k not in _PIPELINE_FIELDS}
    return datasets.load(config.dataset, synthetic_options=options)
  return datasets.load(
      config.dataset, data_dir=config.data.get("data_dir") or None,
      sun397_config=config.data.get("sun397_config", "standard-part1-120k"))


# config.data fields read by the input pipeline, not by a dataset.
_PIPELINE_FIELDS = ("data_dir", "resize_size", "random_resized_crop",
                    "on_corrupt", "sun397_config", "ten_crop")


def preprocessors(config, data: datasets.Dataset):
  """(train, eval) `input_pipeline.Preprocess`, or (None, None) for the
  synthetic scenes, which are rendered at their final size."""
  if data.spec is not None:
    return None, None
  options = dict(image_size=config.data.get("image_size", 224),
                 resize_size=config.data.get("resize_size", 256),
                 on_corrupt=config.data.get("on_corrupt", "skip"))
  return (input_pipeline.Preprocess(
      train=True, random_resized_crop=config.data.get(
          "random_resized_crop", False), **options),
          input_pipeline.Preprocess(
              train=False, ten_crop=config.data.get("ten_crop", False),
              **options))


def similarity_for(config, data: datasets.Dataset, workdir) -> np.ndarray:
  """The prototype: loaded from config.prototype.path (a precomputed NPZ) or
  built from the training label maps ([SP] Algorithm 1, Eq. 1-4) and saved
  to workdir/prototype.npz."""
  if config.prototype.path:
    proto = prototype.load_prototype(config.prototype.path,
                                     class_names=data.class_names)
    return proto.similarity
  spec = data.spec
  if spec is None:
    raise ConfigError(
        f"config.prototype.path is empty and {config.dataset!r} is not the "
        "synthetic dataset: build the prototype first (python -m "
        "scenejax.prototype build ...) and set config.prototype.path")
  train = data.train
  representation, counts = prototype.class_representation(
      train.label_maps, train.labels, spec.num_classes,
      spec.num_semantic_classes, class_names=spec.class_names,
      return_counts=True)
  similarity = prototype.similarity_prototype(
      representation, config.prototype.metric, class_names=spec.class_names)
  if jax.process_index() == 0:
    prototype.save_prototype(
        os.path.join(workdir, "prototype.npz"), similarity,
        metric=config.prototype.metric, class_names=spec.class_names,
        representation=representation, image_counts=counts,
        semantic_class_names=spec.semantic_class_names)
  return similarity.astype(np.float32)


def evaluate(eval_fn, state, split, batch_size, num_classes, data_sharding,
             preprocess=None):
  """(confusion matrix, {k: top-k hits}) over the whole split, as exact
  counts; the padded last batch is masked out."""
  confusion = np.zeros((num_classes, num_classes), np.int64)
  hits = {k: 0 for k in (1, 2, 5) if k <= num_classes}
  for batch in input_pipeline.eval_batches(split, batch_size,
                                           preprocess=preprocess):
    top, labels, mask = (np.asarray(x) for x in eval_fn(
        state, input_pipeline.shard_batch(batch, data_sharding)))
    labels, top = labels[mask], top[mask]
    confusion += confusion_matrix(labels, top[:, 0], num_classes)
    for k in hits:
      hits[k] += int((top[:, :k] == labels[:, None]).any(axis=1).sum())
  return confusion, hits


def data_parallel_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh of every device of every process, axis "data".

  The axis is `Auto` (GSPMD propagates shardings through the step), so the
  loss kernels stay sharding-agnostic: no out_sharding annotations on the
  gathers S[y_i, y_j].
  """
  return jax.make_mesh((jax.device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))


def create_train_state(config, num_classes: int, steps_per_epoch: int):
  """(graphdef, state) of the model and its optimizer, via nnx.split."""
  dtypes = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
  dtype = config.get("dtype", "float32")
  if dtype not in dtypes:
    raise ConfigError(f"config.dtype = {dtype!r}; expected one of "
                      f"{sorted(dtypes)}")
  options = dict(dtype=dtypes[dtype])
  if config.model.startswith("vit"):  # position embeddings fit the input
    options["image_size"] = config.data.get("image_size", 224)
  model = models.create(config.model, num_classes,
                        init_from=config.get("init_from") or None,
                        rngs=nnx.Rngs(config.seed), **options)
  if config.loss.get("pcl", False):
    stage = config.loss.get("pcl_cam_stage", -1)
    model = pcl.PCLModel(model, num_classes,
                         cam_stage=None if stage == -1 else stage,
                         gamma=config.loss.get("pcl_gamma", 0.7),
                         rngs=nnx.Rngs(config.seed + 1))
  tx = make_optimizer(config.optimizer, steps_per_epoch, config.num_epochs)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  return nnx.split((model, optimizer))


def jit_steps(graphdef, loss_cfg: LossConfig, mesh, pixel_stats=(
    input_pipeline.IMAGENET_MEAN, input_pipeline.IMAGENET_STD)):
  """The jitted, data-parallel train and eval steps for `mesh`.

  State and the prototype are replicated, batches split on "data"; the train
  step donates the old state so parameters are updated in place. Images are
  normalised with the statistics the model's weights expect
  (`model.pixel_mean/std`: ImageNet's, or [-1, 1] for big_vision ViTs).
  """
  data_sharding = NamedSharding(mesh, P("data"))
  replicated = NamedSharding(mesh, P())
  norm = dict(mean=pixel_stats[0], std=pixel_stats[1])
  step_fn = jax.jit(
      functools.partial(train_step, graphdef, loss_cfg=loss_cfg, **norm),
      in_shardings=(replicated, data_sharding, replicated, replicated),
      out_shardings=(replicated, replicated), donate_argnums=0)
  eval_fn = jax.jit(functools.partial(eval_step, graphdef, **norm),
                    in_shardings=(replicated, data_sharding),
                    out_shardings=replicated)
  return step_fn, eval_fn


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains, evaluates after every epoch, prints a table; returns the last
  epoch's metrics. Writes prototype.npz, metrics.jsonl and results.json to
  workdir."""
  os.makedirs(workdir, exist_ok=True)
  loss_cfg = LossConfig.from_config(config.loss)
  if jax.process_index() == 0:  # the resolved config, for the record
    prototype.atomic_write(os.path.join(workdir, "config.json"),
                           lambda f: f.write(config.to_json(indent=1)),
                           mode="w")
  data = load_dataset(config)
  train, test, num_classes = data.train, data.test, data.num_classes
  train_preprocess, eval_preprocess = preprocessors(config, data)
  similarity = similarity_for(config, data, workdir)

  mesh = data_parallel_mesh()
  data_sharding = NamedSharding(mesh, P("data"))
  replicated = NamedSharding(mesh, P())
  for field in ("batch_size", "eval_batch_size"):
    if config[field] % jax.device_count():
      raise ConfigError(f"config.{field} = {config[field]} must be a multiple"
                        f" of the device count {jax.device_count()}")
  steps_per_epoch = len(train) // config.batch_size
  if steps_per_epoch == 0:
    raise ConfigError(f"config.batch_size = {config.batch_size} exceeds the "
                      f"training set ({len(train)} examples)")

  graphdef, state = create_train_state(config, num_classes, steps_per_epoch)
  state = jax.device_put(state, replicated)
  similarity = jax.device_put(jnp.asarray(similarity), replicated)
  model, _ = nnx.merge(graphdef, state)
  step_fn, eval_fn = jit_steps(graphdef, loss_cfg, mesh,
                               (model.pixel_mean, model.pixel_std))
  del model

  checkpoints = _checkpoint_manager(workdir, config)
  state, resume = _restore(checkpoints, state, config)
  history = resume.get("history", [])
  preempted = _PreemptionFlag()

  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  from tensorboardX import SummaryWriter  # no TensorFlow needed
  lead = jax.process_index() == 0  # the one process that writes files
  writer = SummaryWriter(os.path.join(workdir, "tensorboard"),
                         write_to_disk=lead)
  metrics_path = (os.path.join(workdir, "metrics.jsonl") if lead else
                  os.devnull)
  confusion = None
  with open(metrics_path, "w") as metrics_file, preempted:
    for row in history:  # the resumed run's earlier epochs, rewritten
      metrics_file.write(json.dumps(row) + "\n")
    for epoch in range(resume.get("epoch", 0), config.num_epochs):
      start = time.perf_counter()
      pending = []
      batches = iter(input_pipeline.train_batches(
          train, config.batch_size, seed=config.seed, epoch=epoch,
          preprocess=train_preprocess))
      first_step = 0
      if resume.get("epoch") == epoch and resume.get("iterator"):
        batches.set_state(resume["iterator"])  # mid-epoch (preemption) save
        first_step = resume["step_in_epoch"]
      bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.num_epochs}",
                 unit="step", leave=False, initial=first_step,
                 total=steps_per_epoch, disable=not config.progress_bar)
      for step, batch in enumerate(bar, start=first_step):
        state, metrics = step_fn(
            state, input_pipeline.shard_batch(batch, data_sharding),
            np.float32(epoch), similarity)
        pending.append(metrics)
        if (step + 1) % config.log_every_steps == 0 and len(pending) > 1:
          # The previous step's loss: reading it waits for that step only,
          # while this one keeps the device busy (reading this step's would
          # idle the device while the host fetches the next batch).
          rate = bar.format_dict.get("rate") or 0.0  # steps/s; tqdm: ETA
          bar.set_postfix(loss=f"{float(pending[-2]['loss']):.3f}",
                          images_per_s=f"{rate * config.batch_size:.0f}")
        if preempted:
          _check_finite(jax.device_get(pending), epoch, first_step,
                        steps_per_epoch)
          _save(checkpoints, epoch * steps_per_epoch + step + 1, state, dict(
              epoch=epoch, step_in_epoch=step + 1, history=history,
              iterator=batches.get_state()))
          checkpoints.wait_until_finished()
          checkpoints.close()
          writer.close()
          print(f"SIGTERM: saved step {epoch * steps_per_epoch + step + 1} "
                f"to {checkpoints.directory}; resume by running again",
                flush=True)
          return dict(preempted=True, epoch=epoch, step_in_epoch=step + 1)
      # One host sync per epoch for the training metrics.
      pending = jax.device_get(pending)
      _check_finite(pending, epoch, first_step, steps_per_epoch)
      train_metrics = {k: float(np.mean([m[k] for m in pending]))
                       for k in pending[0]} if pending else {}
      confusion, hits = evaluate(
          eval_fn, state, test, config.eval_batch_size // jax.process_count(),
          num_classes, data_sharding, eval_preprocess)
      row = dict(epoch=epoch + 1, **{f"train_{k}": v for k, v in
                                     train_metrics.items()},
                 **accuracy_metrics(confusion, hits),
                 seconds=time.perf_counter() - start)
      if train_preprocess is not None:
        row["skipped_images"] = (train_preprocess.skipped +
                                 eval_preprocess.skipped)
      history.append(row)
      metrics_file.write(json.dumps(row) + "\n")
      metrics_file.flush()
      for key, value in row.items():
        if isinstance(value, (int, float)) and key != "epoch":
          writer.add_scalar(key, value, (epoch + 1) * steps_per_epoch)
      writer.flush()
      _save(checkpoints, (epoch + 1) * steps_per_epoch, state,
            dict(epoch=epoch + 1, step_in_epoch=0, history=history,
                 iterator=None), metrics=dict(top1=row["top1"]))
      if epoch == resume.get("epoch", 0):
        print(_table_header(loss_cfg))
      print(_table_row(row, loss_cfg), flush=True)
  writer.close()
  checkpoints.wait_until_finished()
  checkpoints.close()
  if confusion is None:  # resumed a finished run: nothing left to train
    return dict(history[-1]) if history else {}
  final = dict(history[-1], confusion=confusion.tolist(),
               class_names=list(data.class_names),
               compiles=step_fn._cache_size())  # pylint: disable=protected-access
  if lead:
    prototype.atomic_write(os.path.join(workdir, "results.json"),
                           lambda f: f.write(json.dumps(final, indent=1)),
                           mode="w")
  return final


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN/inf loss; the message names step and term."""


def _check_finite(pending: list[dict], epoch: int, first_step: int,
                  steps_per_epoch: int) -> None:
  """Raises at the first step whose loss is not finite, naming its terms.

  Called before any checkpoint is written, so the last good one stays.
  """
  for i, metrics in enumerate(pending):
    if not np.isfinite(metrics["loss"]):
      bad = sorted(k for k, v in metrics.items()
                   if k != "loss" and not np.isfinite(v))
      step = epoch * steps_per_epoch + first_step + i + 1
      raise NonFiniteLossError(
          f"non-finite loss at step {step} (epoch {epoch + 1}): "
          f"term(s) {', '.join(bad) or 'loss'} = "
          f"{ {k: float(metrics[k]) for k in bad or ['loss']} }. Stopped; "
          "the last checkpoint written before it is kept")


class _PreemptionFlag:
  """True once SIGTERM arrived (inside its `with` block), so the loop can
  save and return instead of dying mid-step."""

  def __init__(self):
    self._set = False
    self._previous = None

  def __bool__(self):
    return self._set

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)

  def _handle(self, signum, frame):
    del signum, frame
    self._set = True


def _checkpoint_manager(workdir: str, config) -> ocp.CheckpointManager:
  """Orbax manager of workdir/checkpoints: async saves, the latest
  `config.checkpoint_keep` (default 2) plus the best by Top-1."""
  policies = ocp.checkpoint_managers
  keep = config.get("checkpoint_keep", 2)
  options = ocp.CheckpointManagerOptions(
      enable_async_checkpointing=True,
      preservation_policy=policies.AnyPreservationPolicy([
          policies.LatestN(keep),
          policies.BestN(get_metric_fn=lambda m: m["top1"], n=1,
                         keep_checkpoints_without_metrics=False)]))
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, "checkpoints")), options=options)


def _save(checkpoints, step, state, meta, metrics=None) -> None:
  checkpoints.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                   metrics=metrics)


def best_step(directory: str) -> int:
  """The step with the highest recorded Top-1, else the latest step."""
  manager = ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(
          read_only=True, best_fn=lambda m: m["top1"], best_mode="max"))
  step = manager.best_step() or manager.latest_step()
  manager.close()
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {directory}")
  return step


def read_workdir_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a run saved in workdir/config.json, with
  init_from cleared (its checkpoints hold every weight)."""
  with open(os.path.join(workdir, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  config.init_from = ""
  return config


def restore_workdir(workdir: str, config, num_classes: int,
                    step: int | None = None, sharding=None):
  """(graphdef, state, step) of checkpoint `step` of a run (default: the
  best by Top-1), placed with `sharding` (default: this process's first
  device)."""
  graphdef, state = create_train_state(config, num_classes, 1)
  if sharding is not None:
    state = jax.device_put(state, sharding)
  directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
  step = best_step(directory) if step is None else step
  manager = ocp.CheckpointManager(directory)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  state = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract)))["state"]
  manager.close()
  return graphdef, state, step


def _restore(checkpoints, state, config):
  """(state, meta) of the latest complete checkpoint, or (state, {})."""
  step = checkpoints.latest_step()
  if step is None:
    return state, {}
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  try:
    restored = checkpoints.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract),
        meta=ocp.args.JsonRestore()))
  except (ValueError, KeyError, TypeError) as e:
    raise ConfigError(
        f"the checkpoint at {checkpoints.directory} (step {step}) does not "
        f"fit config.model = {config.model!r} and this config: {e}") from e
  print(f"resuming from step {step} in {checkpoints.directory}", flush=True)
  return restored["state"], restored["meta"]


def _terms(cfg: LossConfig):
  return (["ce"] + (["bcl"] if cfg.bcl_weight else []) +
          (["cl"] if cfg.cl_weight else []) +
          (["side", "mod", "kl"] if cfg.pcl else []))


def _table_header(cfg: LossConfig) -> str:
  cols = ["epoch", "loss"] + _terms(cfg) + ["train acc", "Top-1", "MCA", "sec"]
  return " | ".join(f"{c:>9}" for c in cols)


def _table_row(row: dict, cfg: LossConfig) -> str:
  values = ([f"{row['epoch']:>9d}", f"{row['train_loss']:9.4f}"] +
            [f"{row['train_' + t]:9.4f}" for t in _terms(cfg)] +
            [f"{row['train_accuracy']:9.3f}", f"{row['top1']:9.3f}",
             f"{row['mean_class_accuracy']:9.3f}", f"{row['seconds']:9.1f}"])
  return " | ".join(values)
