"""ResNet v1.5 (He et al. 2016; stride on the 3x3 conv), Flax NNX, NHWC.

`resnet18/34/50` are the ImageNet architectures; `resnet_tiny` is a
three-stage, 16/32/64-wide basic-block net with a 3x3 stem and no max-pool,
for the 32 px synthetic scenes of the demo.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

# PyTorch's BatchNorm defaults (momentum 0.1 on the new value = 0.9 here).
_BatchNorm = functools.partial(nnx.BatchNorm, momentum=0.9, epsilon=1e-5)
_Conv = functools.partial(nnx.Conv, use_bias=False,
                          kernel_init=nnx.initializers.variance_scaling(
                              2.0, "fan_out", "normal"))


def _projection(in_features, out, stride, rngs):
  """1x1 conv + BN on the shortcut where the shape changes, else None."""
  if stride == 1 and in_features == out:
    return None
  return nnx.Sequential(
      _Conv(in_features, out, (1, 1), strides=stride, rngs=rngs),
      _BatchNorm(out, rngs=rngs))


class BasicBlock(nnx.Module):
  expansion = 1

  def __init__(self, in_features, width, stride, *, rngs):
    out = width * self.expansion
    self.conv1 = _Conv(in_features, width, (3, 3), strides=stride,
                       padding=1, rngs=rngs)
    self.bn1 = _BatchNorm(width, rngs=rngs)
    self.conv2 = _Conv(width, out, (3, 3), padding=1, rngs=rngs)
    self.bn2 = _BatchNorm(out, rngs=rngs)
    self.downsample = nnx.data(_projection(in_features, out, stride, rngs))

  def __call__(self, x):
    y = jax.nn.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    shortcut = x if self.downsample is None else self.downsample(x)
    return jax.nn.relu(y + shortcut)


class Bottleneck(nnx.Module):
  expansion = 4

  def __init__(self, in_features, width, stride, *, rngs):
    out = width * self.expansion
    self.conv1 = _Conv(in_features, width, (1, 1), rngs=rngs)
    self.bn1 = _BatchNorm(width, rngs=rngs)
    self.conv2 = _Conv(width, width, (3, 3), strides=stride, padding=1,
                       rngs=rngs)
    self.bn2 = _BatchNorm(width, rngs=rngs)
    self.conv3 = _Conv(width, out, (1, 1), rngs=rngs)
    self.bn3 = _BatchNorm(out, rngs=rngs)
    self.downsample = nnx.data(_projection(in_features, out, stride, rngs))

  def __call__(self, x):
    y = jax.nn.relu(self.bn1(self.conv1(x)))
    y = jax.nn.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    shortcut = x if self.downsample is None else self.downsample(x)
    return jax.nn.relu(y + shortcut)


class ResNet(nnx.Module):
  """ResNet classifier. `embed(x)` is the pooled penultimate embedding,
  `features(x)` the per-stage feature maps, `__call__(x)` the logits."""

  def __init__(self, stage_sizes, block, num_classes, *, widths=(64, 128, 256,
                                                                512),
               small_inputs=False, rngs: nnx.Rngs):
    stem = widths[0]
    self.small_inputs = small_inputs
    if small_inputs:
      self.stem_conv = _Conv(3, stem, (3, 3), padding=1, rngs=rngs)
    else:
      self.stem_conv = _Conv(3, stem, (7, 7), strides=2, padding=3, rngs=rngs)
    self.stem_bn = _BatchNorm(stem, rngs=rngs)
    stages = []
    in_features = stem
    for i, (size, width) in enumerate(zip(stage_sizes, widths)):
      blocks = []
      for j in range(size):
        stride = 2 if i > 0 and j == 0 else 1
        blocks.append(block(in_features, width, stride, rngs=rngs))
        in_features = width * block.expansion
      stages.append(nnx.Sequential(*blocks))
    self.stages = nnx.List(stages)
    self.num_features = in_features
    self.head = nnx.Linear(in_features, num_classes, rngs=rngs)

  def features(self, x):
    x = jax.nn.relu(self.stem_bn(self.stem_conv(x)))
    if not self.small_inputs:
      x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    maps = []
    for stage in self.stages:
      x = stage(x)
      maps.append(x)
    return maps

  def embed(self, x):
    return jnp.mean(self.features(x)[-1], axis=(1, 2))

  def __call__(self, x):
    return self.head(self.embed(x))


def resnet18(num_classes, *, rngs):
  return ResNet((2, 2, 2, 2), BasicBlock, num_classes, rngs=rngs)


def resnet34(num_classes, *, rngs):
  return ResNet((3, 4, 6, 3), BasicBlock, num_classes, rngs=rngs)


def resnet50(num_classes, *, rngs):
  return ResNet((3, 4, 6, 3), Bottleneck, num_classes, rngs=rngs)


def resnet_tiny(num_classes, *, rngs):
  return ResNet((1, 1, 1), BasicBlock, num_classes, widths=(16, 32, 64),
                small_inputs=True, rngs=rngs)
