"""The one place config defaults live, the `:variant` argument, and the
whole-config check the trainer runs before any work.

Every file in configs/ is `base()` plus the overrides of its recipe, and
ends with `apply_variant(config, arg)`, so each takes
`--config=configs/x.py:ARG`, a comma list of

  ce | lsr | gls          the targets of the CE term
  bcl[=REDUCTION]         BCL on ([SP] Eq. 10-15), default mean_inter
  cl                      the classic contrastive-loss baseline
  pcl                     pairwise consistency learning ([PCL] Eq. 3)
  euclidean               the exp(-euclidean) prototype and BCL metric

e.g. `--config=configs/mit67_resnet50.py:gls,bcl=nonzero_inter_intra`.
A string naming the targets (ce, lsr or gls) lists every term it wants;
the others start off.

`config.prototype.path` may contain "{metric}", replaced by
`config.prototype.metric`: the `euclidean` variant then reads the Euclidean
prototype file, and a file whose recorded metric differs from the config's
is an error naming both. `published:DATASET/{metric}` names the [SP]
authors' matrices (`scenejax.prototype.published`: fetched once, cached).
"""

from __future__ import annotations

import difflib
import os
import re

import ml_collections

from scenejax import losses, models, tasks
from scenejax.errors import ConfigError, PrototypeError
from scenejax.prototype import published
from scenejax.tasks import classification, semantic_aware

PROTOTYPE_METRICS = ("cosine", "euclidean")


