"""UperNet (Xiao et al. 2018) on ConvNeXt backbones, Flax NNX, NHWC.

Backbone: the four ConvNeXt stages (`scenejax.models.convnext.Trunk`), each
output LayerNormed (as transformers' `ConvNextBackbone` does). Decoder, as
in mmsegmentation's `UPerHead`:

  * PPM on the stride-32 map: for each pool scale s in (1, 2, 3, 6),
    adaptive average pool to s x s -> 1x1 ConvBNReLU -> bilinear back up;
    concatenated with the map -> 3x3 ConvBNReLU ("bottleneck");
  * FPN: a 1x1 ConvBNReLU lateral on each of the three finer maps; top-down,
    each lateral += the coarser one upsampled; a 3x3 ConvBNReLU on each;
  * all four levels upsampled to stride 4, concatenated -> 3x3 ConvBNReLU
    -> 1x1 conv classifier (`head`).

An FCN auxiliary head on the stage-3 map (`auxiliary_head`, 3x3
ConvBNReLU -> 1x1 conv) is part of the ADE20K checkpoints; it serves
training only (`auxiliary_logits`), never inference.

Pretrained weights: Hugging Face `UperNetForSemanticSegmentation`
checkpoints with a ConvNeXt backbone (`openmmlab/upernet-convnext-{tiny,
small,base,large,xlarge}`, MIT licence, trained on ADE20K-150 at 512 px).

References:
  T. Xiao, Y. Liu, B. Zhou, Y. Jiang, J. Sun. Unified Perceptual Parsing
  for Scene Understanding. ECCV 2018. doi:10.1007/978-3-030-01228-1_26.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scenejax.models import convnext, pretrained
from scenejax.models.conv import Conv
from scenejax.models.segmenter import (
  ConvBNReLU,
  Segmenter,
  adaptive_avg_pool,
  resize_bilinear,
)
from scenejax.models.vit import IMAGENET_MEAN, IMAGENET_STD

LICENCE = "MIT (openmmlab/upernet-convnext-*)"


class Backbone(convnext.Trunk):
  """ConvNeXt stages with a LayerNorm on each stage's output."""

  def __init__(self, variant, *, dtype, rngs):
    super().__init__(variant, layer_scale_init=1e-6, dtype=dtype, rngs=rngs)
    self.norms = nnx.List(
      [
        nnx.LayerNorm(w, epsilon=1e-6, dtype=dtype, rngs=rngs)
        for w in self.widths
      ]
    )

  def __call__(self, x) -> list[jax.Array]:
    return [norm(m) for norm, m in zip(self.norms, self.stage_maps(x))]


class AuxiliaryHead(nnx.Module):
  """FCN head: `num_convs` 3x3 ConvBNReLU (+ optional concat of its input
  and a 3x3 ConvBNReLU), then a 1x1 classifier."""

  def __init__(
    self, in_features, width, num_classes, *, num_convs, concat_input, dtype,
    rngs,
  ):  # fmt: skip
    block = functools.partial(ConvBNReLU, kernel=3, dtype=dtype, rngs=rngs)
    self.convs = nnx.List(
      [block(in_features if i == 0 else width, width) for i in range(num_convs)]
    )
    self.conv_cat = (
      nnx.data(block(in_features + width, width)) if concat_input else None
    )
    self.classifier = Conv(
      width if num_convs else in_features,
      num_classes,
      (1, 1),
      dtype=dtype,
      rngs=rngs,
    )

  def __call__(self, x):
    y = x
    for conv in self.convs:
      y = conv(y)
    if self.conv_cat is not None:
      y = self.conv_cat(jnp.concatenate([x, y], axis=-1))
    return self.classifier(y)


