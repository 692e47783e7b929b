"""Reproduce a paper's table: expand it into runs, run them, collect.

  # Every run of [SP] Table 3 on MIT-67 for two backbones, three seeds, one
  # after another (finished runs skipped, interrupted ones resumed):
  python -m scenejax.reproduce --table=sp3 --dataset=mit67 \
      --models=resnet50,vit_b16 --seeds=3 --workdir=runs/
  # The same grid as one `python -m scenejax.main ...` line per run, for a
  # cluster scheduler (e.g. line $SLURM_ARRAY_TASK_ID of the file):
  python -m scenejax.reproduce --table=sp3 --dataset=mit67 --seeds=3 \
      --workdir=runs/ --print_commands > sp3.txt
  # The table from the runs' results.json (missing cells marked):
  python -m scenejax.reproduce --table=sp3 --dataset=mit67 --seeds=3 \
      --workdir=runs/ --collect

A run's workdir is WORKDIR/DATASET/MODEL/VARIANT/seedN, shared by every table
that has the run (the baseline of sp1..sp4 runs once). The table is written
as WORKDIR/TABLE_DATASET.md and .html: each cell our mean +- std over the
seeds (Top-1 %, and Top-5 for [PCL]) beside the paper's number, the delta to
our baseline next to the paper's delta, and "(!)" where the two deltas'
signs differ.

--set=KEY=VALUE (repeatable) changes every run's config (e.g.
--set=num_epochs=2), in the printed commands as --config.KEY=VALUE.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import shlex
import sys

import ml_collections
import numpy as np
from absl import flags

from scenejax import cli, config_lib, fileio
from scenejax.errors import ConfigError, UserError


@dataclasses.dataclass(frozen=True)
class Backbone:
  """A table row's model and the recipe changes it needs ([SP] §4.1)."""

  model: str  # scenejax.models name
  overrides: tuple[tuple[str, object], ...] = ()


@dataclasses.dataclass(frozen=True)
class Column:
  name: str
  # Config arguments; with several, the cell is the best of them (Table 4).
  variants: tuple[str, ...]
  # SAS-Net's stages: the column whose run this one starts from.
  after: str = ""


@dataclasses.dataclass(frozen=True)
class Table:
  title: str
  configs: dict  # dataset -> the recipe file the runs start from
  backbones: dict  # dataset -> {row name -> Backbone}
  columns: tuple  # the first is the baseline the deltas are taken to
  paper: dict  # (dataset, row) -> one number per column and metric
  metrics: tuple = ("top1",)


_IN1K = (("num_epochs", 100),)  # [SP] §4.1: 100 epochs ...
_IN22K = (("num_epochs", 30),)  # ... 30 for ImageNet-22k backbones