def base() -> ml_collections.ConfigDict:
  """Every field the trainer reads, with its default ([SP]'s recipe)."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  # classification (scene labels) | segmentation (label maps:
  # scenejax.tasks.segmentation, config.segmentation) | multilabel (object
  # presence: scenejax.tasks.multilabel, config.multilabel).
  config.task = "classification"
  config.dataset = "synthetic_scenes"  # scenejax.datasets.NAMES
  config.data = ml_collections.ConfigDict(
    dict(
      data_dir="",  # TFDS data_dir ('' = ~/tensorflow_datasets)
      image_size=224,  # crop size (synthetic: the rendered size)
      resize_size=256,  # shorter side before cropping
      random_resized_crop=False,  # Inception-style crops instead
      ten_crop=False,  # ten-crop evaluation (SAS-Net)
      on_corrupt="skip",  # or "raise"
      # Decode JPEGs at 1/2-1/8 scale where the resize allows (PIL draft):
      # about 2x faster on 768-px photos; pixels slightly differ (README).
      jpeg_draft=False,
      # Train batches assembled / placed on the devices ahead of the step
      # by background threads (input_pipeline.device_batches; 0 = off).
      host_prefetch=2,
      device_prefetch=2,
      sun397_config="standard-part1-120k",
      # image_folder only: DIR/train/CLASS/IMAGE (+ DIR/test/ or DIR/val/);
      # without a test split, `holdout` of each class is held out, chosen
      # by a hash of (holdout_seed, file name) (scenejax.datasets.image_folder).
      image_folder="",
      holdout=0.1,
      holdout_seed=0,
      # synthetic_scenes only (scenejax.datasets.synthetic):
      num_groups=4,  # confusable groups of scene classes
      scenes_per_group=2,  # C = num_groups * scenes_per_group
      num_semantic_classes=32,  # L
      train_per_class=150,
      test_per_class=50,
      render_seed=0,
    )
  )
  config.model = "resnet50"  # scenejax.models.NAMES
  config.init_from = ""  # pretrained checkpoint ('' = random init)
  config.dtype = "float32"  # compute dtype: float32 | bfloat16
  config.num_epochs = 100
  config.batch_size = 32  # global, over all devices and processes
  config.eval_batch_size = 64
  config.optimizer = ml_collections.ConfigDict(
    dict(
      name="adam",  # adam | sgd
      learning_rate=1e-3,  # the head's (or every parameter's)
      backbone_learning_rate=1e-5,  # 0: one rate for all parameters
      weight_decay=1e-5,  # L2 added to the gradient (PyTorch's)
      schedule="step",  # step | cosine | constant
      decay_epochs=(10, 15, 20),  # step: x0.1 at each (head's rate too)
      momentum=0.9,  # sgd
      # (group, regex) rules, first full match wins (scenejax.training.optim).
      param_groups=(
        (
          "head",
          r"(backbone/)?head/.*|cam_conv/.*|cam_head/.*|"
          r"mod_head/.*|sarl/.*|prototypes",
        ),
        ("backbone", r".*"),
      ),
    )
  )
  # Each task's own section(s), with their defaults: every config carries
  # all of them, so a workdir's config.json names every setting.
  for name in (*tasks.BUILTIN, "semantic_aware"):
    for section, defaults in tasks.get(name).config_sections().items():
      config[section] = defaults
  config.checkpoint_keep = 2  # latest checkpoints kept (plus the best)
  config.log_every_steps = 50
  config.progress_bar = True
  return config


def sasnet_stage(
  config: ml_collections.ConfigDict, stage: str
) -> ml_collections.ConfigDict:
  """Sets config.sasnet.stage and the optimizer's parameter groups of that
  stage (the RGB branch at backbone_learning_rate in "rgb"; everything a
  stage does not train "frozen")."""
  if stage not in semantic_aware.SASNET_STAGE_GROUPS:
    raise ConfigError(
      f"SAS-Net stage {stage!r}; expected one of "
      f"{' | '.join(semantic_aware.SASNET_STAGE_GROUPS)}"
    )
  config.sasnet.stage = stage
  config.optimizer.param_groups = semantic_aware.sasnet_param_groups(stage)
  return config


def sasnet_paper_training(
  config: ml_collections.ConfigDict,
) -> ml_collections.ConfigDict:
  """SAS-Net's published training settings, shared by its four recipes.

  From the official code's Config/config_{ADE20K,MITIndoor,SUN397,
  Places365}.yaml, identical in all four: batch 100, LR 2.5e-4, momentum
  0.9, weight decay 5e-4, poly decay of power 0.9, ten-crop evaluation,
  cross-entropy. Their optimizer, DFW (Berrada et al. 2019, Deep
  Frank-Wolfe), is replaced by SGD: DFW is built for the multi-class hinge
  loss (its step size comes in closed form from that loss), so a port
  would change the loss too, and its step is LR x gamma with gamma in
  [0, 1], so SGD at the same LR takes DFW's largest step. The YAMLs'
  LR_DECAY (10) has no reading beside POLY_POWER in the released code
  (evaluation only): not used. One rate for every trained parameter.
  """
  config.batch_size = 100
  config.eval_batch_size = 20  # x 10 crops (the YAMLs' TEST batch is 10)
  config.data.ten_crop = True
  config.optimizer.update(
    dict(
      name="sgd",
      learning_rate=2.5e-4,
      backbone_learning_rate=0.0,
      weight_decay=5e-4,
      momentum=0.9,
      schedule="poly",
    )
  )
  config.loss.update(dict(labels="ce", bcl_weight=0.0))
  return config


def multilabel_training(
  config: ml_collections.ConfigDict,
) -> ml_collections.ConfigDict:
  """The multi-label recipes' shared settings (config.task = "multilabel").
  [SADCL]'s poster gives no recipe: ASL's and Query2Label's, which its
  tables compare with: Adam 1e-4 for every parameter, weight decay 1e-4,
  cosine schedule."""
  config.task = "multilabel"
  config.optimizer.update(
    dict(
      learning_rate=1e-4,
      backbone_learning_rate=0.0,
      weight_decay=1e-4,
      schedule="cosine",
    )
  )
  return config


def sasnet_recipe(
  config: ml_collections.ConfigDict,
  arg: str | None,
  *,
  name: str,
  pretrained: str,
  prototype_path: str,
) -> ml_collections.ConfigDict:
  """A SAS-Net recipe's `arg` = `"[stage][,variant]"` (stage rgb by default,
  e.g. "attention,gls,bcl"): sets the stage, its config.init_from - the
  `pretrained` ImageNet RGB branch for rgb and all, else the previous
  stage's workdir /tmp/{name}[_variant]_{stage} (semantic <- rgb,
  attention <- semantic), so a variant's stages chain through their own
  workdirs - the variant's losses, and `prototype_path` when they read S."""
  stage, _, variant = (arg or "").partition(",")
  if stage not in semantic_aware.SASNET_STAGE_GROUPS:  # ":ce": the rgb stage
    stage, variant = "rgb", arg or ""
  sasnet_stage(config, stage)
  tag = "".join(f"_{t}" for t in variant.replace("=", "_").split(",") if t)
  previous = {"semantic": "rgb", "attention": "semantic"}.get(stage)
  config.init_from = f"/tmp/{name}{tag}_{previous}" if previous else pretrained
  config = apply_variant(
    config, variant, own=tuple(semantic_aware.SASNET_STAGE_GROUPS)
  )
  if config.loss.labels == "gls" or config.loss.bcl_weight:
    config.prototype.path = prototype_path
  return config


