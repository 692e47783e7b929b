"""The training loop: `train_and_evaluate` runs any task's `Task` (its
jitted step, its evaluation, its table columns) for config.num_epochs,
with checkpoints, resume after preemption, metrics.jsonl, TensorBoard and
results.json in the workdir.

The loop is task-agnostic: `scenejax.tasks` picks the task of the config;
each task brings its own step and metrics and reuses this loop.
"""

from __future__ import annotations

import dataclasses
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
  progress,
  sharding,
  tasks,
)
from scenejax.errors import ConfigError
from scenejax.tasks import base
from scenejax.training import checkpoints, optim


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN/inf loss; the message names step and term."""


@dataclasses.dataclass
class _Run:
  """What every step of `train_and_evaluate` reads: set once per run."""

  config: ml_collections.ConfigDict
  task: base.Task
  class_names: list
  train_source: object
  data_sharding: NamedSharding
  steps_per_epoch: int
  manager: object  # the orbax CheckpointManager
  history: list  # one metrics row per finished epoch (resumed ones first)

  def meta(self, **fields) -> dict:
    """A checkpoint's meta: `fields` and what a resume checks."""
    return dict(
      fields,
      history=self.history,
      class_names=list(self.class_names),
      batch_size=self.config.batch_size,
      steps_per_epoch=self.steps_per_epoch,
    )


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
  steps_per_epoch = _steps_per_epoch(config, len(data.train))
  mesh = sharding.data_parallel_mesh()
  graphdef, state = optim.create_train_state(
    task_def.build_model(config, data.num_classes), config, steps_per_epoch
  )
  state = jax.device_put(state, NamedSharding(mesh, P()))
  model = nnx.merge(graphdef, state)[0]
  pixel_stats = (model.pixel_mean, model.pixel_std)
  del model
  task = task_def.make_task(config, data, graphdef, mesh, pixel_stats)
  os.makedirs(workdir, exist_ok=True)
  lead = jax.process_index() == 0  # the one process that writes files

  with (
    checkpoints.WorkdirLock(workdir),
    checkpoints.open_manager(workdir, config.checkpoint_keep) as manager,
  ):
    if data.split_record is not None:  # an image folder's splits
      checkpoints.check_split_record(workdir, data.split_record)
    state, resume = checkpoints.restore_latest(
      manager, state, config, steps_per_epoch
    )
    aux = task.prepare(workdir)
    if lead:  # everything fits: now write the record of the run
      fileio.write_text(
        os.path.join(workdir, "config.json"), config.to_json(indent=1)
      )
      if data.split_record is not None:
        checkpoints.write_split_record(workdir, data.split_record)
    run = _Run(
      config=config,
      task=task,
      class_names=data.class_names,
      train_source=(
        data.train if task.train_source is None else task.train_source
      ),
      data_sharding=NamedSharding(mesh, P("data")),
      steps_per_epoch=steps_per_epoch,
      manager=manager,
      history=resume.get("history", []),
    )
    confusion, preempted = None, None
    with (
      _EpochLog(workdir, lead, run.history) as log,
      checkpoints.Preemption(manager) as preemption,
    ):
      for epoch in range(resume.get("epoch", 0), config.num_epochs):
        start = time.perf_counter()
        state, sums, preempted = _train_epoch(
          run, state, aux, epoch, resume, preemption
        )
        if preempted:
          break
        row, confusion = _end_of_epoch(run, state, epoch, sums, start, log)
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
    return _finish(run, state, confusion, workdir, lead)


def _steps_per_epoch(config, num_train: int) -> int:
  for field in ("batch_size", "eval_batch_size"):
    if config[field] % jax.device_count():
      raise ConfigError(
        f"config.{field} = {config[field]} must be a multiple"
        f" of the device count {jax.device_count()}"
      )
  steps = num_train // config.batch_size
  if steps == 0:
    raise ConfigError(
      f"config.batch_size = {config.batch_size} exceeds the "
      f"training set ({num_train} examples)"
    )
  return steps


