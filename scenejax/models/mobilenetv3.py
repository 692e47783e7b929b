"""MobileNetV3-Large (Howard et al. 2019), Flax NNX, NHWC.

The architecture of torchvision's `mobilenet_v3_large` (width 1.0): the
edge-device backbone [SP] (arXiv:2308.05896) argues the similarity prior suits, since the
prior adds nothing at deployment. Inverted residual blocks with optional
squeeze-excitation (ReLU, then hard-sigmoid gate), hard-swish in the later
half, BatchNorm eps 1e-3 / momentum 0.01 (PyTorch's convention), head
960 -> 1280 (hard-swish) -> classes. The classifier's dropout is not
implemented. Random initialisation only: no pretrained loader yet.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from scenejax.models.classifier import Classifier, depthwise_conv
from scenejax.models.vit import IMAGENET_MEAN, IMAGENET_STD

# kernel, expanded width, output width, squeeze-excite, hard-swish, stride
LARGE = (
  (3, 16, 16, False, False, 1),
  (3, 64, 24, False, False, 2),
  (3, 72, 24, False, False, 1),
  (5, 72, 40, True, False, 2),
  (5, 120, 40, True, False, 1),
  (5, 120, 40, True, False, 1),
  (3, 240, 80, False, True, 2),
  (3, 200, 80, False, True, 1),
  (3, 184, 80, False, True, 1),
  (3, 184, 80, False, True, 1),
  (3, 480, 112, True, True, 1),
  (3, 672, 112, True, True, 1),
  (5, 672, 160, True, True, 2),
  (5, 960, 160, True, True, 1),
  (5, 960, 160, True, True, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
  """Nearest multiple of `divisor`, never more than 10% below `value`."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBN(nnx.Module):
  """Conv (no bias) -> BatchNorm -> optional activation."""

  def __init__(
    self,
    in_features,
    out,
    kernel,
    *,
    stride=1,
    groups=1,
    activation=None,
    dtype,
    rngs,
  ):
    self.conv = nnx.Conv(
      in_features,
      out,
      (kernel, kernel),
      strides=stride,
      padding=(kernel - 1) // 2,
      feature_group_count=groups,
      use_bias=False,
      dtype=dtype,
      rngs=rngs,
      kernel_init=nnx.initializers.variance_scaling(2.0, "fan_out", "normal"),
    )
    self.bn = nnx.BatchNorm(
      out, momentum=0.99, epsilon=1e-3, dtype=dtype, rngs=rngs
    )
    self.activation = activation

  def __call__(self, x):
    x = self.bn(depthwise_conv(self.conv, x))
    return x if self.activation is None else self.activation(x)


class SqueezeExcite(nnx.Module):
  """x * hard_sigmoid(fc2(relu(fc1(mean_hw(x)))))."""

  def __init__(self, width, squeeze, *, dtype, rngs):
    self.fc1 = nnx.Linear(width, squeeze, dtype=dtype, rngs=rngs)
    self.fc2 = nnx.Linear(squeeze, width, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    return x * jax.nn.hard_sigmoid(self.fc2(jax.nn.relu(self.fc1(s))))


class InvertedResidual(nnx.Module):
  def __init__(
    self,
    in_features,
    kernel,
    expanded,
    out,
    use_se,
    hard_swish,
    stride,
    *,
    dtype,
    rngs,
  ):
    act = jax.nn.hard_swish if hard_swish else jax.nn.relu
    conv = functools.partial(ConvBN, dtype=dtype, rngs=rngs)
    self.expand = nnx.data(
      conv(in_features, expanded, 1, activation=act)
      if expanded != in_features
      else None
    )
    self.depthwise = conv(
      expanded, expanded, kernel, stride=stride, groups=expanded, activation=act
    )
    self.se = nnx.data(
      SqueezeExcite(
        expanded, make_divisible(expanded // 4), dtype=dtype, rngs=rngs
      )
      if use_se
      else None
    )
    self.project = conv(expanded, out, 1)
    self.residual = stride == 1 and in_features == out

  def __call__(self, x):
    y = x if self.expand is None else self.expand(x)
    y = self.depthwise(y)
    if self.se is not None:
      y = self.se(y)
    y = self.project(y)
    return x + y if self.residual else y


class MobileNetV3(Classifier):
  """`forward_features(x)` gives (1280-d embedding, [the map entering each
  stride-2 block, and the last 960-channel map])."""

  def __init__(
    self,
    num_classes: int,
    *,
    config=LARGE,
    pixel_mean=IMAGENET_MEAN,
    pixel_std=IMAGENET_STD,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
    self.stem = ConvBN(
      3, 16, 3, stride=2, activation=jax.nn.hard_swish, dtype=dtype, rngs=rngs
    )
    blocks, in_features, widths = [], 16, []
    for kernel, expanded, out, use_se, hard_swish, stride in config:
      if stride == 2:
        widths.append(in_features)
      blocks.append(
        InvertedResidual(
          in_features,
          kernel,
          expanded,
          out,
          use_se,
          hard_swish,
          stride,
          dtype=dtype,
          rngs=rngs,
        )
      )
      in_features = out
    self.blocks = nnx.List(blocks)
    self.strides = tuple(row[-1] for row in config)
    self.last_conv = ConvBN(
      in_features,
      6 * in_features,
      1,
      activation=jax.nn.hard_swish,
      dtype=dtype,
      rngs=rngs,
    )
    self.pre_logits = nnx.Linear(6 * in_features, 1280, dtype=dtype, rngs=rngs)
    self.head = nnx.Linear(1280, num_classes, dtype=dtype, rngs=rngs)
    self.num_features = 1280
    self.feature_widths = tuple(widths) + (6 * in_features,)
    self.default_cam_stage = 3  # the 14x14 map entering the last stride 2

  def forward_features(self, x) -> tuple[jax.Array, list[jax.Array]]:
    x = self.stem(x)
    maps = []
    for block, stride in zip(self.blocks, self.strides):
      if stride == 2:
        maps.append(x)
      x = block(x)
    x = self.last_conv(x)
    maps.append(x)
    pooled = jnp.mean(x, axis=(1, 2))
    return jax.nn.hard_swish(self.pre_logits(pooled)), maps


def mobilenetv3_large(num_classes, **kw) -> MobileNetV3:
  return MobileNetV3(num_classes, **kw)
