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

import os
import re

import ml_collections

from scenejax import losses
from scenejax.errors import ConfigError, PrototypeError

LABELS = ("ce", "lsr", "gls")
TASKS = ("classification", "segmentation", "multilabel")
MULTILABEL_CLASSIFICATION_LOSSES = ("asl", "bce")
MULTILABEL_PROTOTYPES = ("learnable", "ema")
PROTOTYPE_METRICS = ("cosine", "euclidean")


def base() -> ml_collections.ConfigDict:
  """Every field the trainer reads, with its default ([SP]'s recipe)."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  # classification (scene labels) | segmentation (label maps:
  # scenejax.segmentation, config.segmentation below) | multilabel (object
  # presence: scenejax.multilabel, config.multilabel below).
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
      # synthetic_scenes only (scenejax.synthetic):
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
      # (group, regex) rules, first full match wins (scenejax.optim).
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
  config.loss = ml_collections.ConfigDict(
    dict(
      labels="gls",  # ce | lsr | gls: targets of the CE term
      num_soft_epochs=20,  # GLS STEP ([SP] Algorithm 2)
      final_confidence=0.99,
      lsr_alpha=0.1,
      bcl_weight=1.0,  # 0 disables BCL ([SP] Eq. 16 uses 1)
      bcl_metric="cosine",
      bcl_reduction="mean_inter",
      bcl_pairing="gather",  # or "product", the literal Eq. 11
      cl_weight=0.0,  # classic contrastive loss baseline
      pcl=False,  # pairwise consistency ([PCL] Eq. 3)
      pcl_alpha=1.0,  # weight of the erased image's CE
      pcl_beta=2.0,  # weight of KL(q || p)
      pcl_gamma=0.7,  # CAM threshold ([PCL] Eq. 2)
      pcl_cam_stage=-1,  # -1: input of the last down-sampling stage
    )
  )
  # An NPZ from `python -m scenejax.prototype` ("{metric}" is replaced by
  # `metric`); or, with path '', a segmenter (`scenejax.models.SEGMENTERS`)
  # and its checkpoint segment the training images into
  # WORKDIR/prototype.npz before training ([SP] §3.2; resumable, reused by
  # later runs of the workdir); with neither, the synthetic scenes' label
  # maps are used.
  config.prototype = ml_collections.ConfigDict(
    dict(
      path="",
      metric="cosine",
      segmenter="",
      init_from="",
      size=512,  # shorter side the images are resized to for segmenting
      window=0,  # > 0: sliding-window inference with crops of this size
      batch_size=8,  # images per segmenter step, per process
      dtype="float32",  # the segmenter's compute dtype
    )
  )
  # config.task = "segmentation" ([SEG], scenejax.segmentation): the
  # DeepLabV3+ architecture, the augmentation, and the fused loss
  # focal + contrastive_weight · contrastive.
  config.segmentation = ml_collections.ConfigDict(
    dict(
      crop_size=512,  # training crop (padded with unlabeled where smaller)
      base_size=512,  # shorter side before the random scale
      scale_range=(0.5, 2.0),
      jitter=True,  # photometric distortion
      output_stride=16,  # 16 | 8: the backbone's, by dilation
      aspp_rates=(6, 12, 18),  # doubled at output stride 8
      aspp_width=256,
      low_level_width=48,
      decoder_width=256,
      embedding_dim=64,  # D of the pixel embeddings
      focal_gamma=2.0,  # 0 with uniform weights = cross-entropy
      # uniform | inverse | median_frequency (from the training maps,
      # computed once into WORKDIR/class_weights.npz) | a path to an NPZ
      # (key "class_weights") from `python -m scenejax.prototype
      # class_weights`.
      class_weights="median_frequency",
      contrastive_weight=0.1,  # λ; 0 trains with the focal loss only
      contrastive_form="margin",  # margin (Hadsell) | supcon
      margin=1.0,  # margin form: m
      temperature=0.1,  # supcon form: τ
      num_samples=1024,  # sampled pixels per image
      per_class=64,  # at most this many per class and image
    )
  )
  # config.model = sasnet_* (scenejax.semantic_aware): the training stage
  # (set it with `sasnet_stage`, which also sets the parameter groups) and
  # the semantic input: a frozen segmenter's top-3 scores, made on the fly
  # or read from the files `scenejax.segment --top3` wrote.
  config.sasnet = ml_collections.ConfigDict(
    dict(
      stage="all",  # rgb | semantic | attention | all
      segmenter="",  # scenejax.models.SEGMENTERS (not needed by rgb)
      segmenter_init_from="",  # its Hugging Face checkpoint or workdir
      semantic_dir="",  # or: the segment command's --top3 --out directory
    )
  )
  # config.task = "multilabel" ([SADCL], scenejax.multilabel): the SARL
  # head on config.model's last feature map, and the loss
  # classification + sscl_weight · SSCL + pscl_weight · PSCL.
  config.multilabel = ml_collections.ConfigDict(
    dict(
      dim=256,  # D of the label-level representations
      num_heads=8,
      encoder_layers=1,  # transformer encoder layers over the tokens
      classification_loss="asl",  # asl ([ASL] Eq. 4) | bce
      asl_gamma_positive=0.0,
      asl_gamma_negative=4.0,
      asl_margin=0.05,
      sscl_weight=1.0,  # λ1; 0 disables SSCL
      pscl_weight=1.0,  # λ2; 0 disables PSCL
      temperature=0.1,  # τ of both contrastive losses
      pscl_unactivated="negatives",  # negatives | ignore (our reading)
      prototypes="learnable",  # learnable | ema
      ema_momentum=0.99,  # prototypes = "ema": p ← m·p + (1 - m)·batch mean
      threshold=0.5,  # CP/CR/CF1/OP/OR/OF1 (mAP needs none)
      drop_unlabeled=True,  # COCO, NUS-WIDE: leave out images without a label
    )
  )
  config.checkpoint_keep = 2  # latest checkpoints kept (plus the best)
  config.log_every_steps = 50
  config.progress_bar = True
  return config


# SAS-Net's stages (scenejax.semantic_aware): the parameter groups that
# train; the rest is frozen (no update, no weight decay).
SASNET_STAGE_GROUPS = {
  "rgb": (("head", r"rgb_head/.*"), ("backbone", r"rgb/.*")),
  "semantic": (("head", r"semantic_head/.*|semantic/.*"),),
  "attention": (("head", r"head/.*|rgb_attention/.*|semantic_attention/.*"),),
  # The RGB branch at backbone_learning_rate, as in "rgb" (0: one rate).
  "all": (("backbone", r"rgb/.*"), ("head", r".*")),
}


def sasnet_param_groups(stage: str) -> tuple:
  """The parameter groups of SAS-Net's `stage`."""
  groups = SASNET_STAGE_GROUPS[stage]
  return groups + ((("frozen", r".*"),) if stage != "all" else ())


