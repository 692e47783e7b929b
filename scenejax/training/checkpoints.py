"""Checkpoints of a training workdir, its lock, and preemption.

WORKDIR/checkpoints is an orbax `CheckpointManager` directory: one step per
save, each holding "state" (the model and optimizer, `nnx.State`), "meta"
(JSON: epoch, step in epoch, the metrics history, the data iterator's state,
class names, batch size) and "metrics" (Top-1; mIoU for segmentation, mAP for multi-label;
for the best-checkpoint policy across resumes). Saves are asynchronous; the manager keeps the
latest `config.checkpoint_keep` plus the best by the task's metric (Top-1, mIoU or mAP).
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
import io
import json
import logging as pylogging
import os
import re
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
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from scenejax import fileio, sharding, tasks
from scenejax.errors import CheckpointError, ConfigError, UserError
from scenejax.training import optim

UNREADABLE = "checkpoints_unreadable"


BEST_METRICS = ("top1", "mIoU", "mAP")


def _score(metrics: dict) -> float:
  """The metric a task saves beside each epoch's checkpoint: Top-1 for
  classification, mIoU for segmentation, mAP for multi-label
  (`tasks.base.Task.best_metric`)."""
  for key in BEST_METRICS:
    if key in metrics:
      return metrics[key]
  raise CheckpointError(
    f"checkpoint metrics {sorted(metrics)} have none of {BEST_METRICS}"
  )


def directory(workdir: str) -> str:
  return os.path.abspath(os.path.join(workdir, "checkpoints"))


def manager(workdir: str, keep: int = 2) -> ocp.CheckpointManager:
  """Orbax manager of WORKDIR/checkpoints: async saves, the latest `keep`
  plus the best by the task's metric (Top-1, mIoU or mAP).

  `best_fn` makes orbax write each step's metrics beside it (and read them
  back when a run resumes); without it the preservation policy would see
  no metrics for the steps already on disk and drop the best one.
  """
  policies = ocp.checkpoint_managers
  options = ocp.CheckpointManagerOptions(
    enable_async_checkpointing=True,
    best_fn=_score,
    best_mode="max",
    preservation_policy=policies.AnyPreservationPolicy(
      [
        policies.LatestN(keep),
        policies.BestN(
          get_metric_fn=_score,
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
  previous one, whose failure to write raises here as CheckpointError).

  A step already on disk is replaced: the epoch-end save that follows a
  preemption save on the epoch's last step holds the same state plus the
  epoch's Top-1, which orbax would otherwise skip silently."""
  try:
    if step in checkpoints.all_steps():
      checkpoints.delete(step)
    saved = checkpoints.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
      ),
      metrics=metrics,
    )
  except Exception as e:
    raise _save_failed(checkpoints, e) from e
  if not saved:
    raise RuntimeError(
      f"orbax declined to save step {step} (latest: "
      f"{checkpoints.latest_step()}); the step numbering is broken"
    )


def raise_if_save_failed(checkpoints: ocp.CheckpointManager) -> None:
  """Raises CheckpointError if the last asynchronous save has failed to
  write; returns at once while it is still running. Called during the
  epoch, so a full disk stops a run within `log_every_steps`, not an epoch
  later. One process only: under `jax.distributed` the processes could see
  the failure at different steps (and only process 0 writes the JSON
  items), so they learn of it at the next save, which they all enter."""
  if jax.process_count() == 1 and not checkpoints.is_saving_in_progress():
    finish(checkpoints, close=False)