def apply_variant(
  config: ml_collections.ConfigDict,
  arg: str | None,
  own: tuple[str, ...] = (),
) -> ml_collections.ConfigDict:
  """Applies a `ce|lsr|gls,bcl[=r],cl,pcl,euclidean` string (see above);
  the task names what it takes. `own`: the arguments the config file
  itself took before (e.g. the demo's `sasnet`), named in that error too."""
  if not arg:
    return config
  try:
    return tasks.for_config(config).apply_variant(config, arg)
  except ConfigError as e:
    if own and "unknown config argument" in str(e):
      raise ConfigError(
        f"{e}; this config also takes {', '.join(own)}"
      ) from None
    raise


def workdir_name(config_file: str, arg: str | None = None) -> str:
  """The default workdir of `--config=FILE[:ARG]`: workdirs/NAME[_ARG]."""
  stem = re.sub(r"\.py$", "", config_file.rstrip("/").split("/")[-1])
  if arg:
    stem += "_" + arg
  return "workdirs/" + re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_")


def _fields(config: ml_collections.ConfigDict, prefix: str = "config"):
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from _fields(value, f"{prefix}.{key}")
    else:
      yield f"{prefix}.{key}", value


def unknown_field_message(name: str) -> str | None:
  """For a dotted `name` that is no field of `base()`: what it is, and the
  field of the same name elsewhere if there is one; None for a field."""
  want = dict(_fields(base()))
  if name in want or any(w.startswith(name + ".") for w in want):
    return None
  leaf = name.rsplit(".", 1)[-1]
  home = [w for w in want if w.rsplit(".", 1)[-1] == leaf]
  # A misspelling: the closest field of the same section, then any field.
  section = name.rsplit(".", 1)[0]
  near = difflib.get_close_matches(
    name, [w for w in want if w.rsplit(".", 1)[0] == section], n=1
  ) or difflib.get_close_matches(name, list(want), n=1, cutoff=0.8)
  guess = home or near
  return f"{name} is not a config field" + (
    f"; did you mean {guess[0]}?"
    if guess
    else " (see scenejax/config_lib.py for the fields)"
  )


# This checkout's configs/ (beside the scenejax package): `--config=demo.py`
# and `--config=configs/demo.py` work from any directory.
CONFIG_DIR = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs"
)


def resolve_config_file(spec: str) -> str:
  """`--config`'s FILE[:ARG] with FILE made a path that exists: as given,
  else `configs/FILE` (".py" optional) of this checkout, so a recipe is
  found from any directory. A ConfigError names where it looked."""
  path, sep, arg = spec.partition(":")
  name = path if path.endswith(".py") else path + ".py"
  for candidate in (
    path,
    os.path.join(CONFIG_DIR, name),
    os.path.join(CONFIG_DIR, os.path.basename(name)),
  ):
    if os.path.isfile(candidate):
      return candidate + sep + arg
  raise ConfigError(
    f"--config={spec}: no config file {path!r} in {os.getcwd()}, nor "
    f"{os.path.basename(name)!r} in {CONFIG_DIR}; give the path of a "
    "get_config() file, or a recipe name such as demo.py"
  )