def _train_epoch(run: _Run, state, aux, epoch: int, resume: dict, preemption):
  """The steps of `epoch` (from the saved position when `resume` stopped
  mid-epoch): (state, (first step, the steps' metric sums), None), or, at
  a SIGTERM, (state, None, where it stopped) after a mid-epoch save."""
  config, task = run.config, run.task
  batches = iter(
    input_pipeline.device_batches(
      input_pipeline.train_batches(
        run.train_source,
        config.batch_size,
        seed=config.seed,
        epoch=epoch,
        preprocess=task.train_preprocess,
      ),
      run.data_sharding,
      host_buffer=config.data.host_prefetch,
      device_buffer=config.data.device_prefetch,
    )
  )
  first_step, train_sums = 0, {}
  if resume.get("epoch") == epoch and resume.get("iterator"):
    batches.set_state(resume["iterator"])  # mid-epoch (preemption) save
    first_step = resume["step_in_epoch"]
    train_sums = resume["train_sums"]  # the steps before the save
  bar = progress.bar(
    batches,
    desc=f"epoch {epoch + 1}/{config.num_epochs}",
    unit="step",
    leave=False,
    initial=first_step,
    total=run.steps_per_epoch,
    disable=not config.progress_bar,
  )
  pending = []
  try:
    for step, batch in enumerate(bar, start=first_step):
      state, metrics = task.step(state, batch, np.float32(epoch), aux)
      pending.append(metrics)
      if (step + 1) % config.log_every_steps == 0:
        # A failed save (a full disk) stops the run now, not at the next
        # save an epoch later.
        checkpoints.raise_if_save_failed(run.manager)
        if len(pending) > 1:
          # The previous step's loss: reading it waits for that step only,
          # while this one keeps the device busy (reading this step's
          # would idle the device while the host fetches the next batch).
          rate = bar.format_dict.get("rate") or 0.0  # steps/s: tqdm
          bar.set_postfix(
            loss=f"{float(pending[-2]['loss']):.3f}",
            images_per_s=f"{rate * config.batch_size:.0f}",
          )
      global_step = epoch * run.steps_per_epoch + step + 1
      if preemption.reached(global_step):
        pending = jax.device_get(pending)
        _check_finite(pending, epoch, first_step, run.steps_per_epoch)
        checkpoints.save(
          run.manager,
          global_step,
          state,
          run.meta(
            epoch=epoch,
            step_in_epoch=step + 1,
            iterator=batches.get_state(),
            train_sums=_add_metrics(train_sums, pending),
          ),
        )
        return state, None, dict(epoch=epoch, step_in_epoch=step + 1)
  finally:
    batches.close()  # stops the prefetch and decode threads
  # One host sync per epoch for the training metrics.
  pending = jax.device_get(pending)
  _check_finite(pending, epoch, first_step, run.steps_per_epoch)
  return (
    state,
    (first_step + len(pending), _add_metrics(train_sums, pending)),
    None,
  )


def _end_of_epoch(run: _Run, state, epoch: int, sums, start: float, log):
  """Evaluates, appends the epoch's row to the history and the log, and
  saves the epoch's checkpoint; (row, confusion)."""
  task = run.task
  steps_done, train_sums = sums
  # The whole epoch's mean, also across a preemption (the sums of the
  # steps before it come with the checkpoint).
  train_metrics = {k: v / steps_done for k, v in train_sums.items()}
  eval_metrics, confusion = task.evaluate(state)
  row = dict(
    epoch=epoch + 1,
    **{f"train_{k}": v for k, v in train_metrics.items()},
    **eval_metrics,
    seconds=time.perf_counter() - start,
  )
  if task.train_preprocess is not None:
    row["skipped_images"] = (
      task.train_preprocess.skipped + task.eval_preprocess.skipped
    )
  run.history.append(row)
  log.write(row, (epoch + 1) * run.steps_per_epoch)
  checkpoints.save(
    run.manager,
    (epoch + 1) * run.steps_per_epoch,
    state,
    run.meta(epoch=epoch + 1, step_in_epoch=0, iterator=None),
    metrics={task.best_metric: row[task.best_metric]},
  )
  return row, confusion


class _EpochLog:
  """metrics.jsonl (the history rewritten, then a row per epoch) and the
  TensorBoard scalars; written by the lead process only."""

  def __init__(self, workdir: str, lead: bool, history: list):
    from tensorboardX import SummaryWriter  # no TensorFlow needed

    path = os.path.join(workdir, "metrics.jsonl") if lead else os.devnull
    self._file = open(path, "w")
    self._writer = SummaryWriter(
      os.path.join(workdir, "tensorboard"), write_to_disk=lead
    )
    for row in history:  # the resumed run's earlier epochs, rewritten
      self._file.write(json.dumps(row) + "\n")

  def write(self, row: dict, global_step: int) -> None:
    self._file.write(json.dumps(row) + "\n")
    self._file.flush()
    for key, value in row.items():
      if isinstance(value, (int, float)) and key != "epoch":
        self._writer.add_scalar(key, value, global_step)
    self._writer.flush()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._writer.close()
    self._file.close()


def _finish(run: _Run, state, confusion, workdir: str, lead: bool) -> dict:
  """results.json: the last epoch's row, the confusion, class names,
  compile count, wall time and devices; a resumed finished run returns
  its last row (and writes results.json if a kill came before it)."""
  history = run.history
  if confusion is None:  # resumed a finished run: nothing left to train
    written = os.path.exists(os.path.join(workdir, "results.json"))
    if jax.process_count() > 1:  # process 0 decides, so no host waits alone
      from jax.experimental import multihost_utils

      written = bool(multihost_utils.broadcast_one_to_all(np.int32(written)))
    if written or not history:
      return dict(history[-1]) if history else {}
    # Stopped after the last save but before results.json (a kill, a full
    # disk): evaluate the final state once and write it now.
    _, confusion = run.task.evaluate(state)
  final = dict(
    history[-1],
    confusion=confusion.tolist(),
    class_names=list(run.class_names),
    compiles=run.task.step._cache_size(),
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
