"""Tasks: what a run trains and how it is evaluated, looked up by name.

`config.task` names the task (scenic's trainer registry, big_vision's "load
the module by name"): "classification" ([SP], [PCL]; SAS-Net's two-branch
models run as `semantic_aware`), "segmentation" ([SEG]) and "multilabel"
([SADCL]) are the modules of this package, loaded on first use, so the
training loop, the commands and the workdir code never import a concrete
task. Nothing outside this package branches on the task.

A task is any object (a module here) with

  load_data(config) -> datasets.Dataset-like (num_classes, class_names,
      train, test)
  build_model(config, num_classes) -> nnx.Module (pixel_mean, pixel_std)
  make_task(config, data, graphdef, mesh, pixel_stats) -> base.Task

and optionally

  validate(config, check: config_lib.Checks)   its fields, after the
      common ones
  apply_variant(config, arg) -> config          the `--config=F.py:ARG`
      comma list
  evaluate_checkpoint(workdir, config, step, *, ten_crop, head) -> dict
      what `python -m scenejax.evaluate` reports
  export_fields(config) -> dict                 extra model.json fields
      (raise errors.UserError where the model cannot be exported)
  REPORT = "module:function"                    the report command's page
      of a workdir, loaded by name

`register(name, task)` adds one from anywhere (a test file, a notebook):
then `config.task = name` trains it through the shared loop.
"""

from __future__ import annotations

import importlib
from typing import Any

from scenejax import models
from scenejax.errors import ConfigError

# The built-in tasks: config.task values, each a module of this package.
BUILTIN = ("classification", "segmentation", "multilabel")

_registered: dict[str, Any] = {}


def register(name: str, task: Any) -> None:
  """Makes `config.task = name` run `task` (see the module docstring)."""
  for hook in ("load_data", "build_model", "make_task"):
    if not callable(getattr(task, hook, None)):
      raise TypeError(f"task {name!r} has no {hook}()")
  _registered[name] = task


def unregister(name: str) -> None:
  _registered.pop(name, None)


def names() -> tuple[str, ...]:
  """Every config.task value: the built-in ones, then the registered."""
  return BUILTIN + tuple(n for n in _registered if n not in BUILTIN)


def get(name: str) -> Any:
  """The task called `name` (a config.task value, or "semantic_aware")."""
  if name in _registered:
    return _registered[name]
  if name in BUILTIN or name == "semantic_aware":
    return importlib.import_module(f"{__name__}.{name}")
  raise ConfigError(
    f"config.task = {name!r}; allowed: {' | '.join(names())} (or register "
    "a task with scenejax.tasks.register)"
  )


def name_for(config) -> str:
  """The task that runs `config`: config.task, except that a SAS-Net model
  under "classification" runs the semantic-aware task."""
  name = config.get("task", "classification")
  if name == "classification" and config.model in models.SEMANTIC_AWARE:
    return "semantic_aware"
  return name


def for_config(config) -> Any:
  """The task that runs `config` (`name_for`)."""
  return get(name_for(config))


def build_model(config, num_classes: int):
  """The model of `config`, built by its task."""
  return for_config(config).build_model(config, num_classes)
