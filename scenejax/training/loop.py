"""The training loop: `train_and_evaluate` runs any task's `Task` (its
jitted step, its evaluation, its table columns) for config.num_epochs,
with checkpoints, resume after preemption, metrics.jsonl, TensorBoard and
results.json in the workdir.

The loop is task-agnostic: `scenejax.tasks` picks the task of the config;
each task brings its own step and metrics and reuses this loop.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

import jax
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from scenejax import (
  config_lib,
  fileio,
  input_pipeline,
  sharding,
  tasks,
)
from scenejax.errors import ConfigError
from scenejax.tasks import base
from scenejax.training import checkpoints, optim


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
  task_def = tasks.for_config(config)
  data = task_def.load_data(config)
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

  mesh = sharding.data_parallel_mesh()
  data_sharding = NamedSharding(mesh, P("data"))
  replicated = NamedSharding(mesh, P())
  graphdef, state = optim.create_train_state(
    task_def.build_model(config, data.num_classes), config, steps_per_epoch
  )
  state = jax.device_put(state, replicated)
  model = nnx.merge(graphdef, state)[0]
  pixel_stats = (model.pixel_mean, model.pixel_std)
  del model
  task = task_def.make_task(config, data, graphdef, mesh, pixel_stats)
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
          train_sums = resume["train_sums"]  # the steps before the save
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


def _table_columns(task: base.Task) -> list[tuple[str, str, str]]:
  """(row key, header, format) of every column of the epoch table."""
  return (
    [("epoch", "epoch", "d"), ("train_loss", "loss", ".4f")]
    + [("train_" + t, t, ".4f") for t in task.terms]
    + [(key, header, fmt[1:]) for key, header, fmt in task.columns]
    + [("seconds", "sec", ".1f")]
  )


def _table_header(task: base.Task) -> str:
  return " | ".join(f"{h:>9}" for _, h, _ in _table_columns(task))


def _table_row(row: dict, task: base.Task) -> str:
  return " | ".join(
    f"{row[key]:>{max(9, len(h))}{fmt}}" for key, h, fmt in _table_columns(task)
  )
