"""DenseNet (Huang et al. 2017), Flax NNX, NHWC.

Stem 7x7/2 conv (64) -> BN -> ReLU -> 3x3/2 max pool; four dense blocks,
each layer BN -> ReLU -> 1x1 conv (4k) -> BN -> ReLU -> 3x3 conv (k, the
growth rate) whose output is concatenated to its input; between blocks a
transition BN -> ReLU -> 1x1 conv (half the channels) -> 2x2/2 average
pool; then BN -> ReLU -> global average pool -> Linear. Convolutions have
no bias; BatchNorm eps 1e-5. Dropout is not implemented.

Pretrained weights: timm's and torchvision's layout (the same names:
`features.denseblockK.denselayerJ.norm1`, ...; torchvision's oldest files
spell them `norm.1`, renamed as both libraries do), e.g. timm's
`densenet121.tv_in1k` or a torchvision `.pth` converted with
`python -m scenejax.convert`.

References:
  Huang et al., "Densely Connected Convolutional Networks", CVPR 2017.
  https://doi.org/10.1109/CVPR.2017.243
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scenejax.models import pretrained
from scenejax.models.classifier import Classifier
from scenejax.models.conv import Conv
from scenejax.models.vit import IMAGENET_MEAN, IMAGENET_STD

VARIANTS = {  # growth rate, stem width, layers per block
  "121": (32, 64, (6, 12, 24, 16)),
  "161": (48, 96, (6, 12, 36, 24)),
  "169": (32, 64, (6, 12, 32, 32)),
  "201": (32, 64, (6, 12, 48, 32)),
}
_BatchNorm = functools.partial(nnx.BatchNorm, momentum=0.9, epsilon=1e-5)
_conv_init = nnx.initializers.variance_scaling(2.0, "fan_in", "normal")


def _conv(in_features, out, kernel, *, stride=1, dtype, rngs):
  return Conv(
    in_features,
    out,
    (kernel, kernel),
    strides=stride,
    padding=(kernel - 1) // 2,
    use_bias=False,
    kernel_init=_conv_init,
    dtype=dtype,
    rngs=rngs,
  )


class DenseLayer(nnx.Module):
  """[x, conv3x3(relu(bn(conv1x1(relu(bn(x))))))], the new k channels
  concatenated to the input."""

  def __init__(self, in_features, growth, *, dtype, rngs):
    self.norm1 = _BatchNorm(in_features, dtype=dtype, rngs=rngs)
    self.conv1 = _conv(in_features, 4 * growth, 1, dtype=dtype, rngs=rngs)
    self.norm2 = _BatchNorm(4 * growth, dtype=dtype, rngs=rngs)
    self.conv2 = _conv(4 * growth, growth, 3, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    y = self.conv1(jax.nn.relu(self.norm1(x)))
    y = self.conv2(jax.nn.relu(self.norm2(y)))
    return jnp.concatenate([x, y], axis=-1)


class Transition(nnx.Module):
  """avg_pool2x2(conv1x1(relu(bn(x)))), halving the channels."""

  def __init__(self, in_features, out, *, dtype, rngs):
    self.norm = _BatchNorm(in_features, dtype=dtype, rngs=rngs)
    self.conv = _conv(in_features, out, 1, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    x = self.conv(jax.nn.relu(self.norm(x)))
    return nnx.avg_pool(x, (2, 2), strides=(2, 2))


class DenseNet(Classifier):
  """`forward_features(x)` gives (pooled relu(norm5(x)), [each dense
  block's output])."""

  def __init__(
    self,
    variant: str,
    num_classes: int,
    *,
    pixel_mean=IMAGENET_MEAN,
    pixel_std=IMAGENET_STD,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    growth, width, depths = VARIANTS[variant]
    self.depths = depths
    self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
    self.conv0 = _conv(3, width, 7, stride=2, dtype=dtype, rngs=rngs)
    self.norm0 = _BatchNorm(width, dtype=dtype, rngs=rngs)
    blocks, transitions, widths = [], [], []
    for i, depth in enumerate(depths):
      layers = []
      for _ in range(depth):
        layers.append(DenseLayer(width, growth, dtype=dtype, rngs=rngs))
        width += growth
      blocks.append(nnx.Sequential(*layers))
      widths.append(width)
      if i < len(depths) - 1:
        transitions.append(
          Transition(width, width // 2, dtype=dtype, rngs=rngs)
        )
        width //= 2
    self.blocks = nnx.List(blocks)
    self.transitions = nnx.List(transitions)
    self.norm5 = _BatchNorm(width, dtype=dtype, rngs=rngs)
    self.head = nnx.Linear(
      width,
      num_classes,
      bias_init=nnx.initializers.zeros,
      dtype=dtype,
      rngs=rngs,
    )
    self.num_features = width
    self.feature_widths = tuple(widths)
    self.default_cam_stage = len(depths) - 2  # 14x14 at 224 px

  def forward_features(self, x) -> tuple[jax.Array, list[jax.Array]]:
    x = jax.nn.relu(self.norm0(self.conv0(x)))
    x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    maps = []
    for i, block in enumerate(self.blocks):
      x = block(x)
      maps.append(x)
      if i < len(self.transitions):
        x = self.transitions[i](x)
    return jnp.mean(jax.nn.relu(self.norm5(x)), axis=(1, 2)), maps


def densenet121(num_classes, **kw) -> DenseNet:
  return DenseNet("121", num_classes, **kw)


def densenet161(num_classes, **kw) -> DenseNet:
  return DenseNet("161", num_classes, **kw)


def densenet169(num_classes, **kw) -> DenseNet:
  return DenseNet("169", num_classes, **kw)


def densenet201(num_classes, **kw) -> DenseNet:
  return DenseNet("201", num_classes, **kw)


checkpoint_options = pretrained.torch_layout_options


def from_torch(tensors) -> dict[str, np.ndarray]:
  """timm / torchvision DenseNet tensors -> our parameter paths."""
  old = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12])\."
    r"(weight|bias|running_mean|running_var|num_batches_tracked)$"
  )
  tensors = {old.sub(r"\1\2.\3", k): v for k, v in tensors.items()}
  renames = [
    (r"^features\.(conv0|norm0|norm5)$", r"\1"),
    (
      r"^features\.denseblock(\d+)\.denselayer(\d+)",
      lambda m: f"blocks.{int(m[1]) - 1}.layers.{int(m[2]) - 1}",
    ),
    (
      r"^features\.transition(\d+)",
      lambda m: f"transitions.{int(m[1]) - 1}",
    ),
    (r"^classifier$", "head"),
  ]
  return pretrained.torch_to_flax(
    tensors, renames, ignore=[r"num_batches_tracked$"]
  )


def load_checkpoint(model: DenseNet, path: str) -> None:
  tensors, source = pretrained.read_torch_layout(path, "DenseNet")
  pretrained.assign(model, from_torch(tensors), source=source)