# [SP] Tables 1-4: the eight backbones, ImageNet-pretrained; batch 32, Adam,
# head 1e-3 / backbone 1e-5 (config_lib.base()).
SP_BACKBONES = {
  "resnet50": Backbone(
    "resnet50", (("init_from", "checkpoints/resnet-50"), *_IN1K)
  ),
  "vgg16": Backbone(
    "vgg16", (("init_from", "checkpoints/vgg16.tv_in1k"), *_IN1K)
  ),
  # torchvision's weights, converted (python -m scenejax.convert): IMAGENET1K_V1,
  # the pretrained=True file of the PyTorch code [SP] builds on.
  "mobilenet": Backbone(
    "mobilenetv3_large",
    (
      ("init_from", "checkpoints/mobilenet_v3_large-8738ca79.safetensors"),
      *_IN1K,
    ),
  ),
  # Width 2.0: [SP] Tables 1-3 give "7M" parameters (x1.0 has 2.3M, x2.0
  # 7.4M with the 1000-class head, as the table counts every model).
  "shufflenet": Backbone(
    "shufflenet_v2_x2_0",
    (
      ("init_from", "checkpoints/shufflenetv2_x2_0-8be3c8ee.safetensors"),
      *_IN1K,
    ),
  ),
  # [SP] §4.1: "For the MobileViT model, we increase the initial learning
  # rate by a factor of 10" (both rates).
  "mobilevit": Backbone(
    "mobilevit_s",
    (
      ("init_from", "checkpoints/mobilevit-small"),
      ("optimizer.learning_rate", 1e-2),
      ("optimizer.backbone_learning_rate", 1e-4),
      *_IN1K,
    ),
  ),
  "swin_b": Backbone(
    "swin_b",
    (("init_from", "checkpoints/swin-base-patch4-window7-224-in22k"), *_IN22K),
  ),
  "vit_b16": Backbone(
    "vit_b16",
    (
      (
        "init_from",
        "gs://vit_models/augreg/B_16-i21k-300ep-lr_0.001-aug_medium1-"
        "wd_0.1-do_0.0-sd_0.0.npz",
      ),
      *_IN22K,
    ),
  ),
  "convnext_base": Backbone(
    "convnext_base",
    (("init_from", "checkpoints/convnext-base-224-22k"), *_IN22K),
  ),
}
# The tests' and the demo's tiny grid (synthetic scenes, configs/demo.py).
DEMO_BACKBONES = {"resnet_tiny": Backbone("resnet_tiny")}
SP_CONFIGS = {
  "mit67": "configs/mit67_resnet50.py",
  "sun397": "configs/sun397_convnext.py",
  "synthetic_scenes": "configs/demo.py",
}
SP_ROWS = tuple(SP_BACKBONES)
_SP_ROWS_OF = {
  "mit67": SP_BACKBONES,
  "sun397": SP_BACKBONES,
  "synthetic_scenes": DEMO_BACKBONES,
}

# [SP] Tables 1-4, Top-1 % as published, rows in SP_ROWS order.
_SP1 = {  # baseline, LSR, GLS cosine, GLS Euclidean
  "mit67": [
    (76.493, 76.417, 78.805, 79.403),
    (73.358, 74.078, 74.104, 75.0),
    (69.179, 68.507, 71.045, 71.119),
    (72.090, 73.209, 74.925, 74.701),
    (74.552, 75.522, 78.134, 77.91),
    (88.681, 88.657, 89.03, 88.906),
    (86.194, 86.642, 86.940, 87.015),
    (87.388, 87.239, 88.507, 88.657),
  ],
  "sun397": [
    (60.423, 59.028, 61.863, 62.060),
    (57.204, 57.950, 58.503, 58.715),
    (53.375, 53.043, 55.657, 54.625),
    (58.181, 57.950, 59.385, 60.08),
    (59.033, 59.283, 61.219, 61.28),
    (75.063, 74.826, 77.013, 77.194),
    (75.078, 75.043, 75.758, 75.677),
    (74.675, 75.017, 77.274, 77.239),
  ],
}
_SP2 = {  # baseline, CL, BCL cos/euc mean_inter, cos/euc nonzero_inter_intra
  "mit67": [
    (76.493, 76.642, 77.014, 76.94, 76.866, 76.866),
    (73.358, 74.327, 74.851, 74.701, 74.254, 74.403),
    (69.179, 68.358, 69.478, 68.433, 68.582, 68.433),
    (72.090, 72.564, 73.134, 73.507, 74.104, 73.358),
    (74.552, 74.776, 75.149, 75.149, 76.194, 75.075),
    (88.681, 89.328, 89.179, 89.701, 89.403, 89.328),
    (86.194, 86.342, 86.269, 86.418, 86.493, 86.493),
    (87.388, 87.462, 87.835, 87.537, 88.657, 87.537),
  ],
  "sun397": [
    (60.423, 60.635, 61.033, 60.806, 60.916, 60.821),
    (57.204, 57.09, 57.436, 57.219, 57.108, 57.033),
    (53.375, 53.169, 53.270, 53.713, 54.055, 54.055),
    (58.181, 58.176, 58.761, 58.695, 59.073, 58.332),
    (59.033, 59.264, 59.511, 59.179, 60.121, 59.073),
    (75.063, 74.7, 75.037, 75.088, 75.95, 74.877),
    (75.078, 75.264, 75.416, 75.314, 75.521, 75.275),
    (74.675, 74.632, 74.942, 74.866, 75.592, 74.635),
  ],
}
_SP3 = {  # baseline, GLS + BCL cos/euc mean_inter, cos/euc nonzero_inter_intra
  "mit67": [
    (76.493, 79.104, 78.881, 78.433, 78.806),
    (73.358, 75.0, 75.522, 73.881, 75.746),
    (69.179, 71.045, 70.224, 70.149, 70.223),
    (72.090, 75.298, 74.402, 74.179, 74.328),
    (74.552, 79.104, 77.836, 74.851, 77.910),
    (88.681, 89.03, 89.104, 89.03, 89.179),
    (86.194, 87.388, 86.866, 86.567, 86.791),
    (87.388, 88.805, 88.433, 88.358, 88.433),
  ],
  "sun397": [
    (60.423, 62.086, 62.161, 62.358, 62.045),
    (57.204, 58.519, 58.982, 57.516, 58.872),
    (53.375, 55.869, 56.166, 54.232, 56.317),
    (58.181, 59.788, 60.171, 59.954, 60.171),
    (59.033, 61.274, 61.365, 60.71, 61.476),
    (75.063, 77.118, 77.083, 77.294, 77.108),
    (75.078, 75.682, 75.768, 75.768, 75.597),
    (74.675, 77.259, 77.259, 77.406, 77.229),
  ],
}


