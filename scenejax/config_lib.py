"""Shared pieces of the experiment configs in configs/.

`base()` has every field the trainer reads, with defaults; a config file
overrides what its recipe changes. `apply_variant(config, arg)` reads the
config-argument string of `--config=configs/x.py:ARG`, a comma list of

  ce | lsr | gls          the targets of the CE term
  bcl[=REDUCTION]         BCL on ([SP] Eq. 10-15), default mean_inter
  cl                      the classic contrastive-loss baseline
  pcl                     pairwise consistency learning ([PCL] Eq. 3)
  euclidean               build/compare with the exp(-euclidean) prototype

e.g. `--config=configs/mit67_resnet50.py:gls,bcl=nonzero_inter_intra`.
"""

from __future__ import annotations

import ml_collections

from scenejax import losses


def base() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = "synthetic_scenes"
  config.data = ml_collections.ConfigDict(dict(
      data_dir="",               # TFDS data_dir ('' = ~/tensorflow_datasets)
      image_size=224,
      resize_size=256,
      random_resized_crop=False,
      ten_crop=False,            # ten-crop evaluation (SAS-Net)
      on_corrupt="skip",         # or "raise"
      sun397_config="standard-part1-120k",
  ))
  config.model = "resnet50"
  config.init_from = ""          # pretrained checkpoint ('' = random init)
  config.dtype = "float32"       # compute dtype: float32 | bfloat16
  config.num_epochs = 100
  config.batch_size = 32
  config.eval_batch_size = 64
  config.optimizer = ml_collections.ConfigDict(dict(
      name="adam", learning_rate=1e-3, backbone_learning_rate=1e-5,
      weight_decay=1e-5, schedule="step", decay_epochs=(10, 15, 20),
      momentum=0.9))
  config.loss = ml_collections.ConfigDict(dict(
      labels="gls", num_soft_epochs=20, final_confidence=0.99, lsr_alpha=0.1,
      bcl_weight=1.0, bcl_metric="cosine", bcl_reduction="mean_inter",
      bcl_pairing="gather", cl_weight=0.0, pcl=False, pcl_alpha=1.0,
      pcl_beta=2.0, pcl_gamma=0.7, pcl_cam_stage=-1))
  # An NPZ from `python -m scenejax.prototype`; the synthetic dataset can
  # build its own ('' = build from the training label maps).
  config.prototype = ml_collections.ConfigDict(dict(path="", metric="cosine"))
  config.checkpoint_keep = 2
  config.log_every_steps = 50
  config.progress_bar = True
  return config


def apply_variant(config: ml_collections.ConfigDict, arg: str | None
                  ) -> ml_collections.ConfigDict:
  """Applies a `ce|lsr|gls,bcl[=r],cl,pcl,euclidean` string (see above)."""
  if not arg:
    return config
  loss = config.loss
  tokens = [t.strip() for t in arg.split(",") if t.strip()]
  if any(t in ("ce", "lsr", "gls") for t in tokens):
    # A string naming the targets lists every term it wants: start clean.
    loss.bcl_weight, loss.cl_weight, loss.pcl = 0.0, 0.0, False
  for token in tokens:
    name, _, value = token.partition("=")
    if name in ("ce", "lsr", "gls") and not value:
      loss.labels = name
    elif name == "bcl":
      loss.bcl_weight = 1.0
      if value:
        if value not in losses.BCL_REDUCTIONS:
          raise ValueError(f"config argument {token!r}: BCL reduction must "
                           f"be one of {losses.BCL_REDUCTIONS}")
        loss.bcl_reduction = value
    elif name == "cl" and not value:
      loss.cl_weight = 1.0
    elif name == "pcl" and not value:
      loss.pcl = True
    elif name == "euclidean" and not value:
      loss.bcl_metric = "euclidean"
      config.prototype.metric = "euclidean"
    else:
      raise ValueError(f"unknown config argument {token!r} in {arg!r}; "
                       "expected ce|lsr|gls, bcl[=reduction], cl, pcl, "
                       "euclidean")
  return config