def sasnet_stage(
  config: ml_collections.ConfigDict, stage: str
) -> ml_collections.ConfigDict:
  """Sets config.sasnet.stage and the optimizer's parameter groups of that
  stage (the RGB branch at backbone_learning_rate in "rgb"; everything a
  stage does not train "frozen")."""
  if stage not in SASNET_STAGE_GROUPS:
    raise ConfigError(
      f"SAS-Net stage {stage!r}; expected one of "
      f"{' | '.join(SASNET_STAGE_GROUPS)}"
    )
  config.sasnet.stage = stage
  config.optimizer.param_groups = sasnet_param_groups(stage)
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
  """A SAS-Net recipe's `arg` = "[stage][,variant]" (stage rgb by default,
  e.g. "attention,gls,bcl"): sets the stage, its config.init_from - the
  `pretrained` ImageNet RGB branch for rgb and all, else the previous
  stage's workdir /tmp/{name}[_variant]_{stage} (semantic <- rgb,
  attention <- semantic), so a variant's stages chain through their own
  workdirs - the variant's losses, and `prototype_path` when they read S."""
  stage, _, variant = (arg or "").partition(",")
  if stage not in SASNET_STAGE_GROUPS:  # e.g. ":ce": the rgb stage
    stage, variant = "rgb", arg or ""
  sasnet_stage(config, stage)
  tag = "".join(f"_{t}" for t in variant.replace("=", "_").split(",") if t)
  previous = {"semantic": "rgb", "attention": "semantic"}.get(stage)
  config.init_from = f"/tmp/{name}{tag}_{previous}" if previous else pretrained
  config = apply_variant(config, variant)
  if config.loss.labels == "gls" or config.loss.bcl_weight:
    config.prototype.path = prototype_path
  return config


