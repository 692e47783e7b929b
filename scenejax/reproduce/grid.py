"""The grid: a table expanded into runs (backbone x column variant x seed),
each run's config parsed as `python -m scenejax.main` parses it, and the
runs run one after another in this process (finished runs skipped,
interrupted ones resumed)."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex

import ml_collections
from absl import flags

from scenejax import config_lib
from scenejax.errors import ConfigError
from scenejax.reproduce.tables import TABLES, Column, Table


@dataclasses.dataclass(frozen=True)
class Run:
  dataset: str
  row: str
  variant: str
  seed: int
  config_file: str  # run with the variant as its argument
  overrides: tuple  # ((key, value), ...), applied after get_config
  workdir: str

  def config_flags(self, config_file: str | None = None) -> list[str]:
    return [f"--config={config_file or self.config_file}:{self.variant}"] + [
      f"--config.{k}={_flag_value(v)}" for k, v in self.overrides
    ]

  def command(self) -> str:
    flags_ = self.config_flags() + [f"--workdir={self.workdir}"]
    return "python -m scenejax.main " + " ".join(map(shlex.quote, flags_))


def _flag_value(value) -> str:
  return str(value).lower() if isinstance(value, bool) else str(value)


def _slug(variant: str) -> str:
  return variant.replace(",", "+").replace("=", "-")


def expand(
  table_name: str,
  dataset: str,
  rows: list[str] | None,
  seeds: int,
  workdir: str,
  settings: tuple = (),
) -> list[Run]:
  """The table's runs for `dataset` (backbone x column variant x seed, in
  an order where each SAS-Net stage follows the one it starts from)."""
  table = _table(table_name)
  if dataset not in table.configs:
    raise ConfigError(
      f"--dataset={dataset}: {table_name} covers {', '.join(table.configs)}"
    )
  available = table.backbones[dataset]
  rows = rows or list(available)
  unknown = [r for r in rows if r not in available]
  if unknown:
    raise ConfigError(
      f"--models: {', '.join(unknown)} not in {table_name} for {dataset}; "
      f"its rows: {', '.join(available)}"
    )
  if seeds < 1:
    raise ConfigError(f"--seeds={seeds}: give at least 1")
  runs = []
  for row in rows:
    backbone = available[row]
    for seed in range(seeds):
      for column in table.columns:
        for variant in column.variants:
          overrides = [("model", backbone.model), *backbone.overrides]
          if column.after:
            before = _column(table, column.after).variants[0]
            overrides.append(
              ("init_from", _run_dir(workdir, dataset, row, before, seed))
            )
          overrides += [("seed", seed), *settings]
          runs.append(
            Run(
              dataset,
              row,
              variant,
              seed,
              table.configs[dataset],
              tuple(dict(overrides).items()),
              _run_dir(workdir, dataset, row, variant, seed),
            )
          )
  return runs


def _table(name: str) -> Table:
  if name not in TABLES:
    raise ConfigError(f"--table={name}: one of {', '.join(TABLES)}")
  return TABLES[name]


def _column(table: Table, name: str) -> Column:
  return next(c for c in table.columns if c.name == name)


def _run_dir(workdir, dataset, row, variant, seed) -> str:
  return os.path.join(workdir, dataset, row, _slug(variant), f"seed{seed}")


def parse_settings(values: list[str]) -> tuple:
  """`KEY=VALUE` strings -> ((key, typed value), ...), typed by the field
  in config_lib.base()."""
  base = config_lib.base()
  out = []
  for text in values:
    key, sep, value = text.partition("=")
    if not sep:
      raise ConfigError(f"--set={text!r}: expected KEY=VALUE")
    if key == "seed":
      raise ConfigError(
        f"--set={text!r}: the seeds are the grid's (--seeds=N runs seeds "
        "0..N-1)"
      )
    current = base
    for part in key.split("."):
      if not isinstance(current, ml_collections.ConfigDict) or (
        part not in current
      ):
        message = config_lib.unknown_field_message(key)
        raise ConfigError(
          f"--set={text!r}: no config field {key!r}"
          + (f" ({message})" if message else "")
        )
      current = current[part]
    kind = type(current)
    if kind not in (bool, int, float, str):
      raise ConfigError(
        f"--set={text!r}: config.{key} is a {kind.__name__}; --set takes "
        "numbers, strings and booleans: change it in the recipe file"
      )
    if kind is bool:
      if value.lower() not in ("true", "false"):
        raise ConfigError(f"--set={text!r}: config.{key} is true or false")
      typed = value.lower() == "true"
    else:
      try:
        typed = kind(value)
      except (TypeError, ValueError):
        raise ConfigError(
          f"--set={text!r}: config.{key} is a {kind.__name__}"
        ) from None
    out.append((key, typed))
  return tuple(out)


def run_config(run: Run):
  """The run's config, parsed from `run.command()`'s flags by ml_collections
  as scenejax.main parses them (the recipe file with its argument, then the
  overrides), so the printed commands and the in-process runs agree."""
  from ml_collections import config_flags

  path = run.config_file
  if not os.path.exists(path):  # not run from the repository root
    package = os.path.dirname(os.path.abspath(__file__))  # scenejax/reproduce
    root = os.path.dirname(os.path.dirname(package))
    path = os.path.join(root, run.config_file)
  if not os.path.exists(path):
    raise ConfigError(
      f"{run.config_file} not found: run from the scenejax repository root"
    )
  argv = ["scenejax.main", *run.config_flags(path)]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file(
    "config", None, flag_values=values, sys_argv=argv, lock_config=True
  )
  values(argv)
  return values.config


def run_grid(runs: list[Run], log=print) -> str:
  """Runs `runs` in order in this process: a run with results.json is
  skipped, one with checkpoints resumes (the trainer's own resume).
  Returns "done", or "preempted" after a SIGTERM saved the current run."""
  from scenejax.training import loop

  for i, run in enumerate(runs, 1):
    where = (
      f"[{i}/{len(runs)}] {run.dataset} {run.row} {run.variant} seed {run.seed}"
    )
    config = run_config(run)
    _check_same_run(run.workdir, config)
    if os.path.exists(os.path.join(run.workdir, "results.json")):
      log(f"{where}: finished, skipped")
      continue
    resuming = os.path.isdir(os.path.join(run.workdir, "checkpoints"))
    log(f"{where}: {'resuming' if resuming else 'running'} in {run.workdir}")
    result = loop.train_and_evaluate(config, run.workdir)
    if result.get("preempted"):
      log(f"{where}: preempted and saved; run the same command again")
      return "preempted"
  return "done"


def _check_same_run(workdir: str, config) -> None:
  """A workdir from an earlier grid is reused only for the same config:
  e.g. runs of a --set=num_epochs=2 trial must not fill the real table."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    stored = _flat(json.load(f))
  wanted = _flat(json.loads(config.to_json()))
  differ = sorted(
    k for k in stored.keys() | wanted.keys() if stored.get(k) != wanted.get(k)
  )
  if differ:
    shown = ", ".join(
      f"{k}: {stored.get(k)!r} there, {wanted.get(k)!r} now" for k in differ[:3]
    )
    raise ConfigError(
      f"{workdir} holds a run with other settings ({shown}"
      + (", ..." if len(differ) > 3 else "")
      + "): use another --workdir, or remove that run"
    )


def _flat(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[prefix + key] = value
  return out