def finish(checkpoints: ocp.CheckpointManager, close: bool = True) -> None:
  """Waits for the running save (and closes the manager); its failure to
  write raises CheckpointError."""
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
  stops its threads so the process can exit.

  Steps with a damaged metrics file are set aside first: orbax reads every
  step's metrics while it builds the manager, and one bad file would stop
  it there."""
  checkpoint_dir = directory(workdir)
  bad = _damaged_metrics(checkpoint_dir)
  if bad:
    _set_aside(checkpoint_dir, [(step, "damaged metrics file") for step in bad])
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


# Orbax gives no handle on a failed save's sibling writes, its temporary
# directory or its per-thread error logs; the three helpers below and
# `cli`'s log filter are the workarounds, tested against orbax 0.12.8
# (tests/test_faults.py) and pinned in setup.py.


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


_STORAGE_FAILURE = re.compile(
  r"RESOURCE_EXHAUSTED|PERMISSION_DENIED|DATA_LOSS|No space left|"
  r"Permission denied|Read-only file system|Input/output error|Disk quota"
)


def _is_storage_failure(error: BaseException) -> bool:
  """An OSError in the chain, or tensorstore's status for one. Anything
  else (unserialisable meta, a wrong argument) is a bug and keeps its
  traceback."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) or _STORAGE_FAILURE.search(str(error)):
      return True
    error = error.__cause__ or error.__context__
  return False