def _validate_sasnet(config, one_of) -> None:
  from scenejax import models

  one_of("config.sasnet.stage", tuple(SASNET_STAGE_GROUPS))
  if config.task != "classification":
    raise ConfigError(
      f"config.model = {config.model!r} is a scene classifier; set "
      "config.task = 'classification'"
    )
  if config.loss.pcl:
    raise ConfigError(
      "config.loss.pcl: PCL is not wired into SAS-Net; train it without"
    )
  stage = config.sasnet.stage
  groups = tuple(tuple(rule) for rule in config.optimizer.param_groups)
  if groups != sasnet_param_groups(stage):
    raise ConfigError(
      f"config.sasnet.stage = {stage!r} but config.optimizer.param_groups = "
      f"{groups} are not that stage's {sasnet_param_groups(stage)}: set "
      "both with config_lib.sasnet_stage(config, stage) (the configs' "
      "variants do), so a stage trains what it names and nothing else"
    )
  if stage == "attention" and not config.init_from:
    raise ConfigError(
      "config.sasnet.stage = 'attention' trains on two trained branches: "
      "set config.init_from to the workdir of the 'semantic' stage"
    )
  if stage == "rgb":
    return
  if config.sasnet.semantic_dir:
    if config.sasnet.segmenter or config.sasnet.segmenter_init_from:
      raise ConfigError(
        f"config.sasnet.semantic_dir = {config.sasnet.semantic_dir!r} and "
        "config.sasnet.segmenter / segmenter_init_from are both set: the "
        "semantic input comes from the files or from the segmenter; "
        "clear one"
      )
    if not os.path.isdir(config.sasnet.semantic_dir):
      raise ConfigError(
        f"config.sasnet.semantic_dir = {config.sasnet.semantic_dir!r} is "
        "not a directory; write it with python -m scenejax.segment "
        "--dataset=... --split=train (and test) --top3 --out=DIR"
      )
    return
  if config.sasnet.segmenter not in models.SEGMENTERS:
    raise ConfigError(
      f"config.sasnet.segmenter = {config.sasnet.segmenter!r}: the "
      f"{stage!r} stage needs the segmenter of the semantic input, one of "
      f"{', '.join(models.SEGMENTERS)} (or config.sasnet.semantic_dir)"
    )
  if not config.sasnet.segmenter_init_from:
    raise ConfigError(
      "config.sasnet.segmenter_init_from is empty: the semantic input "
      "needs the segmenter's trained weights (a Hugging Face checkpoint "
      "or a segmentation workdir), or set config.sasnet.semantic_dir to "
      "precomputed top-3 files"
    )


def apply_variant(
  config: ml_collections.ConfigDict, arg: str | None
) -> ml_collections.ConfigDict:
  """Applies a `ce|lsr|gls,bcl[=r],cl,pcl,euclidean` string (see above)."""
  if not arg:
    return config
  if config.task == "segmentation":
    return _apply_segmentation_variant(config, arg)
  if config.task == "multilabel":
    return _apply_multilabel_variant(config, arg)
  loss = config.loss
  tokens = [t.strip() for t in arg.split(",") if t.strip()]
  if any(t in LABELS for t in tokens):
    loss.bcl_weight, loss.cl_weight, loss.pcl = 0.0, 0.0, False
  for token in tokens:
    name, _, value = token.partition("=")
    if name in LABELS and not value:
      loss.labels = name
    elif name == "bcl":
      loss.bcl_weight = 1.0
      if value:
        if value not in losses.BCL_REDUCTIONS:
          raise ConfigError(
            f"config argument {token!r}: BCL reduction must "
            f"be one of {losses.BCL_REDUCTIONS}"
          )
        loss.bcl_reduction = value
    elif name == "cl" and not value:
      loss.cl_weight = 1.0
    elif name == "pcl" and not value:
      loss.pcl = True
    elif name == "euclidean" and not value:
      loss.bcl_metric = "euclidean"
      config.prototype.metric = "euclidean"
    else:
      raise ConfigError(
        f"unknown config argument {token!r} in {arg!r}; "
        "expected ce|lsr|gls, bcl[=reduction], cl, pcl, "
        "euclidean"
      )
  return config


