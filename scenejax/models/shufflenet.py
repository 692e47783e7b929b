"""ShuffleNetV2 (Ma et al. 2018), torchvision's architecture, Flax NNX,
NHWC.

Stem 3x3/2 conv (24) -> BN -> ReLU -> 3x3/2 max pool; three stages of
units (4, 8, 4) and a 1x1 conv (1024, or 2048 at width 2.0) -> BN ->
ReLU; global average pool; Linear. A stride-1 unit splits the channels
in two halves, keeps the first and passes the second through 1x1 ->
3x3 depthwise -> 1x1 (BN after each, ReLU after the 1x1s); a stride-2
unit (the first of a stage) runs two branches on the whole input (branch
1: 3x3/2 depthwise -> 1x1). The halves are concatenated and the channels
shuffled in two groups. No conv has a bias; BatchNorm eps 1e-5.

Pretrained weights: torchvision's only (no timm or transformers port),
as safetensors converted from the `.pth` with
`python -m scenejax.convert` (torch needed for that command only).

References:
  Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN
  Architecture Design", ECCV 2018.
  https://doi.org/10.1007/978-3-030-01264-9_8
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scenejax.models import pretrained
from scenejax.models.classifier import Classifier, ConvBN
from scenejax.models.vit import IMAGENET_MEAN, IMAGENET_STD

WIDTHS = {  # stem, stage 2..4, last conv (torchvision's stages_out_channels)
  "x0_5": (24, 48, 96, 192, 1024),
  "x1_0": (24, 116, 232, 464, 1024),
  "x1_5": (24, 176, 352, 704, 1024),
  "x2_0": (24, 244, 488, 976, 2048),
}
REPEATS = (4, 8, 4)


def channel_shuffle(x, groups: int = 2) -> jax.Array:
  """(B, H, W, g·n) -> channel c·g + i takes input channel i·n + c."""
  b, h, w, c = x.shape
  x = x.reshape(b, h, w, groups, c // groups)
  return jnp.swapaxes(x, 3, 4).reshape(b, h, w, c)


class Unit(nnx.Module):
  """shuffle([x₁, branch2(x₂)]) with x split in halves (stride 1), or
  shuffle([branch1(x), branch2(x)]) (stride 2, the stage's first unit)."""

  def __init__(self, in_features, out, stride, *, dtype, rngs):
    conv = functools.partial(ConvBN, dtype=dtype, rngs=rngs)
    half = out // 2
    self.stride = stride
    if stride > 1:
      self.branch1_dw = conv(
        in_features,
        in_features,
        3,
        stride=stride,
        groups=in_features,
        activation=None,
      )
      self.branch1_pw = conv(in_features, half, 1, activation=jax.nn.relu)
    self.branch2_pw1 = conv(
      in_features if stride > 1 else half, half, 1, activation=jax.nn.relu
    )
    self.branch2_dw = conv(
      half, half, 3, stride=stride, groups=half, activation=None
    )
    self.branch2_pw2 = conv(half, half, 1, activation=jax.nn.relu)

  def __call__(self, x):
    if self.stride == 1:
      keep, x = jnp.split(x, 2, axis=-1)
    else:
      keep = self.branch1_pw(self.branch1_dw(x))
    y = self.branch2_pw2(self.branch2_dw(self.branch2_pw1(x)))
    return channel_shuffle(jnp.concatenate([keep, y], axis=-1))


class ShuffleNetV2(Classifier):
  """`forward_features(x)` gives (pooled last-conv output, [output of each
  stage, then of the last conv])."""

  def __init__(
    self,
    width: str,
    num_classes: int,
    *,
    pixel_mean=IMAGENET_MEAN,
    pixel_std=IMAGENET_STD,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    widths = WIDTHS[width]
    self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
    self.conv1 = ConvBN(
      3, widths[0], 3, stride=2, activation=jax.nn.relu, dtype=dtype, rngs=rngs
    )
    stages, in_features = [], widths[0]
    for repeats, out in zip(REPEATS, widths[1:4]):
      units = [
        Unit(
          in_features if i == 0 else out,
          out,
          2 if i == 0 else 1,
          dtype=dtype,
          rngs=rngs,
        )
        for i in range(repeats)
      ]
      stages.append(nnx.Sequential(*units))
      in_features = out
    self.stages = nnx.List(stages)
    self.conv5 = ConvBN(
      in_features, widths[4], 1, activation=jax.nn.relu, dtype=dtype, rngs=rngs
    )
    self.head = nnx.Linear(widths[4], num_classes, dtype=dtype, rngs=rngs)
    self.num_features = widths[4]
    self.feature_widths = widths[1:]
    self.default_cam_stage = 1  # stage 3's output, 14x14 at 224 px

  def forward_features(self, x) -> tuple[jax.Array, list[jax.Array]]:
    x = self.conv1(x)
    x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    maps = []
    for stage in self.stages:
      x = stage(x)
      maps.append(x)
    x = self.conv5(x)
    maps.append(x)
    return jnp.mean(x, axis=(1, 2)), maps


def shufflenet_v2_x0_5(num_classes, **kw) -> ShuffleNetV2:
  return ShuffleNetV2("x0_5", num_classes, **kw)


def shufflenet_v2_x1_0(num_classes, **kw) -> ShuffleNetV2:
  return ShuffleNetV2("x1_0", num_classes, **kw)


def shufflenet_v2_x1_5(num_classes, **kw) -> ShuffleNetV2:
  return ShuffleNetV2("x1_5", num_classes, **kw)


def shufflenet_v2_x2_0(num_classes, **kw) -> ShuffleNetV2:
  return ShuffleNetV2("x2_0", num_classes, **kw)


checkpoint_options = pretrained.torch_layout_options


# torchvision Sequential indices -> our module names.
TORCHVISION_RENAMES = [
  (r"^conv1\.0$", "conv1.conv"),
  (r"^conv1\.1$", "conv1.bn"),
  (r"^conv5\.0$", "conv5.conv"),
  (r"^conv5\.1$", "conv5.bn"),
  (
    r"^stage([234])\.(\d+)\.",
    lambda m: f"stages.{int(m[1]) - 2}.layers.{m[2]}.",
  ),
  (r"\.branch1\.0$", ".branch1_dw.conv"),
  (r"\.branch1\.1$", ".branch1_dw.bn"),
  (r"\.branch1\.2$", ".branch1_pw.conv"),
  (r"\.branch1\.3$", ".branch1_pw.bn"),
  (r"\.branch2\.0$", ".branch2_pw1.conv"),
  (r"\.branch2\.1$", ".branch2_pw1.bn"),
  (r"\.branch2\.3$", ".branch2_dw.conv"),
  (r"\.branch2\.4$", ".branch2_dw.bn"),
  (r"\.branch2\.5$", ".branch2_pw2.conv"),
  (r"\.branch2\.6$", ".branch2_pw2.bn"),
  (r"^fc$", "head"),
]


def from_torchvision(tensors) -> dict[str, np.ndarray]:
  return pretrained.torch_to_flax(
    tensors, TORCHVISION_RENAMES, ignore=[r"num_batches_tracked$"]
  )


def load_checkpoint(model: ShuffleNetV2, path: str) -> None:
  tensors, source = pretrained.read_torch_layout(path, "ShuffleNetV2")
  pretrained.assign(model, from_torchvision(tensors), source=source)