class UperNet(Segmenter):
  """UperNet-ConvNeXt; `__call__(x)` -> logits at the input resolution."""

  head_prefixes = ("head/", "auxiliary_head/classifier/")

  def __init__(
    self,
    variant: str,
    num_classes: int,
    *,
    hidden_size: int = 512,
    pool_scales=(1, 2, 3, 6),
    auxiliary: bool = True,
    auxiliary_in_features: int | None = None,
    auxiliary_width: int = 256,
    auxiliary_num_convs: int = 1,
    auxiliary_concat_input: bool = False,
    pixel_mean=IMAGENET_MEAN,
    pixel_std=IMAGENET_STD,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.variant, self.num_classes = variant, num_classes
    self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
    self.pool_scales = tuple(pool_scales)
    self.backbone = Backbone(variant, dtype=dtype, rngs=rngs)
    widths = self.backbone.widths
    block = functools.partial(ConvBNReLU, dtype=dtype, rngs=rngs)
    self.psp_modules = nnx.List(
      [block(widths[-1], hidden_size, 1) for _ in self.pool_scales]
    )
    self.bottleneck = block(
      widths[-1] + len(self.pool_scales) * hidden_size, hidden_size, 3
    )
    self.lateral_convs = nnx.List(
      [block(w, hidden_size, 1) for w in widths[:-1]]
    )
    self.fpn_convs = nnx.List(
      [block(hidden_size, hidden_size, 3) for _ in widths[:-1]]
    )
    self.fpn_bottleneck = block(len(widths) * hidden_size, hidden_size, 3)
    self.head = Conv(hidden_size, num_classes, (1, 1), dtype=dtype, rngs=rngs)
    self.auxiliary_head = nnx.data(
      AuxiliaryHead(
        auxiliary_in_features or widths[2],
        auxiliary_width,
        num_classes,
        num_convs=auxiliary_num_convs,
        concat_input=auxiliary_concat_input,
        dtype=dtype,
        rngs=rngs,
      )
      if auxiliary
      else None
    )

  def _pyramid_pooling(self, x):
    outs = [x]
    for scale, conv in zip(self.pool_scales, self.psp_modules):
      outs.append(
        resize_bilinear(conv(adaptive_avg_pool(x, scale)), x.shape[1:3])
      )
    return self.bottleneck(jnp.concatenate(outs, axis=-1))

  def decode(self, x) -> jax.Array:
    """Logits at stride 4: (B, ceil(H/4), ceil(W/4), num_classes)."""
    maps = self.backbone(x)
    laterals = [conv(m) for conv, m in zip(self.lateral_convs, maps)]
    laterals.append(self._pyramid_pooling(maps[-1]))
    for i in range(len(laterals) - 1, 0, -1):  # top-down pathway
      laterals[i - 1] = laterals[i - 1] + resize_bilinear(
        laterals[i], laterals[i - 1].shape[1:3]
      )
    outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals)]
    outs.append(laterals[-1])
    size = outs[0].shape[1:3]
    fused = jnp.concatenate([resize_bilinear(o, size) for o in outs], axis=-1)
    return self.head(self.fpn_bottleneck(fused))

  def auxiliary_logits(self, x) -> jax.Array:
    """The FCN auxiliary head's logits at the input resolution."""
    if self.auxiliary_head is None:
      raise ValueError("this UperNet was built without an auxiliary head")
    maps = self.backbone(x)
    return resize_bilinear(self.auxiliary_head(maps[2]), x.shape[1:3])


def _builder(variant):
  def build(num_classes, **kw) -> UperNet:
    return UperNet(variant, num_classes, **kw)

  build.__name__ = f"upernet_convnext_{variant}"
  build.__module__ = __name__
  return build


upernet_convnext_atto = _builder("atto")  # no published weights
upernet_convnext_tiny = _builder("tiny")
upernet_convnext_small = _builder("small")
upernet_convnext_base = _builder("base")
upernet_convnext_large = _builder("large")
upernet_convnext_xlarge = _builder("xlarge")


def _read_config(path: str) -> dict:
  config = pretrained.read_hf_config(path)
  pretrained.require_model_type(
    config, path, "upernet", "an UperNet segmentation checkpoint"
  )
  backbone = config.get("backbone_config") or {}
  if backbone.get("model_type") != "convnext":
    raise pretrained.CheckpointError(
      f"{path}: UperNet with a {backbone.get('model_type')!r} backbone "
      "(config.json backbone_config.model_type); scenejax has UperNet on "
      "ConvNeXt only"
    )
  return config


def checkpoint_options(path: str) -> dict:
  """Decoder settings and pixel statistics of a Hugging Face checkpoint."""
  config = _read_config(path)
  mean, std = pretrained.hf_pixel_stats(path, (IMAGENET_MEAN, IMAGENET_STD))
  return dict(
    hidden_size=config.get("hidden_size", 512),
    pool_scales=tuple(config.get("pool_scales", (1, 2, 3, 6))),
    auxiliary=config.get("use_auxiliary_head", True),
    auxiliary_in_features=config.get("auxiliary_in_channels"),
    auxiliary_width=config.get("auxiliary_channels", 256),
    auxiliary_num_convs=config.get("auxiliary_num_convs", 1),
    auxiliary_concat_input=config.get("auxiliary_concat_input", False),
    pixel_mean=mean,
    pixel_std=std,
  )


def from_hf(tensors) -> dict[str, np.ndarray]:
  """Hugging Face UperNet-ConvNeXt tensors -> our parameter paths."""
  backbone = {
    k.removeprefix("backbone."): v
    for k, v in tensors.items()
    if k.startswith("backbone.")
  }
  rest = {k: v for k, v in tensors.items() if not k.startswith("backbone.")}
  norms = [
    (rf"^hidden_states_norms\.stage{i + 1}$", f"norms.{i}") for i in range(4)
  ]
  ignore = (r"num_batches_tracked$",)
  out = {
    "backbone/" + k: v
    for k, v in pretrained.torch_to_flax(
      backbone, convnext.HF_RENAMES + norms, ignore=ignore
    ).items()
  }
  out.update(
    pretrained.torch_to_flax(
      rest,
      [
        (r"^decode_head\.psp_modules\.(\d+)\.1\.", r"psp_modules.\1."),
        (r"^decode_head\.classifier$", "head"),
        (r"^decode_head\.", ""),
      ],
      ignore=ignore,
    )
  )
  return out


def load_checkpoint(model: UperNet, path: str) -> None:
  config, tensors, source = pretrained.read_hf(path)
  _read_config(path)
  backbone = config["backbone_config"]
  wrong = [
    f"backbone_config.{k}={backbone.get(k)!r} (model has {v!r})"
    for k, v in (
      ("depths", list(model.backbone.depths)),
      ("hidden_sizes", list(model.backbone.widths)),
    )
    if backbone.get(k) != v
  ]
  if wrong:
    raise pretrained.CheckpointError(
      f"{source}: architecture does not match upernet_convnext_"
      f"{model.variant}: " + ", ".join(wrong)
    )
  pretrained.assign(model, from_hf(tensors), source=source)