def _apply_segmentation_variant(config, arg: str):
  """config.task = "segmentation": a comma list of
  ce (γ = 0, uniform weights, no contrastive term: plain cross-entropy),
  focal (no contrastive term), uniform (uniform class weights),
  supcon (the SupCon form of the contrastive term)."""
  seg = config.segmentation
  for token in (t.strip() for t in arg.split(",") if t.strip()):
    if token == "ce":
      seg.focal_gamma, seg.class_weights, seg.contrastive_weight = (
        0.0,
        "uniform",
        0.0,
      )
    elif token == "focal":
      seg.contrastive_weight = 0.0
    elif token == "uniform":
      seg.class_weights = "uniform"
    elif token == "supcon":
      seg.contrastive_form = "supcon"
    else:
      raise ConfigError(
        f"unknown config argument {token!r} in {arg!r}; a segmentation "
        "config takes ce, focal, uniform, supcon"
      )
  return config


def _apply_multilabel_variant(config, arg: str):
  """config.task = "multilabel": a comma list of
  bce | asl (the classification loss), nocl (no contrastive term),
  nosscl, nopscl (one off), ema (EMA prototypes)."""
  ml = config.multilabel
  for token in (t.strip() for t in arg.split(",") if t.strip()):
    if token in MULTILABEL_CLASSIFICATION_LOSSES:
      ml.classification_loss = token
    elif token == "nocl":
      ml.sscl_weight, ml.pscl_weight = 0.0, 0.0
    elif token == "nosscl":
      ml.sscl_weight = 0.0
    elif token == "nopscl":
      ml.pscl_weight = 0.0
    elif token == "ema":
      ml.prototypes = "ema"
    else:
      raise ConfigError(
        f"unknown config argument {token!r} in {arg!r}; a multilabel "
        "config takes bce, asl, nocl, nosscl, nopscl, ema"
      )
  return config


