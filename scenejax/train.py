"""The train step and the training loop.

One jitted train step over a `jax.sharding.Mesh` of all devices: the model
and optimizer state are replicated (`NamedSharding(mesh, P())`), the batch is
split along the "data" axis (`P("data")`), and XLA inserts the collectives.
The losses see the global batch, so BCL and BatchNorm statistics are the
same on 1 or 8 devices. The GLS epoch is a traced scalar: one compile per
run.

The loop is task-agnostic: it runs a `Task`, whose jitted `step(state,
batch, epoch, aux) -> (state, metrics)` trains and whose `evaluate(state)
-> (metrics row, confusion)` runs after each epoch. Scene classification
(`train_step` + `scenejax.evaluation`, `classification_task`) and
segmentation (`scenejax.segmentation`, config.task = "segmentation") and
multi-label learning (`scenejax.multilabel`, config.task = "multilabel")
each bring their own step and metrics and reuse the loop.

References:
  [SP]  C. Song, H. Wu, X. Ma, Y. Li. Semantic-embedded Similarity Prototype
        for Scene Recognition. Pattern Recognition, 2024. arXiv:2308.05896.
  [PCL] G. Chen, X. Song, B. Wang, S. Jiang. See More for Scene: Pairwise
        Consistency Learning for Scene Classification. NeurIPS 2021.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from scenejax import (
  checkpoints,
  config_lib,
  datasets,
  evaluation,
  fileio,
  input_pipeline,
  losses,
  models,
  optim,
  prototype,
)
from scenejax.errors import ConfigError


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
      cls.from_config(config_lib.base().loss), **overrides
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


def update(model, optimizer, loss_fn, labels) -> tuple[nnx.State, dict]:
  """One optimizer update with the gradient of `loss_fn(model) -> (loss,
  (terms, logits))`; (new state, metrics: the terms, "loss", "accuracy")."""
  grads, (terms, logits) = nnx.grad(loss_fn, has_aux=True)(model)
  optimizer.update(model, grads)
  metrics = dict(terms)
  metrics["loss"] = sum(terms.values())
  metrics["accuracy"] = jnp.mean(jnp.argmax(logits, -1) == labels)
  return nnx.state((model, optimizer)), metrics


def jit_step(step: Callable, mesh) -> jax.stages.Wrapped:
  """A task's `step(state, batch, epoch, aux) -> (state, metrics)` jitted
  for `mesh`: state, epoch and aux replicated, the batch split on "data",
  the old state donated (updated in place). Every task's step goes
  through here, so they shard alike."""
  replicated = NamedSharding(mesh, P())
  return jax.jit(
    step,
    in_shardings=(
      replicated,
      NamedSharding(mesh, P("data")),
      replicated,
      replicated,
    ),
    out_shardings=(replicated, replicated),
    donate_argnums=0,
  )


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


def data_parallel_mesh() -> jax.sharding.Mesh:
  """A 1-D mesh of every device of every process, axis "data".

  The axis is `Auto` (GSPMD propagates shardings through the step), so the
  loss kernels stay sharding-agnostic: no out_sharding annotations on the
  gathers S[y_i, y_j].
  """
  return jax.make_mesh(
    (jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,)
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
    path = config_lib.prototype_path(config)
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
      "scenejax.prototype build ...) and set config.prototype.path, or set "
      "config.prototype.segmenter (+ init_from) to build it here"
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


@dataclasses.dataclass(frozen=True)
class Task:
  """What the loop needs from a task."""

  # Jitted (state, batch, epoch, aux) -> (state, metrics); aux is what
  # `prepare` returned (the prototype S, the focal loss's class weights).
  step: Callable
  # state -> (metrics row, confusion counts) over the evaluation split.
  evaluate: Callable
  # workdir -> aux: runs once the workdir is locked and a checkpoint
  # restored, before the first step (a segmenter prototype build, class
  # weights); writes what it computed into the workdir (process 0).
  prepare: Callable
  terms: list[str]  # the loss terms, for the table
  columns: tuple  # (row key, header, format) of the table after the terms
  best_metric: str  # the row key that picks the best checkpoint
  train_preprocess: Any = None
  eval_preprocess: Any = None
  train_source: Any = None  # None: the dataset's training split


def classification_task(
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
  against the run's prototype, Top-k and MCA (`scenejax.evaluation`).
  `step`, `eval_fn` and the (train, eval) `sources` replace the jitted
  train and eval steps and `data`'s splits (SAS-Net's, with its semantic
  files: `scenejax.semantic_aware`)."""
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
  eval_fn = eval_fn or evaluation.jit_eval_step(graphdef, mesh, pixel_stats)
  data_sharding = NamedSharding(mesh, P("data"))

  def evaluate(state):
    result = evaluation.evaluate(
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
    evaluate=evaluate,
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


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN/inf loss; the message names step and term."""


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains, evaluates after every epoch, prints a table; returns the last
  epoch's metrics.

  Everything is checked (config, dataset, prototype, a workdir's
  checkpoint) before anything is written; a prototype built from a
  segmenter (`config.prototype.segmenter`) is built after those checks,
  under the workdir lock. The workdir then gets
  config.json, prototype.npz (when built here), metrics.jsonl,
  tensorboard/, checkpoints/ and, at the end, results.json.
  """
  config_lib.validate(config)
  if config.task == "segmentation":
    from scenejax import segmentation

    data = datasets.segmentation_from_config(config)
    make_task = segmentation.task
  elif config.task == "multilabel":
    from scenejax import multilabel

    data = datasets.multilabel_from_config(config)
    make_task = multilabel.task
  elif config.model in models.SEMANTIC_AWARE:
    from scenejax import semantic_aware

    data = datasets.from_config(config)
    make_task = semantic_aware.task
  else:
    data = datasets.from_config(config)
    make_task = classification_task
  for field in ("batch_size", "eval_batch_size"):
    if config[field] % jax.device_count():
      raise ConfigError(
        f"config.{field} = {config[field]} must be a multiple"
        f" of the device count {jax.device_count()}"
      )
  steps_per_epoch = len(data.train) // config.batch_size
  if steps_per_epoch == 0:
    raise ConfigError(
      f"config.batch_size = {config.batch_size} exceeds the "
      f"training set ({len(data.train)} examples)"
    )

  mesh = data_parallel_mesh()
  data_sharding = NamedSharding(mesh, P("data"))
  replicated = NamedSharding(mesh, P())
  graphdef, state = optim.create_train_state(
    config, data.num_classes, steps_per_epoch
  )
  state = jax.device_put(state, replicated)
  model = nnx.merge(graphdef, state)[0]
  pixel_stats = (model.pixel_mean, model.pixel_std)
  del model
  task = make_task(config, data, graphdef, mesh, pixel_stats)
  train_preprocess = task.train_preprocess
  train_source = data.train if task.train_source is None else task.train_source

  os.makedirs(workdir, exist_ok=True)
  lead = jax.process_index() == 0  # the one process that writes files
  from tensorboardX import SummaryWriter  # no TensorFlow needed
  from tqdm import tqdm

  with (
    checkpoints.WorkdirLock(workdir),
    checkpoints.open_manager(workdir, config.checkpoint_keep) as manager,
  ):
    state, resume = checkpoints.restore_latest(
      manager, state, config, steps_per_epoch
    )
    aux = task.prepare(workdir)
    if lead:  # everything fits: now write the record of the run
      fileio.write_text(
        os.path.join(workdir, "config.json"), config.to_json(indent=1)
      )
    history = resume.get("history", [])
    metrics_path = (
      os.path.join(workdir, "metrics.jsonl") if lead else os.devnull
    )
    confusion, preempted = None, None
    with (
      open(metrics_path, "w") as metrics_file,
      contextlib.closing(
        SummaryWriter(os.path.join(workdir, "tensorboard"), write_to_disk=lead)
      ) as writer,
      checkpoints.Preemption(manager) as preemption,
    ):
      for row in history:  # the resumed run's earlier epochs, rewritten
        metrics_file.write(json.dumps(row) + "\n")
      for epoch in range(resume.get("epoch", 0), config.num_epochs):
        start = time.perf_counter()
        pending = []
        batches = iter(
          input_pipeline.device_batches(
            input_pipeline.train_batches(
              train_source,
              config.batch_size,
              seed=config.seed,
              epoch=epoch,
              preprocess=train_preprocess,
            ),
            data_sharding,
            host_buffer=config.data.host_prefetch,
            device_buffer=config.data.device_prefetch,
          )
        )
        first_step, train_sums = 0, {}
        if resume.get("epoch") == epoch and resume.get("iterator"):
          batches.set_state(resume["iterator"])  # mid-epoch (preemption) save
          first_step = resume["step_in_epoch"]
          if resume.get("shuffle") != input_pipeline.SHUFFLE:
            logging.warning(
              "the checkpoint was saved mid-epoch by a scenejax whose "
              "shuffle differs (before 2026-11-24): the rest of epoch %d "
              "follows the new order, so some of its images repeat and "
              "others are skipped",
              epoch + 1,
            )
          # The steps before the save (absent in saves of scenejax before
          # 2026-11-23, whose resumed epoch then averages the later steps).
          train_sums = resume.get("train_sums", {})
        bar = tqdm(
          batches,
          desc=f"epoch {epoch + 1}/{config.num_epochs}",
          unit="step",
          leave=False,
          initial=first_step,
          total=steps_per_epoch,
          disable=not config.progress_bar,
        )
        for step, batch in enumerate(bar, start=first_step):
          state, metrics = task.step(state, batch, np.float32(epoch), aux)
          pending.append(metrics)
          if (step + 1) % config.log_every_steps == 0:
            # A failed save (a full disk) stops the run now, not at the
            # next save an epoch later.
            checkpoints.raise_if_save_failed(manager)
            if len(pending) > 1:
              # The previous step's loss: reading it waits for that step
              # only, while this one keeps the device busy (reading this
              # step's would idle the device while the host fetches the
              # next batch).
              rate = bar.format_dict.get("rate") or 0.0  # steps/s: tqdm
              bar.set_postfix(
                loss=f"{float(pending[-2]['loss']):.3f}",
                images_per_s=f"{rate * config.batch_size:.0f}",
              )
          global_step = epoch * steps_per_epoch + step + 1
          if preemption.reached(global_step):
            pending = jax.device_get(pending)
            _check_finite(pending, epoch, first_step, steps_per_epoch)
            checkpoints.save(
              manager,
              global_step,
              state,
              dict(
                epoch=epoch,
                step_in_epoch=step + 1,
                history=history,
                iterator=batches.get_state(),
                shuffle=input_pipeline.SHUFFLE,
                train_sums=_add_metrics(train_sums, pending),
                class_names=list(data.class_names),
                batch_size=config.batch_size,
                steps_per_epoch=steps_per_epoch,
              ),
            )
            preempted = dict(epoch=epoch, step_in_epoch=step + 1)
            break
        batches.close()  # stops the prefetch and decode threads
        if preempted:
          break
        # One host sync per epoch for the training metrics.
        pending = jax.device_get(pending)
        _check_finite(pending, epoch, first_step, steps_per_epoch)
        # The whole epoch's mean, also across a preemption (the sums of the
        # steps before it come with the checkpoint).
        steps_done = first_step + len(pending)
        train_metrics = {
          k: v / steps_done
          for k, v in _add_metrics(train_sums, pending).items()
        }
        eval_metrics, confusion = task.evaluate(state)
        row = dict(
          epoch=epoch + 1,
          **{f"train_{k}": v for k, v in train_metrics.items()},
          **eval_metrics,
          seconds=time.perf_counter() - start,
        )
        if train_preprocess is not None:
          row["skipped_images"] = (
            train_preprocess.skipped + task.eval_preprocess.skipped
          )
        history.append(row)
        metrics_file.write(json.dumps(row) + "\n")
        metrics_file.flush()
        for key, value in row.items():
          if isinstance(value, (int, float)) and key != "epoch":
            writer.add_scalar(key, value, (epoch + 1) * steps_per_epoch)
        writer.flush()
        checkpoints.save(
          manager,
          (epoch + 1) * steps_per_epoch,
          state,
          dict(
            epoch=epoch + 1,
            step_in_epoch=0,
            history=history,
            iterator=None,
            class_names=list(data.class_names),
            batch_size=config.batch_size,
            steps_per_epoch=steps_per_epoch,
          ),
          metrics={task.best_metric: row[task.best_metric]},
        )
        if epoch == resume.get("epoch", 0):
          print(_table_header(task))
        print(_table_row(row, task), flush=True)
      # Every save complete, while a second SIGTERM is still caught.
      checkpoints.finish(manager, close=False)
    if preempted:
      print(
        f"SIGTERM: saved step {manager.latest_step()} to "
        f"{manager.directory}; resume by running again",
        flush=True,
      )
      return dict(preempted=True, **preempted)
    if confusion is None:  # resumed a finished run: nothing left to train
      written = os.path.exists(os.path.join(workdir, "results.json"))
      if jax.process_count() > 1:  # process 0 decides, so no host waits alone
        from jax.experimental import multihost_utils

        written = bool(multihost_utils.broadcast_one_to_all(np.int32(written)))
      if written or not history:
        return dict(history[-1]) if history else {}
      # Stopped after the last save but before results.json (a kill, a
      # full disk): evaluate the final state once and write it now.
      _, confusion = task.evaluate(state)
    final = dict(
      history[-1],
      confusion=confusion.tolist(),
      class_names=list(data.class_names),
      compiles=task.step._cache_size(),
      # Training + evaluation time of all epochs (across resumes, without
      # start-up), and what ran them: the reproduction tables show both.
      wall_time_s=sum(row["seconds"] for row in history),
      device=f"{jax.device_count()} x {jax.devices()[0].device_kind}",
    )
    if lead:
      fileio.write_json(os.path.join(workdir, "results.json"), final)
    return final


def _check_finite(
  pending: list[dict], epoch: int, first_step: int, steps_per_epoch: int
) -> None:
  """Raises at the first step whose loss is not finite, naming its terms.

  Called before any checkpoint is written, so the last good one stays.
  """
  for i, metrics in enumerate(pending):
    if not np.isfinite(metrics["loss"]):
      bad = sorted(
        k for k, v in metrics.items() if k != "loss" and not np.isfinite(v)
      )
      step = epoch * steps_per_epoch + first_step + i + 1
      raise NonFiniteLossError(
        f"non-finite loss at step {step} (epoch {epoch + 1}): "
        f"term(s) {', '.join(bad) or 'loss'} = "
        f"{ {k: float(metrics[k]) for k in bad or ['loss']} }. Stopped; "
        "the last checkpoint written before it is kept"
      )


def _add_metrics(sums: dict, steps: list[dict]) -> dict[str, float]:
  """`sums` plus each step's metrics, added in step order on the host, so
  a run resumed mid-epoch sums exactly as an uninterrupted one."""
  out = dict(sums)
  for metrics in steps:
    for key, value in metrics.items():
      out[key] = out.get(key, 0.0) + float(value)
  return out


def loss_term_names(cfg: LossConfig) -> list[str]:
  return (
    ["ce"]
    + (["bcl"] if cfg.bcl_weight else [])
    + (["cl"] if cfg.cl_weight else [])
    + (["side", "mod", "kl"] if cfg.pcl else [])
  )


def _table_columns(task: Task) -> list[tuple[str, str, str]]:
  """(row key, header, format) of every column of the epoch table."""
  return (
    [("epoch", "epoch", "d"), ("train_loss", "loss", ".4f")]
    + [("train_" + t, t, ".4f") for t in task.terms]
    + [(key, header, fmt[1:]) for key, header, fmt in task.columns]
    + [("seconds", "sec", ".1f")]
  )


def _table_header(task: Task) -> str:
  return " | ".join(f"{h:>9}" for _, h, _ in _table_columns(task))


def _table_row(row: dict, task: Task) -> str:
  return " | ".join(
    f"{row[key]:>{max(9, len(h))}{fmt}}" for key, h, fmt in _table_columns(task)
  )