def _best(*tables_columns):
  """[SP] Table 4's cells: the best of the given columns of Tables 1-3."""
  out = {}
  for dataset in ("mit67", "sun397"):
    rows = []
    for r in range(len(SP_ROWS)):
      rows.append(
        tuple(
          max(table[dataset][r][c] for c in cols)
          for table, cols in tables_columns
        )
      )
    out[dataset] = rows
  return out


def _paper(per_dataset):
  return {
    (dataset, row): values
    for dataset, rows in per_dataset.items()
    for row, values in zip(SP_ROWS, rows)
  }


_GLS = ("gls", "gls,euclidean")
_BCL = (
  "ce,bcl=mean_inter",
  "ce,bcl=mean_inter,euclidean",
  "ce,bcl=nonzero_inter_intra",
  "ce,bcl=nonzero_inter_intra,euclidean",
)
_GLS_BCL = tuple("gls," + v[3:] for v in _BCL)

# [PCL] Table 2: from scratch, SGD 0.1 cosine, batch 256 (the configs).
PCL_ROWS = ("shufflenet", "resnet18", "resnet34", "resnet50", "densenet121")
# ShuffleNetV2 at width 1.5: [PCL] Table 2 gives 2.85M parameters (x1.5
# with a 365-class head: 2,852,749; x1.0: 1,627,729). [PCL] §5: weight decay
# 1e-4 for it on Places365 (2e-4 for the others, the config's), 5e-4 for
# every model on Places365-small (the config's).
PCL_BACKBONES = {
  "shufflenet": Backbone("shufflenet_v2_x1_5"),
  "resnet18": Backbone("resnet18"),
  "resnet34": Backbone("resnet34"),
  "resnet50": Backbone("resnet50"),
  "densenet121": Backbone("densenet121"),
}
PCL_BACKBONES_PLACES365 = PCL_BACKBONES | {
  "shufflenet": Backbone(
    "shufflenet_v2_x1_5", (("optimizer.weight_decay", 1e-4),)
  ),
}
_PCL2 = {  # (baseline Top-1, Top-5, PCL Top-1, Top-5)
  "places365_1k": [
    (47.67, 78.68, 48.91, 79.76),
    (48.21, 79.22, 49.70, 80.62),
    (48.52, 79.58, 50.72, 81.31),
    (49.66, 80.67, 50.92, 81.70),
    (49.48, 80.87, 51.55, 82.20),
  ],
  "places365": [
    (54.01, 84.05, 54.95, 84.56),
    (54.36, 84.50, 55.12, 84.94),
    (54.84, 84.72, 56.23, 85.79),
    (55.53, 85.85, 56.61, 86.15),
    (55.40, 85.50, 56.84, 86.44),
  ],
}

