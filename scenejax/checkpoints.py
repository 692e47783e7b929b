"""Checkpoints of a training workdir, its lock, and preemption.

WORKDIR/checkpoints is an orbax `CheckpointManager` directory: one step per
save, each holding "state" (the model and optimizer, `nnx.State`), "meta"
(JSON: epoch, step in epoch, the metrics history, the data iterator's state,
class names, batch size) and "metrics" (Top-1, for the best-checkpoint
policy across resumes). Saves are asynchronous; the manager keeps the
latest `config.checkpoint_keep` plus the best by Top-1.
WORKDIR/config.json is the resolved config of the run; WORKDIR/.lock is
held by the run training in it.

Faults: a failed save raises one CheckpointError within a step and removes
its temporary directory (`raise_if_save_failed`, `finish`); a damaged
checkpoint is set aside to WORKDIR/checkpoints_unreadable/ and the run
resumes from the newest one that reads (`restore_latest`).

Preemption: `Preemption.reached(step)` is True at the step where every
process must save. In one process that is the first step after SIGTERM. Under
`jax.distributed` the processes may see the signal at different steps; JAX's
preemption sync point, asked through orbax's
`CheckpointManager.reached_preemption`, agrees on one step for all of them,
so no process enters the save's barrier while another still runs the
step's collectives.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging as pylogging
import os
import shutil
import signal
import socket
import sys
import threading
import time

try:
  import fcntl
except ImportError:  # Windows: no lock
  fcntl = None

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils

from scenejax import optim
from scenejax.errors import CheckpointError, ConfigError, UserError

UNREADABLE = "checkpoints_unreadable"


def _top1(metrics: dict) -> float:
  return metrics["top1"]


def directory(workdir: str) -> str:
  return os.path.abspath(os.path.join(workdir, "checkpoints"))


def manager(workdir: str, keep: int = 2) -> ocp.CheckpointManager:
  """Orbax manager of WORKDIR/checkpoints: async saves, the latest `keep`
  plus the best by Top-1.

  `best_fn` makes orbax write each step's metrics beside it (and read them
  back when a run resumes); without it the preservation policy would see
  no metrics for the steps already on disk and drop the best one.
  """
  policies = ocp.checkpoint_managers
  options = ocp.CheckpointManagerOptions(
    enable_async_checkpointing=True,
    best_fn=_top1,
    best_mode="max",
    preservation_policy=policies.AnyPreservationPolicy(
      [
        policies.LatestN(keep),
        policies.BestN(
          get_metric_fn=_top1,
          n=1,
          keep_checkpoints_without_metrics=False,
        ),
      ]
    ),
  )
  return ocp.CheckpointManager(directory(workdir), options=options)


def save(
  checkpoints: ocp.CheckpointManager,
  step: int,
  state,
  meta: dict,
  metrics: dict | None = None,
) -> None:
  """Starts an asynchronous save of step `step` (first waiting for the
  previous one, whose failure raises here as CheckpointError)."""
  try:
    checkpoints.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
      ),
      metrics=metrics,
    )
  except Exception as e:  # any failure of the writer
    raise _save_failed(checkpoints, e) from e


def raise_if_save_failed(checkpoints: ocp.CheckpointManager) -> None:
  """Raises CheckpointError if the last asynchronous save has failed;
  returns at once while it is still running. Called during the epoch, so a
  full disk stops the run within a few steps, not an epoch later."""
  if not checkpoints.is_saving_in_progress():
    finish(checkpoints, close=False)


def finish(checkpoints: ocp.CheckpointManager, close: bool = True) -> None:
  """Waits for the running save (and closes the manager); its failure
  raises CheckpointError."""
  try:
    checkpoints.wait_until_finished()
    if close:
      checkpoints.close()
  except Exception as e:
    raise _save_failed(checkpoints, e) from e


@contextlib.contextmanager
def open_manager(workdir: str, keep: int = 2):
  """`with open_manager(workdir, keep) as m:` the manager of
  WORKDIR/checkpoints; on the way out it waits for the last save (whose
  failure raises CheckpointError) and closes, or, leaving on an error,
  stops its threads so the process can exit."""
  checkpoints = manager(workdir, keep)
  try:
    yield checkpoints
  except BaseException:
    abandon(checkpoints)
    raise
  finish(checkpoints)


def abandon(checkpoints: ocp.CheckpointManager) -> None:
  """On the way out of a failed run: stop the manager's threads (or the
  process would never exit) without raising a second error."""
  with contextlib.suppress(Exception):
    checkpoints.close()


def _join_orbax_threads(timeout: float) -> None:
  """Waits (up to `timeout` s in all) for orbax's writer threads. One
  failed write ends the save, but its siblings still run; closing the
  manager under them spills "Event loop is closed" pages and races the
  clean-up of the temporary directory."""
  deadline = time.monotonic() + timeout
  for thread in threading.enumerate():
    if (
      thread is not threading.current_thread()
      and type(thread).__module__.startswith("orbax.")
      and thread.is_alive()
    ):
      thread.join(max(0.0, deadline - time.monotonic()))


def _save_failed(
  checkpoints: ocp.CheckpointManager, error: Exception
) -> CheckpointError:
  """The one error a failed save gives, after removing its half-written
  temporary directory (on a full disk that also frees the space)."""
  _join_orbax_threads(timeout=120.0)  # the other writes of the failed save
  abandon(checkpoints)
  directory = str(checkpoints.directory)
  if jax.process_index() == 0 and os.path.isdir(directory):
    for name in os.listdir(directory):
      if ".orbax-checkpoint-tmp" in name:
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
  with contextlib.suppress(Exception):
    checkpoints.reload()
  kept = checkpoints.latest_step()
  return CheckpointError(
    f"saving a checkpoint to {directory} failed ({_one_line(error)}). "
    "Stopped; "
    + (
      f"the last complete checkpoint, step {kept}, is kept: fix the cause "
      "(disk space, permissions) and run again to resume from it"
      if kept is not None
      else "no complete checkpoint was written: fix the cause (disk space, "
      "permissions) and run again"
    )
  )


def _one_line(error: BaseException, limit: int = 300) -> str:
  """The innermost cause's message, on one line (tensorstore's own message
  names the file and byte range; orbax's wrappers add a page of spec)."""
  while error.__cause__ is not None:
    error = error.__cause__
  return " ".join(str(error).split())[:limit] or type(error).__name__