class Checks:
  """The field checks of `validate`, handed to each task's `validate`:
  each raises a ConfigError naming the field, its value and what is
  allowed. `defaults` is `base()`."""

  def __init__(self, fields: dict, defaults: ml_collections.ConfigDict):
    self._fields = fields  # dotted name -> value
    self.defaults = defaults

  def check(self, name: str, ok: bool, allowed: str) -> None:
    if not ok:
      raise ConfigError(f"{name} = {self._fields[name]!r}; allowed: {allowed}")

  def one_of(self, name: str, options) -> None:
    self.check(
      name, self._fields[name] in options, " | ".join(map(str, options))
    )

  def at_least(self, name: str, low) -> None:
    value = self._fields[name]
    self.check(
      name,
      isinstance(value, (int, float))
      and not isinstance(value, bool)
      and value >= low,
      f">= {low}",
    )

  def between(self, name: str, low, high) -> None:
    value = self._fields[name]
    self.check(
      name,
      isinstance(value, (int, float)) and low <= value <= high,
      f"{low}..{high}",
    )


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the whole config before any work; a ConfigError names the
  first field that cannot work and the allowed values."""
  defaults = base()
  want = dict(_fields(defaults))
  have = dict(_fields(config))
  for name in have.keys() - want.keys():
    raise ConfigError(unknown_field_message(name))
  for name in want.keys() - have.keys():
    raise ConfigError(
      f"{name} is missing; start configs from scenejax.config_lib.base()"
    )

  checks = Checks(have, defaults)
  check, one_of, at_least, between = (
    checks.check,
    checks.one_of,
    checks.at_least,
    checks.between,
  )

  for name in (
    "num_epochs",
    "batch_size",
    "eval_batch_size",
    "log_every_steps",
    "checkpoint_keep",
    "data.image_size",
    "data.resize_size",
  ):
    at_least(f"config.{name}", 1)
  one_of("config.data.on_corrupt", ("skip", "raise"))
  between("config.data.holdout", 0.0, 0.9)
  if have["config.dataset"] == "image_folder":
    check(
      "config.data.image_folder",
      bool(have["config.data.image_folder"]),
      "a folder DIR/train/CLASS/IMAGE, e.g. --config.data.image_folder=photos",
    )
  one_of("config.dtype", ("float32", "bfloat16"))
  one_of("config.optimizer.name", ("adam", "sgd"))
  one_of("config.optimizer.schedule", ("step", "cosine", "constant", "poly"))
  one_of("config.task", tasks.names())
  task = tasks.for_config(config)
  if hasattr(task, "validate"):  # its own fields
    task.validate(config, checks)
  check(
    "config.optimizer.learning_rate",
    isinstance(have["config.optimizer.learning_rate"], (int, float))
    and have["config.optimizer.learning_rate"] > 0,
    "> 0",
  )
  for name in (
    "data.host_prefetch",
    "data.device_prefetch",
    "optimizer.backbone_learning_rate",
    "optimizer.weight_decay",
    "optimizer.momentum",
    "loss.num_soft_epochs",
    "loss.bcl_weight",
    "loss.cl_weight",
    "loss.pcl_alpha",
    "loss.pcl_beta",
  ):
    at_least(f"config.{name}", 0)
  one_of("config.loss.labels", classification.LABELS)
  one_of("config.loss.bcl_metric", losses.BCL_METRICS)
  one_of("config.loss.bcl_reduction", losses.BCL_REDUCTIONS)
  one_of("config.loss.bcl_pairing", losses.BCL_PAIRINGS)
  between("config.loss.lsr_alpha", 0.0, 1.0)
  between("config.loss.final_confidence", 0.0, 1.0)
  between("config.loss.pcl_gamma", 0.0, 1.0)
  one_of("config.prototype.metric", PROTOTYPE_METRICS)
  one_of("config.prototype.dtype", ("float32", "bfloat16"))
  at_least("config.prototype.batch_size", 1)
  at_least("config.prototype.size", 1)
  at_least("config.prototype.window", 0)
  if published.is_published(config.prototype.path):
    try:
      dataset, _ = published.parse(classification.prototype_path(config))
    except PrototypeError as e:
      raise ConfigError(f"config.prototype.path: {e}") from None
    if dataset != config.dataset:
      raise ConfigError(
        f"config.prototype.path = {config.prototype.path!r} is the "
        f"prototype of {dataset}, but config.dataset = {config.dataset!r}"
      )
  if config.prototype.init_from and not config.prototype.segmenter:
    raise ConfigError(
      f"config.prototype.init_from = {config.prototype.init_from!r} without "
      "config.prototype.segmenter: name the segmenter it holds"
    )
  if config.prototype.segmenter:
    one_of("config.prototype.segmenter", ("", *models.SEGMENTERS))
    if not config.prototype.init_from:
      raise ConfigError(
        f"config.prototype.segmenter = {config.prototype.segmenter!r} needs "
        "config.prototype.init_from (its ADE20K checkpoint): a prototype "
        "from random weights means nothing"
      )
    if config.prototype.path:
      raise ConfigError(
        f"config.prototype.path = {config.prototype.path!r} and "
        f"config.prototype.segmenter = {config.prototype.segmenter!r}: "
        "give one (a prototype file, or the segmenter that builds it)"
      )