# SAS-Net (official README): each dataset's one backbone, in three stages.
SASNET_BACKBONES = {
  "ade20k_scenes": {"sasnet_resnet18": Backbone("sasnet_resnet18")},
  "mit67": {"sasnet_resnet50": Backbone("sasnet_resnet50")},
  "sun397": {"sasnet_resnet50": Backbone("sasnet_resnet50")},
  "places365": {"sasnet_resnet18": Backbone("sasnet_resnet18")},
}
_NA = float("nan")  # not published

TABLES = {
  "sp1": Table(
    "[SP] Table 1: Gradient Label Softening (Top-1 %)",
    SP_CONFIGS,
    _SP_ROWS_OF,
    (
      Column("Baseline", ("ce",)),
      Column("LSR", ("lsr",)),
      Column("GLS cosine", ("gls",)),
      Column("GLS Euclidean", ("gls,euclidean",)),
    ),
    _paper(_SP1),
  ),
  "sp2": Table(
    "[SP] Table 2: Batch-level Contrastive Loss (Top-1 %)",
    SP_CONFIGS,
    _SP_ROWS_OF,
    (
      Column("Baseline", ("ce",)),
      Column("CL", ("ce,cl",)),
      Column("BCL cosine mean_inter", (_BCL[0],)),
      Column("BCL Euclidean mean_inter", (_BCL[1],)),
      Column("BCL cosine nonzero_inter_intra", (_BCL[2],)),
      Column("BCL Euclidean nonzero_inter_intra", (_BCL[3],)),
    ),
    _paper(_SP2),
  ),
  "sp3": Table(
    "[SP] Table 3: GLS + BCL (Top-1 %)",
    SP_CONFIGS,
    _SP_ROWS_OF,
    (
      Column("Baseline", ("ce",)),
      *(
        Column(f"GLS + BCL {m} {r}", (v,))
        for (r, m), v in zip(
          [
            ("mean_inter", "cosine"),
            ("mean_inter", "Euclidean"),
            ("nonzero_inter_intra", "cosine"),
            ("nonzero_inter_intra", "Euclidean"),
          ],
          _GLS_BCL,
        )
      ),
    ),
    _paper(_SP3),
  ),
  "sp4": Table(
    "[SP] Table 4: the best of GLS, BCL and GLS + BCL (Top-1 %)",
    SP_CONFIGS,
    _SP_ROWS_OF,
    (
      Column("Baseline", ("ce",)),
      Column("GLS (best)", _GLS),
      Column("BCL (best)", _BCL),
      Column("GLS + BCL (best)", _GLS_BCL),
    ),
    _paper(
      _best(
        (_SP1, (0,)), (_SP1, (2, 3)), (_SP2, (2, 3, 4, 5)), (_SP3, (1, 2, 3, 4))
      )
    ),
  ),
  "pcl2": Table(
    "[PCL] Table 2: pairwise consistency learning (Top-1 / Top-5 %)",
    {
      "places365_1k": "configs/places365_1k_resnet18_pcl.py",
      "places365": "configs/places365_resnet18_pcl.py",
      "synthetic_scenes": "configs/demo.py",
    },
    {
      "places365_1k": PCL_BACKBONES,
      "places365": PCL_BACKBONES_PLACES365,
      "synthetic_scenes": DEMO_BACKBONES,
    },
    (Column("Baseline", ("ce",)), Column("PCL", ("ce,pcl",))),
    {
      (dataset, row): values
      for dataset, rows in _PCL2.items()
      for row, values in zip(PCL_ROWS, rows)
    },
    metrics=("top1", "top5"),
  ),
  "sasnet": Table(
    "SAS-Net (official README): RGB branch, semantic branch, SAS-Net "
    "(Top-1 / Top-2 / Top-5 / MCA %)",
    {
      "ade20k_scenes": "configs/ade20k_sasnet_resnet18.py",
      "mit67": "configs/mit67_sasnet_resnet50.py",
      "sun397": "configs/sun397_sasnet_resnet50.py",
      "places365": "configs/places365_sasnet_resnet18.py",
    },
    SASNET_BACKBONES,
    (
      Column("RGB branch", ("rgb",)),
      Column("Semantic branch", ("semantic",), after="RGB branch"),
      Column("SAS-Net", ("attention",), after="Semantic branch"),
    ),
    {
      ("ade20k_scenes", "sasnet_resnet18"): (
        55.90,
        67.25,
        78.00,
        20.96,
        50.60,
        60.45,
        72.10,
        12.17,
        62.55,
        73.25,
        82.75,
        27.00,
      ),  # fmt: skip
      ("mit67", "sasnet_resnet50"): (*[_NA] * 8, 87.10, _NA, _NA, _NA),
      ("sun397", "sasnet_resnet50"): (*[_NA] * 8, 74.04, _NA, _NA, _NA),
      ("places365", "sasnet_resnet18"): (
        *[_NA] * 8,
        56.51,
        71.57,
        86.00,
        56.51,
      ),  # fmt: skip
    },
    metrics=("top1", "top2", "top5", "mean_class_accuracy"),
  ),
}