def _save_failed(
  checkpoints: ocp.CheckpointManager, error: Exception
) -> Exception:
  """The error a failed save raises, after the failed save's other writes
  end and (in one process) its half-written temporary directory is removed;
  on a full disk that frees the space. A storage failure becomes one
  CheckpointError naming the last complete step; any other error is
  returned as it is."""
  _join_orbax_threads(timeout=120.0)
  abandon(checkpoints)
  if not _is_storage_failure(error):
    return error
  checkpoint_dir = str(checkpoints.directory)
  # Under jax.distributed other processes may still write their shards
  # into it; orbax replaces a leftover when that step is saved again.
  if jax.process_count() == 1 and os.path.isdir(checkpoint_dir):
    for name in os.listdir(checkpoint_dir):
      if ".orbax-checkpoint-tmp" in name:
        shutil.rmtree(os.path.join(checkpoint_dir, name), ignore_errors=True)
  with contextlib.suppress(Exception):
    checkpoints.reload()
  kept = checkpoints.latest_step()
  return CheckpointError(
    f"saving a checkpoint to {checkpoint_dir} failed ({_one_line(error)}). "
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


def _read_quietly(read_fn) -> tuple[object, str | None]:
  """(read_fn(), None), or (None, why) when it raises.

  One damaged file fails one of orbax's many concurrent reads; the others
  finish afterwards into an event loop orbax has closed, and Python prints
  each one's "Event loop is closed" or "Exception ignored" traceback. So
  after a failure this waits a second with stderr and those hooks muted,
  and collects the abandoned coroutines; the caller reports the failure
  once."""
  try:
    return read_fn(), None
  except Exception as e:  # tensorstore raises many kinds
    reason = _one_line(e)
  hook, stderr = sys.unraisablehook, sys.stderr
  asyncio_logger = pylogging.getLogger("asyncio")
  level = asyncio_logger.level
  sys.unraisablehook, sys.stderr = (lambda unraisable: None), io.StringIO()
  asyncio_logger.setLevel(pylogging.CRITICAL)
  try:
    time.sleep(1.0)
    gc.collect()
  finally:
    sys.unraisablehook, sys.stderr = hook, stderr
    asyncio_logger.setLevel(level)
  return None, reason


def _restore(checkpoints: ocp.CheckpointManager, step: int, state, meta: bool):
  """Checkpoint `step` with `state`'s structure, shapes and shardings (and
  its meta JSON when `meta`)."""
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  items = dict(state=ocp.args.StandardRestore(abstract))
  if meta:
    items["meta"] = ocp.args.JsonRestore()
  return checkpoints.restore(step, args=ocp.args.Composite(**items))


def _try_restore(checkpoints, step: int, state) -> tuple[dict | None, str]:
  """(restored, "") or (None, why), after one retry (a second later): a
  network file system may fail a read once, and a good checkpoint must not
  be set aside."""
  for _ in range(2):
    restored, reason = _read_quietly(
      lambda: _restore(checkpoints, step, state, meta=True)
    )
    if reason is None:
      return restored, ""
  return None, reason


def _everywhere(ok: bool) -> bool:
  """True when `ok` on every process (one process: `ok`)."""
  if jax.process_count() == 1:
    return ok
  return bool(np.all(multihost_utils.process_allgather(np.array(ok))))


def restore_latest(
  checkpoints: ocp.CheckpointManager, state, config, steps_per_epoch: int
) -> tuple[object, dict]:
  """(state, meta) of the newest checkpoint that restores, or (state, {})
  when there is none. `state` gives the structure, shapes and shardings.

  A newer checkpoint that cannot be read (damaged by a crash, a full disk
  or a bad copy) is moved, not deleted, to WORKDIR/checkpoints_unreadable/,
  with a warning, and the run resumes from the newest one that reads on
  every process. When none restores, the config does not fit them:
  ConfigError with the latest's reason. So is a checkpoint saved with
  another batch size or training-set size (`_check_fits`), before anything
  is moved.
  """
  failures = []
  for step in sorted(checkpoints.all_steps(), reverse=True):
    restored, reason = _try_restore(checkpoints, step, state)
    if _everywhere(restored is not None):
      break
    failures.append((step, reason or "unreadable on another process"))
  else:
    if not failures:
      return state, {}
    step, reason = failures[0]
    raise ConfigError(
      f"no checkpoint in {checkpoints.directory} restores with "
      f"config.model = {config.model!r} and this config (another model or "
      f"class count, or damaged files); step {step}: {reason}"
    )
  _check_fits(restored["meta"], config, steps_per_epoch, checkpoints)
  if failures:
    _set_aside(str(checkpoints.directory), failures)
    checkpoints.reload()
  print(f"resuming from step {step} in {checkpoints.directory}", flush=True)
  return restored["state"], restored["meta"]


def _check_fits(meta: dict, config, steps_per_epoch: int, checkpoints) -> None:
  """A run resumes with the batch size and training-set size it was saved
  with: its step numbers, learning-rate schedule and data iterator position
  count batches of the epoch it had."""
  workdir = os.path.dirname(str(checkpoints.directory))
  saved = meta.get("batch_size")
  if saved is not None and saved != config.batch_size:
    raise ConfigError(
      f"config.batch_size = {config.batch_size}, but the run in {workdir} "
      f"was saved with batch_size = {saved}: its steps, learning-rate "
      "schedule and data position count batches of that size. Resume with "
      f"--config.batch_size={saved}, or give another --workdir"
    )
  saved = meta.get("steps_per_epoch")
  if saved is not None and saved != steps_per_epoch:
    raise ConfigError(
      f"the run in {workdir} was saved with {saved} steps per epoch, this "
      f"config gives {steps_per_epoch}: the training set changed size "
      "(config.dataset, config.data). Resume with the data it had, or give "
      "another --workdir"
    )


def unreadable_directory(checkpoint_dir) -> str:
  return os.path.join(os.path.dirname(str(checkpoint_dir)), UNREADABLE)


def _set_aside(checkpoint_dir: str, failures: list[tuple[int, str]]) -> None:
  """Moves the directories of the failed steps to
  WORKDIR/checkpoints_unreadable/ (kept for inspection; orbax would
  otherwise refuse to save those steps again), warning for each."""
  target = unreadable_directory(checkpoint_dir)
  if jax.process_index() == 0:
    os.makedirs(target, exist_ok=True)
    for step, _ in failures:
      source = os.path.join(checkpoint_dir, str(step))
      os.replace(source, os.path.join(target, f"{step}.{int(time.time())}"))
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("scenejax_set_aside_checkpoints")
  for step, reason in failures:
    logging.warning(
      "checkpoint step %d in %s cannot be read (%s); moved to %s",
      step,
      checkpoint_dir,
      reason,
      target,
    )


def _damaged_metrics(checkpoint_dir: str) -> list[int]:
  """Steps whose metrics file (written for the best-checkpoint policy) is
  not valid JSON."""
  bad = []
  if not os.path.isdir(checkpoint_dir):
    return bad
  for name in os.listdir(checkpoint_dir):
    path = os.path.join(checkpoint_dir, name, "metrics", "metrics")
    if name.isdigit() and os.path.isfile(path):
      try:
        with open(path, encoding="utf-8") as f:
          json.load(f)
      except (OSError, ValueError):
        bad.append(int(name))
  return sorted(bad)


def _reader(checkpoint_dir: str) -> ocp.CheckpointManager:
  """A manager that only reads (and creates nothing)."""
  bad = _damaged_metrics(checkpoint_dir)
  if bad:
    raise CheckpointError(
      f"checkpoint step(s) {bad} in {checkpoint_dir} have a damaged "
      "metrics/metrics file: run the trainer on this workdir once, which "
      f"moves them to {UNREADABLE}/, or move them there yourself"
    )
  return ocp.CheckpointManager(
    checkpoint_dir,
    options=ocp.CheckpointManagerOptions(
      create=False, best_fn=_score, best_mode="max"
    ),
  )


def best_step(checkpoint_dir: str) -> int:
  """The step with the highest recorded best metric (Top-1, mIoU or mAP:
  `tasks.base.Task.best_metric`), else the latest step (only mid-epoch
  saves: they record no metrics)."""
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
    result, reason = _read_quietly(lambda: read_fn(reader))
    if reason is None:
      return result
  others = [s for s in steps if s != step]
  raise CheckpointError(
    f"checkpoint step {step} in {checkpoint_dir} cannot be read ({reason})"
    + (
      f"; pick another with --step (steps there: {others})"
      if others
      else "; it is the only one"
    )
  )


def class_names(workdir: str, step: int) -> list[str]:
  """The class names of checkpoint `step` of a run (its meta)."""
  names = read_meta(workdir, step).get("class_names")
  if names is None:
    raise CheckpointError(
      f"checkpoint step {step} in {workdir} carries no class names: not a "
      "scenejax training checkpoint"
    )
  return names


SPLIT_RECORD = "dataset_split.json"


def write_split_record(workdir: str, record: dict) -> None:
  fileio.write_json(os.path.join(workdir, SPLIT_RECORD), record)


def check_split_record(workdir: str, record: dict) -> None:
  """The dataset's `split_record` (an image folder: which folder, how many
  images, which were held out), written into the workdir by the first run
  (`write_split_record`): a later run of the workdir must see the same
  splits, or it would resume on other data (and evaluate on images it
  trained on)."""
  path = os.path.join(workdir, SPLIT_RECORD)
  if os.path.exists(path):
    try:
      with open(path) as f:
        saved = json.load(f)
    except (OSError, ValueError) as e:
      raise ConfigError(
        f"{path} cannot be read ({_one_line(e)}); it records this run's "
        "dataset splits: restore it, or train in a new workdir"
      ) from e
    for key in sorted(saved.keys() | record.keys()):
      if saved.get(key) != record.get(key):
        was, now = saved.get(key), record.get(key)
        if isinstance(was, list) or isinstance(now, list):
          was, now = f"{len(was or [])} files", f"{len(now or [])} files"
        raise ConfigError(
          f"{path}: this run's dataset was {key} = {was}, the data now "
          f"gives {now}. Restore the data as it was, or train in a new "
          "workdir"
        )


def is_training_workdir(path: str) -> bool:
  """A scenejax training workdir (config.json + checkpoints/), e.g. a
  segmenter trained with config.task = "segmentation"."""
  return os.path.isfile(os.path.join(path, "config.json")) and os.path.isdir(
    os.path.join(path, "checkpoints")
  )


def read_workdir_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a run saved in WORKDIR/config.json, with
  init_from cleared (its checkpoints hold every weight)."""
  path = os.path.join(workdir, "config.json")
  try:
    with open(path) as f:
      config = ml_collections.ConfigDict(json.load(f))
  except FileNotFoundError:
    if not os.path.isdir(workdir):
      raise UserError(
        f"workdir {workdir} does not exist (a typo? a run writes its "
        "workdir with --workdir=DIR)"
      ) from None
    raise UserError(
      f"{path} not found: {workdir} is not a training workdir (no run "
      "wrote its config.json there)"
    ) from None
  except json.JSONDecodeError as e:
    raise UserError(f"{path}: not valid JSON ({e})") from e
  config.init_from = ""
  return config


def abstract_train_state(config, num_classes: int, sharding=None):
  """(graphdef, state) of the run's model and optimizer with every array a
  `jax.ShapeDtypeStruct` (placed with `sharding`, default one device): the
  restore target. Nothing is initialised, so no initializer is compiled
  or run (seconds per model on XLA:CPU) for values the checkpoint
  replaces."""
  found = {}

  def build():
    graphdef, state = optim.create_train_state(
      tasks.build_model(config, num_classes), config, 1
    )
    found["graphdef"] = graphdef
    return state

  abstract = jax.eval_shape(build)
  placed = sharding or NamedSharding(
    jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",)), P()
  )
  abstract = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=placed),
    abstract,
  )
  return found["graphdef"], abstract


def restore_workdir(
  workdir: str,
  num_classes: int | None = None,
  step: int | None = None,
  sharding=None,
) -> tuple[ml_collections.ConfigDict, nnx.GraphDef, nnx.State, int]:
  """(config, graphdef, state, step) of checkpoint `step` of a run (default:
  the best by its task's metric), placed with `sharding` (default: one device).
  `num_classes` defaults to the checkpoint's class names."""
  config = read_workdir_config(workdir)
  checkpoint_dir = directory(workdir)
  step = best_step(checkpoint_dir) if step is None else step
  if num_classes is None:
    num_classes = len(class_names(workdir, step))
  graphdef, state = abstract_train_state(config, num_classes, sharding)
  state = _read_step(
    workdir, step, lambda reader: _restore(reader, step, state, False)
  )["state"]
  return config, graphdef, state, step


def restore_for_eval(workdir: str, num_classes: int, step: int | None):
  """The "restore a run for evaluation" sequence every evaluation shares:
  (mesh of all devices, graphdef, state replicated on it, step, the
  model's (pixel_mean, pixel_std)) of checkpoint `step` (default: best)."""
  mesh = sharding.data_parallel_mesh()
  _, graphdef, state, step = restore_workdir(
    workdir, num_classes, step, NamedSharding(mesh, P())
  )
  model = nnx.merge(graphdef, state)[0]
  return mesh, graphdef, state, step, (model.pixel_mean, model.pixel_std)


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
    holder = self._acquire() if jax.process_index() == 0 else None
    if jax.process_count() > 1:  # every process stops if process 0 must
      refused = multihost_utils.broadcast_one_to_all(np.int32(bool(holder)))
      holder = holder or ("see process 0" if refused else None)
    if holder:
      raise UserError(
        f"{self.workdir} is in use by another run ({holder}): wait for it "
        "to finish or stop it, or give another --workdir"
      )
    return self

  def _acquire(self) -> str | None:
    """Takes the lock; None, or the holder's description if another
    process has it."""
    if fcntl is None:
      return None
    f = open(self.path, "a+")  # held until __exit__
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or "a process that has not written its name"
      f.close()
      return holder
    except OSError as e:  # a file system without flock (some NFS, Lustre)
      f.close()
      logging.warning(
        "%s: cannot lock (%s); running without a workdir lock", self.path, e
      )
      return None
    f.seek(0)
    f.truncate()
    f.write(
      f"pid {os.getpid()} on host {socket.gethostname()}, started "
      f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n"
    )
    f.flush()
    self._file = f
    return None

  def __exit__(self, *exc):
    if self._file is not None:
      self._file.truncate(0)  # no stale holder for the next reader
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