def prototype_path(config: ml_collections.ConfigDict) -> str:
  """`config.prototype.path` with "{metric}" replaced."""
  return config.prototype.path.replace("{metric}", config.prototype.metric)


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
  return f"{name} is not a config field" + (
    f"; did you mean {home[0]}?"
    if home
    else " (see scenejax/config_lib.py for the fields)"
  )


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the whole config before any work; a ConfigError names the
  first field that cannot work and the allowed values."""
  want = dict(_fields(base()))
  have = dict(_fields(config))
  for name in have.keys() - want.keys():
    raise ConfigError(unknown_field_message(name))
  for name in want.keys() - have.keys():
    raise ConfigError(
      f"{name} is missing; start configs from scenejax.config_lib.base()"
    )

  def check(name, ok, allowed):
    if not ok:
      raise ConfigError(f"{name} = {have[name]!r}; allowed: {allowed}")

  def one_of(name, options):
    check(name, have[name] in options, " | ".join(map(str, options)))

  def at_least(name, low):
    value = have[name]
    check(
      name,
      isinstance(value, (int, float))
      and not isinstance(value, bool)
      and value >= low,
      f">= {low}",
    )

  def between(name, low, high):
    value = have[name]
    check(
      name,
      isinstance(value, (int, float)) and low <= value <= high,
      f"{low}..{high}",
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
  one_of("config.dtype", ("float32", "bfloat16"))
  one_of("config.optimizer.name", ("adam", "sgd"))
  one_of("config.optimizer.schedule", ("step", "cosine", "constant", "poly"))
  one_of("config.task", TASKS)
  if config.dataset == "cityscapes" and config.task != "segmentation":
    raise ConfigError(
      "config.dataset = 'cityscapes' has label maps, not scene labels: "
      "set config.task = 'segmentation'"
    )
  if (
    config.dataset in ("voc2007", "coco2014", "nus_wide")
    and config.task != "multilabel"
  ):
    raise ConfigError(
      f"config.dataset = {config.dataset!r} has object labels, not scene "
      "labels: set config.task = 'multilabel'"
    )
  if config.task == "segmentation":
    _validate_segmentation(config, one_of, at_least, between)
  if config.task == "multilabel":
    _validate_multilabel(config, one_of, at_least, between)
  from scenejax import models

  if config.model in models.SEMANTIC_AWARE:
    _validate_sasnet(config, one_of)
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
  one_of("config.loss.labels", LABELS)
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
  from scenejax.prototype import published

  if published.is_published(config.prototype.path):
    try:
      dataset, _ = published.parse(prototype_path(config))
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
    from scenejax import models

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


SEGMENTATION_CLASS_WEIGHTS = ("uniform", "inverse", "median_frequency")


def _validate_segmentation(config, one_of, at_least, between) -> None:
  from scenejax import models

  one_of("config.model", models.TRAINABLE_SEGMENTERS)
  seg = "config.segmentation."
  for name in (
    "crop_size",
    "base_size",
    "aspp_width",
    "low_level_width",
    "decoder_width",
    "embedding_dim",
    "num_samples",
    "per_class",
  ):
    at_least(seg + name, 1)
  for name in ("focal_gamma", "contrastive_weight", "margin"):
    at_least(seg + name, 0)
  one_of(seg + "output_stride", (8, 16, 32))
  one_of(seg + "contrastive_form", losses.PIXEL_CONTRASTIVE_FORMS)
  between(seg + "temperature", 1e-6, 100.0)
  scale = config.segmentation.scale_range
  if not (
    isinstance(scale, (tuple, list))
    and len(scale) == 2
    and all(isinstance(v, (int, float)) for v in scale)
    and 0 < scale[0] <= scale[1]
  ):
    raise ConfigError(
      f"config.segmentation.scale_range = {scale!r}; need two numbers "
      "0 < low <= high"
    )
  weights = config.segmentation.class_weights
  if weights not in SEGMENTATION_CLASS_WEIGHTS and not os.path.isfile(weights):
    raise ConfigError(
      f"config.segmentation.class_weights = {weights!r}: neither one of "
      f"{' | '.join(SEGMENTATION_CLASS_WEIGHTS)} nor an existing file (write "
      "one with python -m scenejax.prototype class_weights)"
    )
  if config.optimizer.backbone_learning_rate and tuple(
    map(tuple, config.optimizer.param_groups)
  ) == tuple(map(tuple, base().optimizer.param_groups)):
    raise ConfigError(
      f"config.optimizer.backbone_learning_rate = "
      f"{config.optimizer.backbone_learning_rate}: with the default "
      "param_groups only the segmenter's 1x1 classifier would get "
      "config.optimizer.learning_rate, and its ASPP, decoder and embedding "
      "head the backbone's rate. Set backbone_learning_rate = 0 (one rate, "
      "as the shipped configs), or param_groups such as (('head', "
      "r'(aspp|low_level|refine|head|embedding)/.*'), ('backbone', '.*'))"
    )
  if config.loss.pcl:
    raise ConfigError(
      "config.loss.pcl is a classification loss; it does not apply to "
      "config.task = 'segmentation'"
    )


def _validate_multilabel(config, one_of, at_least, between) -> None:
  from scenejax import models
  from scenejax.datasets import multilabel

  one_of("config.dataset", multilabel.NAMES)
  one_of("config.model", models.CLASSIFIERS)
  ml = "config.multilabel."
  for name in ("dim", "num_heads", "encoder_layers"):
    at_least(ml + name, 1 if name != "encoder_layers" else 0)
  if config.multilabel.dim % config.multilabel.num_heads or (
    config.multilabel.dim % 4
  ):
    raise ConfigError(
      f"config.multilabel.dim = {config.multilabel.dim} must be a multiple "
      f"of config.multilabel.num_heads = {config.multilabel.num_heads} and "
      "of 4 (the sine position code)"
    )
  for name in (
    "asl_gamma_positive",
    "asl_gamma_negative",
    "sscl_weight",
    "pscl_weight",
  ):
    at_least(ml + name, 0)
  between(ml + "asl_margin", 0.0, 1.0)
  between(ml + "temperature", 1e-6, 100.0)
  between(ml + "ema_momentum", 0.0, 1.0)
  between(ml + "threshold", 0.0, 1.0)
  one_of(ml + "classification_loss", MULTILABEL_CLASSIFICATION_LOSSES)
  one_of(ml + "pscl_unactivated", losses.PSCL_UNACTIVATED)
  one_of(ml + "prototypes", MULTILABEL_PROTOTYPES)
  if config.loss.pcl:
    raise ConfigError(
      "config.loss.pcl is a scene-classification loss; it does not apply "
      "to config.task = 'multilabel'"
    )
  if config.data.ten_crop:
    raise ConfigError(
      "config.data.ten_crop: multi-label evaluation is single-crop; set "
      "it to False"
    )
  if config.prototype.segmenter:
    raise ConfigError(
      "config.prototype.segmenter builds a scene prototype; config.task = "
      "'multilabel' reads none: clear it"
    )