# --------------------------------------------------------------------------
# The grid.


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
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
  from scenejax import train

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
    result = train.train_and_evaluate(config, run.workdir)
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


# --------------------------------------------------------------------------
# Collecting the table.


def _read_result(run_dir: str, metrics: tuple) -> dict | None:
  path = os.path.join(run_dir, "results.json")
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      result = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"{path}: not readable JSON ({e})") from None
  absent = [m for m in metrics if not isinstance(result.get(m), (int, float))]
  if absent:
    raise UserError(
      f"{path}: no {', '.join(absent)} (a run of another task, or damaged): "
      "remove the run and run the grid again"
    )
  return dict(
    {m: 100.0 * float(result[m]) for m in metrics},
    wall_time_s=result.get("wall_time_s"),
    device=result.get("device", "unrecorded"),
  )


def collect(
  table_name: str, dataset: str, rows, seeds: int, workdir: str
) -> dict:
  """Every cell of the table from the runs' results.json: per row and
  column the best variant's mean and std over the seeds found, how many of
  the column's runs were found, and the paper's value."""
  table = _table(table_name)
  runs = expand(table_name, dataset, rows, seeds, workdir)
  found = {}
  for run in runs:
    found[run.row, run.variant, run.seed] = (
      run,
      _read_result(run.workdir, table.metrics),
    )
  row_names = rows or list(table.backbones[dataset])  # the paper's order
  width = len(table.metrics)
  out_rows = []
  for row in row_names:
    paper = table.paper.get((dataset, row))
    cells = []
    for c, column in enumerate(table.columns):
      best, runs_found = None, 0
      for variant in column.variants:
        values = [
          found[row, variant, s][1]
          for s in range(seeds)
          if (row, variant, s) in found and found[row, variant, s][1]
        ]
        runs_found += len(values)
        if not values:
          continue
        mean = [float(np.mean([v[m] for v in values])) for m in table.metrics]
        if best is None or mean[0] > best["mean"][0]:
          std = [
            float(np.std([v[m] for v in values], ddof=1))
            if len(values) > 1
            else float("nan")
            for m in table.metrics
          ]
          best = dict(variant=variant, mean=mean, std=std, seeds=len(values))
      cell = best or dict(variant=None, mean=None, std=None, seeds=0)
      # A best-of column (Table 4) is only final when all its runs are.
      cell["runs"] = (runs_found, len(column.variants) * seeds)
      cell["paper"] = (
        None if paper is None else list(paper[c * width : (c + 1) * width])
      )
      cells.append(cell)
    base = cells[0]
    for cell in cells[1:]:
      cell["delta"] = (
        None
        if cell["mean"] is None or base["mean"] is None
        else cell["mean"][0] - base["mean"][0]
      )
      p, bp = cell["paper"], base["paper"]
      cell["paper_delta"] = (
        None
        if p is None or bp is None or np.isnan(p[0]) or np.isnan(bp[0])
        else p[0] - bp[0]
      )
      cell["sign_differs"] = (
        cell["delta"] is not None
        and cell["paper_delta"] is not None
        and np.sign(cell["delta"]) != np.sign(cell["paper_delta"])
      )
    out_rows.append(dict(row=row, cells=cells))
  run_rows = [
    dict(workdir=run.workdir, result=result) for run, result in found.values()
  ]
  return dict(
    table=table_name,
    title=table.title,
    dataset=dataset,
    seeds=seeds,
    columns=[c.name for c in table.columns],
    metrics=list(table.metrics),
    rows=out_rows,
    runs=run_rows,
  )


