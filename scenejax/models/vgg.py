"""VGG-16 (Simonyan & Zisserman 2015), with or without BatchNorm, Flax NNX,
NHWC.

Thirteen 3x3 convolutions (bias, ReLU; BatchNorm before the ReLU in
`vgg16_bn`) in five blocks, each closed by a 2x2/2 max pool; then timm's
convolutional form of the classifier: fc6 as a 7x7 convolution without
padding (4096), fc7 as a 1x1 convolution (4096), each with ReLU, an
average over the remaining positions, and the Linear head. At 224 px the
pool leaves exactly 7x7, fc6 sees one position, and this is torchvision's
flatten -> Linear(25088, 4096) network; a map smaller than 7x7 is first
average-pooled up to 7x7 (PyTorch's adaptive bins), as both libraries do.
On a map larger than 7x7 (inputs above 224 px) fc6 slides and the head
averages, as timm does, where torchvision would pool the map down to 7x7
first: the same weights then give other logits than torchvision's.
Dropout is not implemented.

Pretrained weights: timm's layout (`vgg16.tv_in1k`, `vgg16_bn.tv_in1k`:
`features.N`, `pre_logits.fc1/fc2`, `head.fc`) and torchvision's
(`classifier.0/3/6`, e.g. converted with `python -m scenejax.convert`).

References:
  Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale
  Image Recognition", ICLR 2015. arXiv:1409.1556
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
from scenejax.models.segmenter import adaptive_avg_pool
from scenejax.models.vit import IMAGENET_MEAN, IMAGENET_STD

VGG16 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512,) * 3)
_BatchNorm = functools.partial(nnx.BatchNorm, momentum=0.9, epsilon=1e-5)


class ConvReLU(nnx.Module):
  def __init__(self, in_features, out, *, batch_norm, dtype, rngs):
    self.conv = Conv(
      in_features,
      out,
      (3, 3),
      padding=1,
      kernel_init=nnx.initializers.variance_scaling(2.0, "fan_out", "normal"),
      dtype=dtype,
      rngs=rngs,
    )
    self.bn = nnx.data(
      _BatchNorm(out, dtype=dtype, rngs=rngs) if batch_norm else None
    )

  def __call__(self, x):
    x = self.conv(x)
    return jax.nn.relu(x if self.bn is None else self.bn(x))


class VGG(Classifier):
  """`forward_features(x)` gives (the fc7 output (4096-d), averaged over
  positions; [each block's last conv output, before its pool])."""

  def __init__(
    self,
    num_classes: int,
    *,
    batch_norm=False,
    config=VGG16,
    fc_width=4096,
    pixel_mean=IMAGENET_MEAN,
    pixel_std=IMAGENET_STD,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
    self.config, self.batch_norm = config, batch_norm
    self.fc_width = fc_width
    convs, in_features = [], 3
    for block in config:
      for width in block:
        convs.append(
          ConvReLU(
            in_features, width, batch_norm=batch_norm, dtype=dtype, rngs=rngs
          )
        )
        in_features = width
    self.convs = nnx.List(convs)
    dense_init = nnx.initializers.normal(0.01)
    self.fc1 = Conv(
      in_features,
      fc_width,
      (7, 7),
      padding="VALID",
      kernel_init=dense_init,
      dtype=dtype,
      rngs=rngs,
    )
    self.fc2 = Conv(
      fc_width, fc_width, (1, 1), kernel_init=dense_init, dtype=dtype, rngs=rngs
    )
    self.head = nnx.Linear(
      fc_width, num_classes, kernel_init=dense_init, dtype=dtype, rngs=rngs
    )
    self.num_features = fc_width
    self.feature_widths = tuple(block[-1] for block in config)
    self.default_cam_stage = len(config) - 1  # 14x14 at 224 px

  def forward_features(self, x) -> tuple[jax.Array, list[jax.Array]]:
    maps, convs = [], iter(self.convs)
    for block in self.config:
      for _ in block:
        x = next(convs)(x)
      maps.append(x)
      x = nnx.max_pool(x, (2, 2), strides=(2, 2))
    if x.shape[1] < 7 or x.shape[2] < 7:
      x = adaptive_avg_pool(x, (max(7, x.shape[1]), max(7, x.shape[2])))
    x = jax.nn.relu(self.fc2(jax.nn.relu(self.fc1(x))))
    return jnp.mean(x, axis=(1, 2)), maps


def vgg16(num_classes, **kw) -> VGG:
  return VGG(num_classes, **kw)


def vgg16_bn(num_classes, **kw) -> VGG:
  return VGG(num_classes, batch_norm=True, **kw)


checkpoint_options = pretrained.torch_layout_options


def from_torch(tensors, model: VGG) -> dict[str, np.ndarray]:
  """timm (`features.N`, `pre_logits.fc1/fc2`, `head.fc`) or torchvision
  (`classifier.0/3/6`) VGG tensors -> our parameter paths.

  torchvision's fc6 weight (4096, 25088) flattens (C, 7, 7): reshaped to
  a 7x7 convolution as timm's checkpoint filter does."""
  tensors = dict(tensors)
  for old, new, shape in (
    ("classifier.0", "pre_logits.fc1", (-1, model.config[-1][-1], 7, 7)),
    ("classifier.3", "pre_logits.fc2", (-1, model.fc_width, 1, 1)),
    ("classifier.6", "head.fc", None),
  ):
    for leaf in ("weight", "bias"):
      if f"{old}.{leaf}" in tensors:
        value = tensors.pop(f"{old}.{leaf}")
        if leaf == "weight" and shape and value.ndim == 2:
          value = value.reshape(shape)
        tensors[f"{new}.{leaf}"] = value
  # torchvision's Sequential index of each conv (and of its BatchNorm):
  # conv [BN] ReLU per conv, one MaxPool per block.
  renames, index, conv = [], 0, 0
  for block in model.config:
    for _ in block:
      renames.append((rf"^features\.{index}$", f"convs.{conv}.conv"))
      if model.batch_norm:
        renames.append((rf"^features\.{index + 1}$", f"convs.{conv}.bn"))
      index += 3 if model.batch_norm else 2
      conv += 1
    index += 1
  renames += [
    (r"^pre_logits\.fc([12])$", r"fc\1"),
    (r"^head\.fc$", "head"),
  ]
  return pretrained.torch_to_flax(
    tensors, renames, ignore=[r"num_batches_tracked$"]
  )


def load_checkpoint(model: VGG, path: str) -> None:
  tensors, source = pretrained.read_torch_layout(path, "VGG")
  pretrained.assign(model, from_torch(tensors, model), source=source)
