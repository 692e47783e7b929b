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
  pretrained,
  resnet,
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
