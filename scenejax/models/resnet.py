"""ResNet v1.5 (He et al. 2016; stride on the 3x3 conv), Flax NNX, NHWC.

`resnet18/34/50/101` are the ImageNet architectures; `resnet_tiny` is a
three-stage, 16/32/64-wide basic-block net with a 3x3 stem and no max-pool,
for the 32 px synthetic scenes of the demo.

`output_stride=16` (or 8) trades the stride of the last stage(s) for
dilation, as torchvision's `replace_stride_with_dilation` and DeepLab do:
the stage keeps its resolution and its 3x3 convolutions dilate by 2 (the
first block of the stage keeps the previous dilation). Same parameters,
so ImageNet weights load. `num_classes=0` builds no head (a backbone).

Pretrained weights: Hugging Face ResNet safetensors (e.g.
microsoft/resnet-50, microsoft/resnet-18).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scenejax.models import pretrained
from scenejax.models.classifier import Classifier
from scenejax.models.conv import Conv
from scenejax.models.vit import IMAGENET_MEAN, IMAGENET_STD

# PyTorch's BatchNorm defaults (momentum 0.1 on the new value = 0.9 here).
_BatchNorm = functools.partial(nnx.BatchNorm, momentum=0.9, epsilon=1e-5)
_Conv = functools.partial(
  Conv,
  use_bias=False,
  kernel_init=nnx.initializers.variance_scaling(2.0, "fan_out", "normal"),
)


def _projection(in_features, out, stride, rngs, dtype):
  """1x1 conv + BN on the shortcut where the shape changes, else None."""
  if stride == 1 and in_features == out:
    return None
  return nnx.Sequential(
    _Conv(in_features, out, (1, 1), strides=stride, dtype=dtype, rngs=rngs),
    _BatchNorm(out, dtype=dtype, rngs=rngs),
  )


class BasicBlock(nnx.Module):
  expansion = 1

  def __init__(self, in_features, width, stride, *, dilation=1, dtype, rngs):
    out = width * self.expansion
    self.conv1 = _Conv(
      in_features,
      width,
      (3, 3),
      strides=stride,
      padding=dilation,
      kernel_dilation=dilation,
      dtype=dtype,
      rngs=rngs,
    )
    self.bn1 = _BatchNorm(width, dtype=dtype, rngs=rngs)
    self.conv2 = _Conv(
      width,
      out,
      (3, 3),
      padding=dilation,
      kernel_dilation=dilation,
      dtype=dtype,
      rngs=rngs,
    )
    self.bn2 = _BatchNorm(out, dtype=dtype, rngs=rngs)
    self.downsample = nnx.data(
      _projection(in_features, out, stride, rngs, dtype)
    )

  def __call__(self, x):
    y = jax.nn.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    shortcut = x if self.downsample is None else self.downsample(x)
    return jax.nn.relu(y + shortcut)


class Bottleneck(nnx.Module):
  expansion = 4

  def __init__(self, in_features, width, stride, *, dilation=1, dtype, rngs):
    out = width * self.expansion
    self.conv1 = _Conv(in_features, width, (1, 1), dtype=dtype, rngs=rngs)
    self.bn1 = _BatchNorm(width, dtype=dtype, rngs=rngs)
    self.conv2 = _Conv(
      width,
      width,
      (3, 3),
      strides=stride,
      padding=dilation,
      kernel_dilation=dilation,
      dtype=dtype,
      rngs=rngs,
    )
    self.bn2 = _BatchNorm(width, dtype=dtype, rngs=rngs)
    self.conv3 = _Conv(width, out, (1, 1), dtype=dtype, rngs=rngs)
    self.bn3 = _BatchNorm(out, dtype=dtype, rngs=rngs)
    self.downsample = nnx.data(
      _projection(in_features, out, stride, rngs, dtype)
    )

  def __call__(self, x):
    y = jax.nn.relu(self.bn1(self.conv1(x)))
    y = jax.nn.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    shortcut = x if self.downsample is None else self.downsample(x)
    return jax.nn.relu(y + shortcut)


class ResNet(Classifier):
  """ResNet classifier. `forward_features(x)` gives (pooled embedding,
  [output of each stage]); `__call__(x)` the logits."""

  def __init__(
    self,
    stage_sizes,
    block,
    num_classes,
    *,
    widths=(64, 128, 256, 512),
    small_inputs=False,
    output_stride: int = 32,
    pixel_mean=IMAGENET_MEAN,
    pixel_std=IMAGENET_STD,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    stem = widths[0]
    self.small_inputs = small_inputs
    self.stage_sizes, self.widths = tuple(stage_sizes), tuple(widths)
    self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
    if small_inputs:
      self.stem_conv = _Conv(3, stem, (3, 3), padding=1, dtype=dtype, rngs=rngs)
    else:
      self.stem_conv = _Conv(
        3, stem, (7, 7), strides=2, padding=3, dtype=dtype, rngs=rngs
      )
    self.stem_bn = _BatchNorm(stem, dtype=dtype, rngs=rngs)
    stages = []
    in_features = stem
    reduction, dilation = (1 if small_inputs else 4), 1
    self.stage_strides = []
    for i, (size, width) in enumerate(zip(stage_sizes, widths)):
      blocks = []
      stride, previous = (2 if i > 0 else 1), dilation
      if stride == 2 and reduction * 2 > output_stride:
        stride, dilation = 1, dilation * 2  # dilate instead
      reduction *= stride
      self.stage_strides.append(reduction)
      for j in range(size):
        blocks.append(
          block(
            in_features,
            width,
            stride if j == 0 else 1,
            dilation=previous if j == 0 else dilation,
            dtype=dtype,
            rngs=rngs,
          )
        )
        in_features = width * block.expansion
      stages.append(nnx.Sequential(*blocks))
    self.stages = nnx.List(stages)
    self.stage_strides = tuple(self.stage_strides)
    self.num_features = in_features
    self.feature_widths = tuple(w * block.expansion for w in widths)
    # The input of the last down-sampling stage: stage 3 (14x14 at 224 px).
    self.default_cam_stage = len(stage_sizes) - 2
    self.head = nnx.data(
      nnx.Linear(in_features, num_classes, dtype=dtype, rngs=rngs)
      if num_classes
      else None
    )

  def forward_features(self, x) -> tuple[jax.Array, list[jax.Array]]:
    x = jax.nn.relu(self.stem_bn(self.stem_conv(x)))
    if not self.small_inputs:
      x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    maps = []
    for stage in self.stages:
      x = stage(x)
      maps.append(x)
    return jnp.mean(x, axis=(1, 2)), maps


def resnet18(num_classes, **kw) -> ResNet:
  return ResNet((2, 2, 2, 2), BasicBlock, num_classes, **kw)


def resnet34(num_classes, **kw) -> ResNet:
  return ResNet((3, 4, 6, 3), BasicBlock, num_classes, **kw)


def resnet50(num_classes, **kw) -> ResNet:
  return ResNet((3, 4, 6, 3), Bottleneck, num_classes, **kw)


def resnet101(num_classes, **kw) -> ResNet:
  return ResNet((3, 4, 23, 3), Bottleneck, num_classes, **kw)


def resnet_tiny(num_classes, **kw) -> ResNet:
  return ResNet(
    (1, 1, 1),
    BasicBlock,
    num_classes,
    widths=(16, 32, 64),
    small_inputs=True,
    **kw,
  )


def checkpoint_options(path: str) -> dict:
  """Pixel statistics of a Hugging Face checkpoint (ImageNet by default)."""
  if not pretrained.is_hf(path):
    raise pretrained.CheckpointError(
      f"{path}: ResNet loads Hugging Face checkpoints (a directory with "
      "config.json and model.safetensors)"
    )
  pretrained.read_hf_config(path)
  mean, std = pretrained.hf_pixel_stats(path, (IMAGENET_MEAN, IMAGENET_STD))
  return dict(pixel_mean=mean, pixel_std=std)


def from_hf(tensors) -> dict[str, np.ndarray]:
  """Hugging Face ResNet tensors -> our parameter paths.

  HF numbers the convs of a block layer.0/1/2; ours are conv1..3/bn1..3.
  """
  tensors = {k.removeprefix("resnet."): v for k, v in tensors.items()}
  renames = [
    (r"^embedder\.embedder\.convolution$", "stem_conv"),
    (r"^embedder\.embedder\.normalization$", "stem_bn"),
    (r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.", r"stages.\1.layers.\2."),
    (r"\.shortcut\.convolution$", ".downsample.layers.0"),
    (r"\.shortcut\.normalization$", ".downsample.layers.1"),
    (r"^classifier\.1$", "head"),
  ]
  for k in range(3):
    renames += [
      (rf"\.layer\.{k}\.convolution$", f".conv{k + 1}"),
      (rf"\.layer\.{k}\.normalization$", f".bn{k + 1}"),
    ]
  return pretrained.torch_to_flax(
    tensors, renames, ignore=[r"num_batches_tracked$"]
  )


def load_checkpoint(model: ResNet, path: str) -> None:
  config, tensors, source = pretrained.read_hf(path)
  bottleneck = isinstance(model.stages[0].layers[0], Bottleneck)
  expansion = 4 if bottleneck else 1
  pretrained.check_hf_config(
    config,
    source,
    "resnet",
    {
      "layer_type": "bottleneck" if bottleneck else "basic",
      "depths": list(model.stage_sizes),
      "hidden_sizes": [w * expansion for w in model.widths],
      "embedding_size": model.widths[0],
      "hidden_act": "relu",
      # Stride on the 3x3 conv (v1.5), as our Bottleneck does.
      "downsample_in_bottleneck": False,
    },
  )
  pretrained.assign(model, from_hf(tensors), source=source)