def _fmt(values, std=None, *, as_published=False) -> str:
  parts = []
  for i, v in enumerate(values):
    if v is None or np.isnan(v):
      parts.append("–")
    elif as_published:
      parts.append(str(v))  # the paper's digits
    elif std is not None and not np.isnan(std[i]):
      parts.append(f"{v:.2f} ± {std[i]:.2f}")
    else:
      parts.append(f"{v:.2f}")
  return " / ".join(parts)


def _cell_text(cell) -> tuple[str, str]:
  """(ours, paper) texts of one cell."""
  found, expected = cell["runs"]
  if cell["mean"] is None:
    ours = f"missing (0/{expected} runs)"
  else:
    ours = _fmt(cell["mean"], cell["std"])
    if cell.get("delta") is not None:
      ours += f" ({cell['delta']:+.2f})"
    if found < expected:
      ours += f" [{found}/{expected} runs]"
    if cell.get("sign_differs"):
      ours += " (!)"
  if cell["paper"] is None:
    paper = "–"
  else:
    paper = _fmt(cell["paper"], as_published=True)
    if cell.get("paper_delta") is not None:
      paper += f" ({round(cell['paper_delta'], 3):+g})"
  return ours, paper


def to_markdown(result: dict) -> str:
  lines = [
    f"### {result['title']}, {result['dataset']}",
    "",
    f"Ours: mean ± std over {result['seeds']} seed(s), (delta to our "
    "baseline); paper: as published, (its delta); (!) where the signs of "
    "the two deltas differ.",
    "",
    "| model | " + " | ".join(result["columns"]) + " |",
    "|---|" + "---|" * len(result["columns"]),
  ]
  for row in result["rows"]:
    texts = [_cell_text(c) for c in row["cells"]]
    lines.append(
      f"| {row['row']} | "
      + " | ".join(f"{o}<br>paper {p}" for o, p in texts)
      + " |"
    )
  lines += ["", "| run | wall time | device |", "|---|---|---|"]
  for run in result["runs"]:
    r = run["result"]
    if r is None:
      lines.append(f"| {run['workdir']} | not finished | |")
    else:
      wall = r["wall_time_s"]
      lines.append(
        f"| {run['workdir']} | "
        + ("unrecorded" if wall is None else f"{wall:.0f} s")
        + f" | {r['device']} |"
      )
  return "\n".join(lines) + "\n"


