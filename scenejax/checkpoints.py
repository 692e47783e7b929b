"""Checkpoints of a training workdir, and preemption.

WORKDIR/checkpoints is an orbax `CheckpointManager` directory: one step per
save, each holding "state" (the model and optimizer, `nnx.State`) and
"meta" (JSON: epoch, step in epoch, the metrics history, the data
iterator's state, class names). Saves are asynchronous; the manager keeps
the latest `config.checkpoint_keep` plus the best by Top-1.
WORKDIR/config.json is the resolved config of the run.

Preemption: `Preemption.reached(step)` is True at the step where every
process must save. In one process that is the first step after SIGTERM. Under
`jax.distributed` the processes may see the signal at different steps; JAX's
preemption sync point, asked through orbax's
`CheckpointManager.reached_preemption`, agrees on one step for all of them,
so no process enters the save's barrier while another still runs the
step's collectives.
"""

from __future__ import annotations

import json
import os
import signal
import threading

import jax
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx

from scenejax import optim
from scenejax.errors import ConfigError, UserError


def directory(workdir: str) -> str:
  return os.path.abspath(os.path.join(workdir, "checkpoints"))


def manager(workdir: str, keep: int = 2) -> ocp.CheckpointManager:
  """Orbax manager of WORKDIR/checkpoints: async saves, the latest `keep`
  plus the best by Top-1."""
  policies = ocp.checkpoint_managers
  options = ocp.CheckpointManagerOptions(
    enable_async_checkpointing=True,
    preservation_policy=policies.AnyPreservationPolicy(
      [
        policies.LatestN(keep),
        policies.BestN(
          get_metric_fn=lambda m: m["top1"],
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
  checkpoints.save(
    step,
    args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
    ),
    metrics=metrics,
  )


def restore_latest(
  checkpoints: ocp.CheckpointManager, state, config
) -> tuple[object, dict]:
  """(state, meta) of the latest complete checkpoint, or (state, {}) when
  there is none. `state` gives the structure, shapes and shardings."""
  step = checkpoints.latest_step()
  if step is None:
    return state, {}
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  try:
    restored = checkpoints.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
      ),
    )
  except (ValueError, KeyError, TypeError) as e:
    raise ConfigError(
      f"the checkpoint at {checkpoints.directory} (step {step}) does not "
      f"fit config.model = {config.model!r} and this config: "
      f"{' '.join(str(e).split())[:300]}"
    ) from e
  print(f"resuming from step {step} in {checkpoints.directory}", flush=True)
  return restored["state"], restored["meta"]


def best_step(checkpoint_dir: str) -> int:
  """The step with the highest recorded Top-1, else the latest step."""
  reader = ocp.CheckpointManager(
    checkpoint_dir,
    options=ocp.CheckpointManagerOptions(
      create=False, best_fn=lambda m: m["top1"], best_mode="max"
    ),
  )
  step = reader.best_step() or reader.latest_step()
  reader.close()
  if step is None:
    raise UserError(
      f"no checkpoint in {checkpoint_dir}: train first "
      "(python -m scenejax.main --workdir=...)"
    )
  return step


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
  workdir: str, num_classes: int, step: int | None = None, sharding=None
) -> tuple[ml_collections.ConfigDict, nnx.GraphDef, nnx.State, int]:
  """(config, graphdef, state, step) of checkpoint `step` of a run (default:
  the best by Top-1), placed with `sharding` (default: one device)."""
  config = read_workdir_config(workdir)
  graphdef, state = optim.create_train_state(config, num_classes, 1)
  if sharding is not None:
    state = jax.device_put(state, sharding)
  checkpoint_dir = directory(workdir)
  step = best_step(checkpoint_dir) if step is None else step
  reader = ocp.CheckpointManager(checkpoint_dir)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  state = reader.restore(
    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
  )["state"]
  reader.close()
  return config, graphdef, state, step


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
