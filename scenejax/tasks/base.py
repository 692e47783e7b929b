"""What every task shares: the `Task` the training loop runs, the optimizer
update, and the jit of a step over the mesh.

A task's jitted `step(state, batch, epoch, aux) -> (state, metrics)` trains
and its `evaluate(state) -> (metrics row, confusion)` runs after each epoch;
`scenejax.training.loop` runs any `Task`, so tasks differ only in their
step, metrics and data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P


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
