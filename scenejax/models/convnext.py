"""ConvNeXt (Liu et al. 2022), Flax NNX, NHWC.

Stem 4x4/4 conv + LN; four stages, each but the first opening with LN +
2x2/2 conv; blocks of 7x7 depthwise conv -> LN -> Linear(4C) -> GELU ->
Linear(C), scaled by a learned per-channel layer scale, added to the
input. Head: global average pool -> LN -> Linear. LayerNorm epsilon 1e-6
everywhere except the head norm, whose epsilon the checkpoint sets
(Hugging Face configs say 1e-12). Stochastic depth is not implemented.

Pretrained weights: Hugging Face ConvNext safetensors
(e.g. facebook/convnext-base-224-22k).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scenejax.models import pretrained
from scenejax.models.classifier import Classifier
from scenejax.models.conv import Conv, depthwise_conv
from scenejax.models.vit import IMAGENET_MEAN, IMAGENET_STD

VARIANTS = {  # depths, widths
  # timm's convnext_atto: no ADE20K checkpoint; small segmenters for tests
  # and CPU experiments.
  "atto": ((2, 2, 6, 2), (40, 80, 160, 320)),
  "tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
  "small": ((3, 3, 27, 3), (96, 192, 384, 768)),
  "base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
  "large": ((3, 3, 27, 3), (192, 384, 768, 1536)),
  "xlarge": ((3, 3, 27, 3), (256, 512, 1024, 2048)),
}
_init = nnx.initializers.truncated_normal(0.02)


class Block(nnx.Module):
  """x + layer_scale * Linear(GELU(Linear(LN(dwconv7x7(x)))))."""

  def __init__(self, width, *, layer_scale_init, dtype, rngs, dilation=1):
    self.dwconv = Conv(
      width,
      width,
      (7, 7),
      padding=3 * dilation,
      kernel_dilation=dilation,
      feature_group_count=width,
      kernel_init=_init,
      dtype=dtype,
      rngs=rngs,
    )
    self.layernorm = nnx.LayerNorm(width, epsilon=1e-6, dtype=dtype, rngs=rngs)
    self.pwconv1 = nnx.Linear(
      width, 4 * width, kernel_init=_init, dtype=dtype, rngs=rngs
    )
    self.pwconv2 = nnx.Linear(
      4 * width, width, kernel_init=_init, dtype=dtype, rngs=rngs
    )
    self.layer_scale_parameter = nnx.Param(
      jnp.full((width,), layer_scale_init, jnp.float32)
    )

  def __call__(self, x):
    y = self.pwconv1(self.layernorm(depthwise_conv(self.dwconv, x)))
    y = self.pwconv2(jax.nn.gelu(y, approximate=False))
    return x + self.layer_scale_parameter[...].astype(y.dtype) * y


class Stage(nnx.Module):
  """Optional LN + 2x2/2 down-sampling conv, then `depth` blocks.

  `dilated=d` (the segmenters' output stride 16 or 8): the down-sampling
  conv keeps stride 1 at dilation `d` (padded by d at the bottom/right)
  and the blocks' 7x7 convolutions dilate by 2d, the "a trous" rule: on
  input sizes divisible by the network's stride, every 2nd row and column
  of the output is the undilated stage's output, with the same weights.
  """

  def __init__(
    self,
    in_features,
    width,
    depth,
    *,
    downsample,
    dtype,
    rngs,
    layer_scale_init,
    dilated: int = 0,
  ):
    if downsample:
      self.downsample_norm = nnx.LayerNorm(
        in_features, epsilon=1e-6, dtype=dtype, rngs=rngs
      )
      self.downsample_conv = Conv(
        in_features,
        width,
        (2, 2),
        strides=1 if dilated else 2,
        kernel_dilation=dilated or 1,
        # VALID as PyTorch's padding=0 (matters for odd sizes); dilated,
        # the padding keeps the size
        padding=((0, dilated), (0, dilated)) if dilated else "VALID",
        kernel_init=_init,
        dtype=dtype,
        rngs=rngs,
      )
    self.downsample = downsample
    self.blocks = nnx.List(
      [
        Block(
          width,
          layer_scale_init=layer_scale_init,
          dtype=dtype,
          rngs=rngs,
          dilation=2 * dilated if dilated else 1,
        )
        for _ in range(depth)
      ]
    )

  def __call__(self, x):
    if self.downsample:
      x = self.downsample_conv(self.downsample_norm(x))
    for block in self.blocks:
      x = block(x)
    return x


class Trunk(nnx.Module):
  """Stem and the four stages; `stage_maps(x)` returns each stage's output.
  Shared by the classifier and by the segmenters' backbones, which set
  `output_stride` 16 or 8 (the last stage(s) dilated instead of strided,
  see `Stage`; `stage_strides` gives each map's stride)."""

  def __init__(
    self, variant, *, layer_scale_init, dtype, rngs, output_stride=32
  ):
    if output_stride not in (8, 16, 32):
      raise ValueError(f"output_stride {output_stride}: 8, 16 or 32")
    depths, widths = VARIANTS[variant]
    self.depths, self.widths = depths, widths
    strides, dilations, stride, dilation = [], [], 4, 1
    for i in range(4):
      if i and stride * 2 > output_stride:
        dilations.append(dilation)
        dilation *= 2
      else:
        dilations.append(0)
        stride *= 2 if i else 1
      strides.append(stride)
    self.stage_strides = tuple(strides)
    self.stem_conv = Conv(
      3,
      widths[0],
      (4, 4),
      strides=4,
      padding="VALID",  # PyTorch's: sizes not a multiple of 4 are floored
      kernel_init=_init,
      dtype=dtype,
      rngs=rngs,
    )
    self.stem_norm = nnx.LayerNorm(
      widths[0], epsilon=1e-6, dtype=dtype, rngs=rngs
    )
    stage = functools.partial(
      Stage, dtype=dtype, rngs=rngs, layer_scale_init=layer_scale_init
    )
    self.stages = nnx.List(
      [
        stage(
          widths[max(i - 1, 0)],
          widths[i],
          depths[i],
          downsample=i > 0,
          dilated=dilations[i],
        )
        for i in range(4)
      ]
    )

  def stage_maps(self, x) -> list[jax.Array]:
    x = self.stem_norm(self.stem_conv(x))
    maps = []
    for stage in self.stages:
      x = stage(x)
      maps.append(x)
    return maps


class ConvNeXt(Trunk, Classifier):
  """ConvNeXt classifier; `forward_features(x)` gives (pooled, normed
  embedding, [output of each stage]); `__call__` the logits."""

  def __init__(
    self,
    variant: str,
    num_classes: int,
    *,
    head_epsilon=1e-6,
    layer_scale_init=1e-6,
    pixel_mean=IMAGENET_MEAN,
    pixel_std=IMAGENET_STD,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    super().__init__(
      variant, layer_scale_init=layer_scale_init, dtype=dtype, rngs=rngs
    )
    self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
    widths = self.widths
    self.head_norm = nnx.LayerNorm(
      widths[-1], epsilon=head_epsilon, dtype=dtype, rngs=rngs
    )
    self.head = nnx.Linear(
      widths[-1], num_classes, kernel_init=_init, dtype=dtype, rngs=rngs
    )
    self.num_features = widths[-1]
    self.feature_widths = tuple(widths)
    self.default_cam_stage = 2  # stage-3 output, 14x14 at 224 px

  def forward_features(self, x) -> tuple[jax.Array, list[jax.Array]]:
    maps = self.stage_maps(x)
    return self.head_norm(jnp.mean(maps[-1], axis=(1, 2))), maps


def convnext_tiny(num_classes, **kw) -> ConvNeXt:
  return ConvNeXt("tiny", num_classes, **kw)


def convnext_small(num_classes, **kw) -> ConvNeXt:
  return ConvNeXt("small", num_classes, **kw)


def convnext_base(num_classes, **kw) -> ConvNeXt:
  return ConvNeXt("base", num_classes, **kw)


def convnext_large(num_classes, **kw) -> ConvNeXt:
  return ConvNeXt("large", num_classes, **kw)


def convnext_xlarge(num_classes, **kw) -> ConvNeXt:
  return ConvNeXt("xlarge", num_classes, **kw)


def checkpoint_options(path: str) -> dict:
  """Head-norm epsilon and pixel statistics from a Hugging Face checkpoint."""
  if not pretrained.is_hf(path):
    raise pretrained.CheckpointError(
      f"{path}: ConvNeXt loads Hugging Face checkpoints (a directory with "
      "config.json and model.safetensors)"
    )
  config = pretrained.read_hf_config(path)
  mean, std = pretrained.hf_pixel_stats(path, (IMAGENET_MEAN, IMAGENET_STD))
  return dict(
    head_epsilon=config.get("layer_norm_eps", 1e-12),
    pixel_mean=mean,
    pixel_std=std,
  )


# Hugging Face ConvNext module paths -> ours (for `pretrained.torch_to_flax`).
HF_RENAMES = [
  (r"^embeddings\.patch_embeddings$", "stem_conv"),
  (r"^embeddings\.layernorm$", "stem_norm"),
  (
    r"^encoder\.stages\.(\d+)\.downsampling_layer\.0$",
    r"stages.\1.downsample_norm",
  ),
  (
    r"^encoder\.stages\.(\d+)\.downsampling_layer\.1$",
    r"stages.\1.downsample_conv",
  ),
  (r"^encoder\.stages\.(\d+)\.layers\.(\d+)", r"stages.\1.blocks.\2"),
]


def from_hf(tensors) -> dict[str, np.ndarray]:
  """Hugging Face ConvNext tensors -> our parameter paths."""
  tensors = {k.removeprefix("convnext."): v for k, v in tensors.items()}
  return pretrained.torch_to_flax(
    tensors,
    HF_RENAMES + [(r"^layernorm$", "head_norm"), (r"^classifier$", "head")],
  )


def load_checkpoint(model: ConvNeXt, path: str) -> None:
  config, tensors, source = pretrained.read_hf(path)
  pretrained.check_hf_config(
    config,
    source,
    "convnext",
    {
      "depths": list(model.depths),
      "hidden_sizes": list(model.widths),
      "hidden_act": "gelu",
      "patch_size": 4,
    },
  )
  # layer_scale_parameter is a bare tensor name: torch_to_flax keeps it.
  pretrained.assign(model, from_hf(tensors), source=source)