def to_html(result: dict) -> str:
  e = html.escape
  head = "".join(f"<th>{e(c)}</th>" for c in result["columns"])
  body = []
  for row in result["rows"]:
    cells = "".join(
      f"<td{' class=differs' if c.get('sign_differs') else ''}>{e(o)}"
      f"<br><small>paper {e(p)}</small></td>"
      for c, (o, p) in ((c, _cell_text(c)) for c in row["cells"])
    )
    body.append(f"<tr><td>{e(row['row'])}</td>{cells}</tr>")
  runs = "".join(
    f"<tr><td>{e(r['workdir'])}</td><td>"
    + (
      "not finished</td><td>"
      if r["result"] is None
      else (
        f"{r['result']['wall_time_s']:.0f} s"
        if r["result"]["wall_time_s"] is not None
        else "unrecorded"
      )
      + f"</td><td>{e(r['result']['device'])}"
    )
    + "</td></tr>"
    for r in result["runs"]
  )
  return (
    "<!doctype html><meta charset=utf-8>"
    f"<title>{e(result['title'])}</title>"
    "<style>td,th{border:1px solid #ccc;padding:4px}"
    "table{border-collapse:collapse}.differs{background:#fdd}</style>"
    f"<h3>{e(result['title'])}, {e(result['dataset'])}</h3>"
    f"<p>Ours: mean ± std over {result['seeds']} seed(s), (delta to our "
    "baseline); paper as published, (its delta). Red: the deltas' signs "
    "differ.</p>"
    f"<table><tr><th>model</th>{head}</tr>{''.join(body)}</table>"
    "<h4>Runs</h4><table><tr><th>run</th><th>wall time</th><th>device</th>"
    f"</tr>{runs}</table>\n"
  )


def write_table(result: dict, workdir: str) -> tuple[str, str]:
  stem = os.path.join(workdir, f"{result['table']}_{result['dataset']}")
  fileio.write_text(stem + ".md", to_markdown(result))
  fileio.write_text(stem + ".html", to_html(result))
  fileio.write_json(stem + ".json", result)
  return stem + ".md", stem + ".html"


# --------------------------------------------------------------------------
# The command line.

_TABLE = flags.DEFINE_enum("table", None, list(TABLES), "the table")
_DATASET = flags.DEFINE_string("dataset", None, "the table's dataset")
_MODELS = flags.DEFINE_list(
  "models", None, "rows (backbones) to run; default every row"
)
_SEEDS = flags.DEFINE_integer(
  "seeds", 1, "seeds per cell: runs with config.seed = 0 .. N-1"
)
_WORKDIR = flags.DEFINE_string("workdir", None, "where the runs go")
_PRINT = flags.DEFINE_bool(
  "print_commands", False, "print one scenejax.main command per run"
)
_COLLECT = flags.DEFINE_bool(
  "collect", False, "only gather results.json into the table"
)
_SET = flags.DEFINE_multi_string(
  "set", [], "KEY=VALUE for every run's config (e.g. num_epochs=2)"
)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}")
  for name in ("table", "dataset", "workdir"):
    if flags.FLAGS[name].value is None:
      cli.fail(f"--{name} is required (see --help)")
  settings = parse_settings(_SET.value)
  runs = expand(
    _TABLE.value,
    _DATASET.value,
    _MODELS.value,
    _SEEDS.value,
    _WORKDIR.value,
    settings,
  )
  if _PRINT.value:
    # SAS-Net's stages start from the previous stage's runs: print them
    # stage by stage, each group after a line saying it must wait.
    table = _table(_TABLE.value)
    stage_of = {
      v: c for c, col in enumerate(table.columns) for v in col.variants
    }
    staged = any(col.after for col in table.columns)
    stage = None
    for run in (
      sorted(runs, key=lambda r: stage_of[r.variant]) if staged else runs
    ):
      if staged and stage_of[run.variant] != stage:
        if stage is not None:
          print("# wait: the runs below start from the runs above")
        stage = stage_of[run.variant]
      print(run.command())
    return
  if not _COLLECT.value:
    state = run_grid(runs)
    if state == "preempted":
      sys.exit(cli.EXIT_PREEMPTED)
  result = collect(
    _TABLE.value, _DATASET.value, _MODELS.value, _SEEDS.value, _WORKDIR.value
  )
  md, html_path = write_table(result, _WORKDIR.value)
  print(to_markdown(result))
  print(f"wrote {md} and {html_path}")


if __name__ == "__main__":
  cli.run(main)
