"""Model zoo: `create(name, num_classes)` returns a Flax NNX classifier;
for the names in `SEGMENTERS`, a segmenter (`scenejax.models.segmenter`:
(B, H, W, 3) images -> (B, H, W, num_classes) logits); for those in
`SEMANTIC_AWARE`, SAS-Net (`scenejax.models.sasnet`: images and a
segmenter's score tensor -> a dict of logits).

Every classifier takes NHWC float images and has:
  * `__call__(x)` -> logits;
  * `forward_features(x)` -> (penultimate embedding, [intermediate NHWC
    feature maps]) — per stage for CNNs, per block for ViTs; the CAM
    module of `scenejax.models.pcl` attaches to one of these maps;
  * `embed(x)`, `features(x)`: the two halves of that pair;
  * `num_features` (embedding width), `feature_widths` (channels of each
    map), `default_cam_stage` (index of the map at the input of the last
    down-sampling stage), `pixel_mean`/`pixel_std`
    (the normalisation its weights expect, applied by the input pipeline).
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
from flax import nnx

from scenejax.errors import ConfigError
from scenejax.models import (
  convnext,
  deeplab,
  densenet,
  mobilenetv3,
  mobilevit,
  pcl,
  pretrained,
  resnet,
  sadcl,
  sasnet,
  segformer,
  shufflenet,
  swin,
  upernet,
  vgg,
  vit,
)

_MODELS = {
  "resnet18": resnet.resnet18,
  "resnet34": resnet.resnet34,
  "resnet50": resnet.resnet50,
  "resnet101": resnet.resnet101,
  "resnet_tiny": resnet.resnet_tiny,
  "vit_ti16": vit.vit_ti16,
  "vit_s16": vit.vit_s16,
  "vit_b16": vit.vit_b16,
  "vit_l16": vit.vit_l16,
  "convnext_tiny": convnext.convnext_tiny,
  "convnext_small": convnext.convnext_small,
  "convnext_base": convnext.convnext_base,
  "mobilenetv3_large": mobilenetv3.mobilenetv3_large,
  "mobilevit_s": mobilevit.mobilevit_s,
  "mobilevit_xs": mobilevit.mobilevit_xs,
  "mobilevit_xxs": mobilevit.mobilevit_xxs,
  "vgg16": vgg.vgg16,
  "vgg16_bn": vgg.vgg16_bn,
  "densenet121": densenet.densenet121,
  "densenet161": densenet.densenet161,
  "densenet169": densenet.densenet169,
  "densenet201": densenet.densenet201,
  "shufflenet_v2_x0_5": shufflenet.shufflenet_v2_x0_5,
  "shufflenet_v2_x1_0": shufflenet.shufflenet_v2_x1_0,
  "shufflenet_v2_x1_5": shufflenet.shufflenet_v2_x1_5,
  "shufflenet_v2_x2_0": shufflenet.shufflenet_v2_x2_0,
  "swin_t": swin.swin_t,
  "swin_s": swin.swin_s,
  "swin_b": swin.swin_b,
}
_SEGMENTERS = {
  f"upernet_convnext_{v}": getattr(upernet, f"upernet_convnext_{v}")
  for v in ("atto", "tiny", "small", "base", "large", "xlarge")
} | {f"segformer_b{i}": getattr(segformer, f"segformer_b{i}") for i in range(6)}
# The segmenters the trainer trains (config.task = "segmentation"): they
# have the pixel-embedding head of [SEG] (`decode_with_embeddings`).
TRAINABLE_SEGMENTERS = tuple(
  f"deeplabv3plus_{d}"
  for d in (
    "resnet50",
    "resnet101",
    "resnet_tiny",
    "convnext_tiny",
    "convnext_small",
  )
)
_SEGMENTERS.update(
  {name: getattr(deeplab, name) for name in TRAINABLE_SEGMENTERS}
)
SEGMENTERS = tuple(sorted(_SEGMENTERS))
_MODELS.update(_SEGMENTERS)
# Two inputs, images and a segmenter's scores (`scenejax.models.sasnet`).
SEMANTIC_AWARE = ("sasnet_resnet18", "sasnet_resnet50", "sasnet_resnet_tiny")
_MODELS.update({name: getattr(sasnet, name) for name in SEMANTIC_AWARE})
NAMES = tuple(sorted(_MODELS))
CLASSIFIERS = tuple(
  n for n in NAMES if n not in _SEGMENTERS and n not in SEMANTIC_AWARE
)


def create(
  name: str,
  num_classes: int,
  *,
  init_from: str | None = None,
  rngs: nnx.Rngs | None = None,
  **options,
) -> nnx.Module:
  """Builds model `name` with a `num_classes`-way head.

  Args:
    name: one of `NAMES`.
    num_classes: size of the classifier head.
    init_from: a pretrained checkpoint (local path, http(s):// or gs://):
      a big_vision `.npz` (ViT), a Hugging Face directory (ViT, ResNet,
      ConvNeXt, Swin, MobileViT, the segmenters), or a safetensors file /
      timm hub directory in timm's or torchvision's layout (Swin,
      MobileViT, VGG, DenseNet, ShuffleNetV2, MobileNetV3). Every backbone
      weight must load; the head is kept from the checkpoint only if its
      class count matches.
    rngs: initialisation randomness (default `nnx.Rngs(0)`).
    **options: family options, e.g. `image_size=384` for a ViT,
      `dtype=jnp.bfloat16` for the compute dtype (parameters stay fp32).
  """
  if name not in _MODELS:
    raise ConfigError(f"unknown model {name!r}; known: {', '.join(NAMES)}")
  builder = _MODELS[name]
  family = sys.modules[builder.__module__]
  path = None
  if init_from:
    if not hasattr(family, "load_checkpoint"):
      raise pretrained.CheckpointError(
        f"no pretrained-weight loader for {name!r} (init_from={init_from!r})"
      )
    path = pretrained.local_path(init_from)
    options = {**family.checkpoint_options(path), **options}
  model = builder(num_classes, rngs=rngs or nnx.Rngs(0), **options)
  # What rebuilds the same network (an export) needs besides the name:
  # the options, including those the checkpoint set (e.g. timm's
  # MobileNetV3 BatchNorm epsilon). Hashable: it is graph metadata.
  model.create_options = tuple(
    sorted((k, v) for k, v in options.items() if k != "dtype")
  )
  if path:
    family.load_checkpoint(model, path)
  return model


def num_params(model: nnx.Module) -> int:
  """Number of trainable parameters (batch statistics excluded)."""
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def from_config(config, num_classes: int) -> nnx.Module:
  """The model of a training config: `config.model` with `config.init_from`
  and `config.dtype`, wrapped in the PCL model when `config.loss.pcl`; for
  config.task = "segmentation", a trainable segmenter with
  `config.segmentation`'s architecture options."""
  # .get: a workdir's config.json from before 2026-11-23 has no task.
  task = config.get("task", "classification")
  if task == "segmentation":
    return _segmenter_from_config(config, num_classes)
  if task == "multilabel":
    return _multilabel_from_config(config, num_classes)
  if config.model not in CLASSIFIERS + SEMANTIC_AWARE:
    raise ConfigError(
      f"config.model = {config.model!r}; expected a classifier, one of "
      f"{', '.join(CLASSIFIERS + SEMANTIC_AWARE)}"
    )
  if config.dtype not in DTYPES:
    raise ConfigError(
      f"config.dtype = {config.dtype!r}; expected one of {sorted(DTYPES)}"
    )
  options = dict(dtype=DTYPES[config.dtype])
  if config.model.startswith("vit"):  # position embeddings fit the input
    options["image_size"] = config.data.image_size
  model = create(
    config.model,
    num_classes,
    init_from=config.init_from or None,
    rngs=nnx.Rngs(config.seed),
    **options,
  )
  if config.loss.pcl:
    stage = config.loss.pcl_cam_stage
    model = pcl.PCLModel(
      model,
      num_classes,
      cam_stage=None if stage == -1 else stage,
      gamma=config.loss.pcl_gamma,
      rngs=nnx.Rngs(config.seed + 1),
    )
  return model


def _segmenter_from_config(config, num_classes: int) -> nnx.Module:
  if config.model not in TRAINABLE_SEGMENTERS:
    raise ConfigError(
      f"config.model = {config.model!r}; config.task = 'segmentation' "
      f"trains one of {', '.join(TRAINABLE_SEGMENTERS)}"
    )
  seg = config.segmentation
  return create(
    config.model,
    num_classes,
    init_from=config.init_from or None,
    rngs=nnx.Rngs(config.seed),
    dtype=DTYPES[config.dtype],
    output_stride=seg.output_stride,
    aspp_rates=tuple(seg.aspp_rates),
    aspp_width=seg.aspp_width,
    low_level_width=seg.low_level_width,
    decoder_width=seg.decoder_width,
    embedding_dim=seg.embedding_dim,
  )


def _multilabel_from_config(config, num_labels: int) -> nnx.Module:
  """[SADCL]: config.model's backbone under the SARL head of
  config.multilabel (the backbone's own classifier is built, unused)."""
  if config.model not in CLASSIFIERS:
    raise ConfigError(
      f"config.model = {config.model!r}; config.task = 'multilabel' puts "
      f"the SARL head on a classifier backbone, one of {', '.join(CLASSIFIERS)}"
    )
  options = dict(dtype=DTYPES[config.dtype])
  if config.model.startswith("vit"):
    options["image_size"] = config.data.image_size
  backbone = create(
    config.model,
    num_labels,
    init_from=config.init_from or None,
    rngs=nnx.Rngs(config.seed),
    **options,
  )
  ml = config.multilabel
  return sadcl.SADCLModel(
    backbone,
    num_labels,
    prototypes=ml.prototypes,
    dim=ml.dim,
    num_heads=ml.num_heads,
    encoder_layers=ml.encoder_layers,
    dtype=DTYPES[config.dtype],
    rngs=nnx.Rngs(config.seed + 1),
  )
