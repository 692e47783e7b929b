"""Optimizers, learning-rate schedules and parameter groups.

[SP] fine-tunes with Adam (PyTorch's `Adam(weight_decay=...)`, i.e. L2
added to the gradient), learning rate 1e-3 for the classifier and 1e-5 for
the backbone, multiplied by 0.1 at epochs 10, 15 and 20. [PCL] trains from
scratch with SGD, momentum 0.9, learning rate 0.1 and cosine annealing.

Parameter groups are regex rules in the config, as in big_vision:
`config.optimizer.param_groups` is a sequence of (group, regex) pairs; a
parameter belongs to the first group whose regex fully matches its path
("backbone/head/kernel"). Every parameter must land in a group and every
rule must match a parameter, or `ConfigError` lists the ones that do not.
The "head" group gets `learning_rate`, the "backbone" group
`backbone_learning_rate` (0: the head's), and the "frozen" group no update
at all, weight decay included (`optax.set_to_zero`; SAS-Net's stages train
one part of the network at a time).

The step decay multiplies both groups' rates (the head's too): [SP] §4.3
states one schedule and does not exempt the classifier.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jax
import ml_collections
import optax
from flax import nnx

from scenejax.errors import ConfigError

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine", "step", "poly")
GROUPS = ("head", "backbone", "frozen")


def learning_rate_schedule(
  cfg: ml_collections.ConfigDict,
  base_lr: float,
  steps_per_epoch: int,
  num_epochs: int,
) -> optax.Schedule | float:
  """constant | cosine (to 0 over the run, per step, [PCL]) | step (x0.1 at
  each of `cfg.decay_epochs`, [SP]: epochs 10, 15, 20) | poly (DeepLab's
  lr · (1 - t/T)^0.9 over the run's T steps, per step)."""
  if cfg.schedule == "poly":
    return optax.polynomial_schedule(
      base_lr, 0.0, 0.9, steps_per_epoch * num_epochs
    )
  if cfg.schedule == "cosine":
    return optax.cosine_decay_schedule(base_lr, steps_per_epoch * num_epochs)
  if cfg.schedule == "constant":
    return base_lr
  if cfg.schedule == "step":
    return optax.piecewise_constant_schedule(
      base_lr, {int(e) * steps_per_epoch: 0.1 for e in cfg.decay_epochs}
    )
  raise ConfigError(
    f"config.optimizer.schedule = {cfg.schedule!r}; expected one of {SCHEDULES}"
  )


def parameter_path(path) -> str:
  """'backbone/head/kernel' for a pytree path into an nnx.State."""
  names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
  return "/".join(n for n in names if n != "value")


def parameter_groups(params, rules: Sequence[tuple[str, str]]) -> object:
  """The pytree of group names of `params` under the (group, regex) rules:
  the first rule whose regex fully matches a parameter's path wins.

  Raises ConfigError if a parameter matches no rule, or a rule matches no
  parameter (a typo in a regex would otherwise move nothing, silently).
  """
  compiled = []
  for group, pattern in rules:
    if group not in GROUPS:
      raise ConfigError(
        f"config.optimizer.param_groups: group {group!r}; "
        f"expected one of {GROUPS}"
      )
    try:
      compiled.append((group, re.compile(pattern)))
    except re.error as e:
      raise ConfigError(
        f"config.optimizer.param_groups: bad regex "
        f"{pattern!r} for {group!r}: {e}"
      ) from e
  used, unmatched = set(), []

  def label(path, _):
    name = parameter_path(path)
    for i, (group, regex) in enumerate(compiled):
      if regex.fullmatch(name):
        used.add(i)
        return group
    unmatched.append(name)
    return None

  labels = jax.tree_util.tree_map_with_path(label, params)
  if unmatched:
    raise ConfigError(
      f"config.optimizer.param_groups: {len(unmatched)} parameter(s) match "
      f"no rule, e.g. {unmatched[:3]}; add a rule (a last ('backbone', "
      "'.*') catches the rest)"
    )
  unused = [rules[i] for i in range(len(rules)) if i not in used]
  if unused:
    raise ConfigError(
      f"config.optimizer.param_groups: rule(s) {unused} "
      "match no parameter of this model"
    )
  return labels


def make_optimizer(
  cfg: ml_collections.ConfigDict, steps_per_epoch: int, num_epochs: int
) -> optax.GradientTransformation:
  """Adam or SGD (momentum) with L2 weight decay added to the gradient
  (PyTorch's `weight_decay`, as both papers use), on `cfg.schedule`.

  With `cfg.backbone_learning_rate` > 0, the groups of `cfg.param_groups`
  get their own rates: head `cfg.learning_rate`, backbone
  `cfg.backbone_learning_rate` ([SP]: 1e-3 / 1e-5); parameters of a
  "frozen" group are not updated (the groups apply then even at
  backbone_learning_rate 0, the backbone at the head's rate).
  """
  if cfg.name not in OPTIMIZERS:
    raise ConfigError(
      f"config.optimizer.name = {cfg.name!r}; expected one of {OPTIMIZERS}"
    )

  def optimizer(base_lr):
    lr = learning_rate_schedule(cfg, base_lr, steps_per_epoch, num_epochs)
    update = (
      optax.adam(lr)
      if cfg.name == "adam"
      else optax.sgd(lr, momentum=cfg.momentum)
    )
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay), update)

  rules = tuple(tuple(rule) for rule in cfg.param_groups)
  frozen = any(group == "frozen" for group, _ in rules)
  if not cfg.backbone_learning_rate and not frozen:
    return optimizer(cfg.learning_rate)
  return optax.multi_transform(
    {
      "head": optimizer(cfg.learning_rate),
      "backbone": optimizer(cfg.backbone_learning_rate or cfg.learning_rate),
      "frozen": optax.set_to_zero(),
    },
    lambda params: parameter_groups(params, rules),
  )


def create_train_state(
  model: nnx.Module, config: ml_collections.ConfigDict, steps_per_epoch: int
) -> tuple[nnx.GraphDef, nnx.State]:
  """(graphdef, state) of `model` (built by its task) and the optimizer of
  `config.optimizer`."""
  tx = make_optimizer(config.optimizer, steps_per_epoch, config.num_epochs)
  return nnx.split((model, nnx.Optimizer(model, tx, wrt=nnx.Param)))