@contextlib.contextmanager
def _quiet_failed_reads():
  """A damaged checkpoint fails in many of orbax's read coroutines at once;
  the ones not awaited print "Exception ignored" and asyncio's "exception
  was never retrieved" pages. The failure is reported once, by the caller."""
  hook, asyncio_logger = sys.unraisablehook, pylogging.getLogger("asyncio")
  level = asyncio_logger.level
  sys.unraisablehook = lambda unraisable: None
  asyncio_logger.setLevel(pylogging.CRITICAL)
  try:
    yield
  finally:
    gc.collect()  # the abandoned coroutines go now, while muted
    sys.unraisablehook = hook
    asyncio_logger.setLevel(level)


def _restore(checkpoints: ocp.CheckpointManager, step: int, state, meta: bool):
  """Checkpoint `step` with `state`'s structure, shapes and shardings (and
  its meta JSON when `meta`)."""
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  items = dict(state=ocp.args.StandardRestore(abstract))
  if meta:
    items["meta"] = ocp.args.JsonRestore()
  return checkpoints.restore(step, args=ocp.args.Composite(**items))


def restore_latest(
  checkpoints: ocp.CheckpointManager, state, config
) -> tuple[object, dict]:
  """(state, meta) of the newest checkpoint that restores, or (state, {})
  when there is none. `state` gives the structure, shapes and shardings.

  A newer checkpoint that cannot be read (damaged by a crash, a full disk
  or a bad copy) is moved, not deleted, to WORKDIR/checkpoints_unreadable/,
  with a warning, and the run resumes from the newest one that reads. When
  none restores, the config does not fit them: ConfigError with the
  latest's reason.
  """
  failures = []
  for step in sorted(checkpoints.all_steps(), reverse=True):
    try:
      with _quiet_failed_reads():
        restored = _restore(checkpoints, step, state, meta=True)
      break
    except Exception as e:  # tensorstore raises many kinds
      failures.append((step, _one_line(e)))
  else:
    if not failures:
      return state, {}
    step, reason = failures[0]
    raise ConfigError(
      f"the checkpoint at {checkpoints.directory} (step {step}) does not "
      f"fit config.model = {config.model!r} and this config, and no older "
      f"one restores: {reason}"
    )
  if failures:
    _set_aside(checkpoints, [bad for bad, _ in failures])
    for bad, reason in failures:
      logging.warning(
        "checkpoint step %d in %s cannot be read (%s); moved to %s",
        bad,
        checkpoints.directory,
        reason,
        unreadable_directory(checkpoints.directory),
      )
  print(f"resuming from step {step} in {checkpoints.directory}", flush=True)
  return restored["state"], restored["meta"]


def unreadable_directory(checkpoint_dir) -> str:
  return os.path.join(os.path.dirname(str(checkpoint_dir)), UNREADABLE)


def _set_aside(checkpoints: ocp.CheckpointManager, steps: list[int]) -> None:
  """Moves the directories of `steps` to WORKDIR/checkpoints_unreadable/
  (kept for inspection; orbax would otherwise refuse to save those steps
  again), then has every process re-read the step list."""
  if jax.process_index() == 0:
    target = unreadable_directory(checkpoints.directory)
    os.makedirs(target, exist_ok=True)
    for step in steps:
      source = os.path.join(str(checkpoints.directory), str(step))
      moved = os.path.join(target, f"{step}.{int(time.time())}")
      os.replace(source, moved)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("scenejax_set_aside_checkpoints")
  checkpoints.reload()


def _reader(checkpoint_dir: str) -> ocp.CheckpointManager:
  """A manager that only reads (and creates nothing)."""
  return ocp.CheckpointManager(
    checkpoint_dir,
    options=ocp.CheckpointManagerOptions(
      create=False, read_only=True, best_fn=_top1, best_mode="max"
    ),
  )


def best_step(checkpoint_dir: str) -> int:
  """The step with the highest recorded Top-1, else the latest step (only
  mid-epoch saves, or saves of scenejax before 2026-11-23, which recorded
  no metrics)."""
  with contextlib.closing(_reader(checkpoint_dir)) as reader:
    step = reader.best_step()
    if step is None:
      step = reader.latest_step()
  if step is None:
    raise UserError(
      f"no checkpoint in {checkpoint_dir}: train first "
      "(python -m scenejax.main --workdir=...)"
    )
  return step


def read_meta(workdir: str, step: int) -> dict:
  """The JSON saved with checkpoint `step`: epoch, step in epoch, history,
  iterator state, class names, batch size."""
  return _read_step(
    workdir,
    step,
    lambda reader: reader.restore(
      step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
    )["meta"],
  )


def _read_step(workdir: str, step: int, read_fn):
  """`read_fn(reader)` on checkpoint `step` of a run, with errors that name
  the step and the other steps there."""
  checkpoint_dir = directory(workdir)
  with contextlib.closing(_reader(checkpoint_dir)) as reader:
    steps = list(reader.all_steps())
    if step not in steps:
      raise UserError(
        f"no checkpoint step {step} in {checkpoint_dir}; it has steps "
        f"{steps or 'none'}"
      )
    try:
      with _quiet_failed_reads():
        return read_fn(reader)
    except Exception as e:  # a damaged file; tensorstore raises many kinds
      others = [s for s in steps if s != step]
      raise CheckpointError(
        f"checkpoint step {step} in {checkpoint_dir} cannot be read "
        f"({_one_line(e)})"
        + (
          f"; pick another with --step (steps there: {others})"
          if others
          else "; it is the only one"
        )
      ) from e


def class_names(workdir: str, step: int) -> list[str]:
  """The class names of checkpoint `step` of a run: from its meta, or, for
  saves of scenejax before 2026-11-23, from WORKDIR/results.json."""
  names = read_meta(workdir, step).get("class_names")
  if names is None:
    path = os.path.join(workdir, "results.json")
    try:
      with open(path) as f:
        names = json.load(f)["class_names"]
    except (OSError, ValueError, KeyError) as e:
      raise UserError(
        f"checkpoint step {step} in {workdir} predates class names in "
        f"checkpoints, and {path} cannot give them ({e}): finish the run "
        "(run the trainer again) to write it"
      ) from None
  return names


def read_workdir_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a run saved in WORKDIR/config.json, with
  init_from cleared (its checkpoints hold every weight)."""
  path = os.path.join(workdir, "config.json")
  try:
    with open(path) as f:
      config = ml_collections.ConfigDict(json.load(f))
  except FileNotFoundError:
    raise UserError(
      f"{path} not found: {workdir} is not a training workdir"
    ) from None
  except json.JSONDecodeError as e:
    raise UserError(f"{path}: not valid JSON ({e})") from e
  config.init_from = ""
  return config


def restore_workdir(
  workdir: str,
  num_classes: int | None = None,
  step: int | None = None,
  sharding=None,
) -> tuple[ml_collections.ConfigDict, nnx.GraphDef, nnx.State, int]:
  """(config, graphdef, state, step) of checkpoint `step` of a run (default:
  the best by Top-1), placed with `sharding` (default: one device).
  `num_classes` defaults to the checkpoint's class names."""
  config = read_workdir_config(workdir)
  checkpoint_dir = directory(workdir)
  step = best_step(checkpoint_dir) if step is None else step
  if num_classes is None:
    num_classes = len(class_names(workdir, step))
  graphdef, state = optim.create_train_state(config, num_classes, 1)
  if sharding is not None:
    state = jax.device_put(state, sharding)
  state = _read_step(
    workdir, step, lambda reader: _restore(reader, step, state, False)
  )["state"]
  return config, graphdef, state, step


class WorkdirLock:
  """`with WorkdirLock(workdir):` one run at a time on a workdir.

  An exclusive `flock` on WORKDIR/.lock, held by process 0. The kernel
  releases it when the process exits or is killed (kill -9 too), so a dead
  run never leaves it stuck; the file names the holder for the error a
  second run gets.
  """

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = os.path.join(workdir, ".lock")
    self._file = None

  def __enter__(self):
    if jax.process_index() != 0 or fcntl is None:
      return self
    f = open(self.path, "a+")  # held until __exit__
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      f.seek(0)
      holder = f.read().strip() or "a process that has not written its name"
      f.close()
      raise UserError(
        f"{self.workdir} is in use by another run ({holder}): wait for it "
        "to finish or stop it, or give another --workdir"
      ) from None
    f.seek(0)
    f.truncate()
    f.write(
      f"pid {os.getpid()} on host {socket.gethostname()}, started "
      f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n"
    )
    f.flush()
    self._file = f
    return self

  def __exit__(self, *exc):
    if self._file is not None:
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
      self._file = None


class Preemption:
  """`with Preemption(manager) as p: ... if p.reached(step): save; stop`.

  One process: SIGTERM sets a flag (inside the `with` block), and
  `reached` is True from the next call on. Several processes
  (`jax.distributed`): JAX's preemption service receives SIGTERM, and
  orbax's `manager.reached_preemption(step)` (JAX's sync point) is True on
  every process at the same agreed step; it must be called at every step
  with the global step number.
  """

  def __init__(self, checkpoints: ocp.CheckpointManager):
    self._checkpoints = checkpoints
    self._signalled = False
    self._previous = None
    self._multihost = jax.process_count() > 1

  def __enter__(self):
    if (
      not self._multihost
      and threading.current_thread() is threading.main_thread()
    ):
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def _handle(self, signum, frame):
    del signum, frame
    self._signalled = True

  def reached(self, step: int) -> bool:
    if self._multihost:
      return self._checkpoints.reached_preemption(step)
    return self._signalled
