"""MobileNetV3-Large (Howard et al. 2019), Flax NNX, NHWC.

The architecture of torchvision's `mobilenet_v3_large` (width 1.0): the
edge-device backbone [SP] (arXiv:2308.05896) argues the similarity prior suits, since the
prior adds nothing at deployment. Inverted residual blocks with optional
squeeze-excitation (ReLU, then hard-sigmoid gate), hard-swish in the later
half, BatchNorm eps 1e-3 / momentum 0.01 (PyTorch's convention), head
960 -> 1280 (hard-swish) -> classes. The classifier's dropout is not
implemented.

Pretrained weights: torchvision's (`features.N.block.K`, `classifier.0/3`)
as safetensors converted from the `.pth` with `python -m scenejax.convert`,
and timm's `mobilenetv3_large_100` layout (`conv_stem`, `blocks.S.J`,
`conv_head`), the same network except BatchNorm eps 1e-5 (set from the
file) and the 960 -> 1280 layer written as a 1x1 conv after the pool.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scenejax.models import pretrained
from scenejax.models.classifier import Classifier, ConvBN
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


# PyTorch's momentum 0.01 on the new value; torchvision's eps 1e-3.
ConvBN = functools.partial(
  ConvBN,
  momentum=0.99,
  kernel_init=nnx.initializers.variance_scaling(2.0, "fan_out", "normal"),
)


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
    epsilon,
    dtype,
    rngs,
  ):
    act = jax.nn.hard_swish if hard_swish else jax.nn.relu
    conv = functools.partial(ConvBN, epsilon=epsilon, dtype=dtype, rngs=rngs)
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
    epsilon=1e-3,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
    self.config = config
    self.stem = ConvBN(
      3,
      16,
      3,
      stride=2,
      activation=jax.nn.hard_swish,
      epsilon=epsilon,
      dtype=dtype,
      rngs=rngs,
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
          epsilon=epsilon,
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
      epsilon=epsilon,
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


def _is_timm(keys) -> bool:
  return "conv_stem.weight" in keys


def checkpoint_options(path: str) -> dict:
  """timm's layout trained with BatchNorm eps 1e-5; torchvision's 1e-3."""
  from safetensors import SafetensorError, safe_open

  pretrained.refuse_pickle(path)
  try:
    with safe_open(pretrained.weights_file(path), "np") as f:
      keys = set(f.keys())
  except (SafetensorError, OSError):
    return {}  # load_checkpoint names the problem
  return {"epsilon": 1e-5} if _is_timm(keys) else {}


def _block_parts(config) -> list[list[str]]:
  """Our sub-module names of each inverted residual, in torchvision's
  order inside `block`: [expand], depthwise, [se], project."""
  parts, in_features = [], 16
  for _, expanded, out, use_se, _, _ in config:
    names = ["expand"] if expanded != in_features else []
    names += ["depthwise"] + (["se"] if use_se else []) + ["project"]
    parts.append(names)
    in_features = out
  return parts


def from_torchvision(tensors, model) -> dict[str, np.ndarray]:
  renames = [
    (r"^features\.0\.0$", "stem.conv"),
    (r"^features\.0\.1$", "stem.bn"),
    (rf"^features\.{len(model.config) + 1}\.0$", "last_conv.conv"),
    (rf"^features\.{len(model.config) + 1}\.1$", "last_conv.bn"),
    (r"^classifier\.0$", "pre_logits"),
    (r"^classifier\.3$", "head"),
  ]
  for i, names in enumerate(_block_parts(model.config)):
    for k, name in enumerate(names):
      prefix = rf"^features\.{i + 1}\.block\.{k}"
      if name == "se":
        renames.append((prefix + r"\.(fc[12])$", rf"blocks.{i}.se.\1"))
      else:
        renames.append((prefix + r"\.0$", f"blocks.{i}.{name}.conv"))
        renames.append((prefix + r"\.1$", f"blocks.{i}.{name}.bn"))
  return _squeeze_1x1(
    pretrained.torch_to_flax(tensors, renames, ignore=[r"num_batches_tracked$"])
  )


def from_timm(tensors, model, source) -> dict[str, np.ndarray]:
  """timm groups the blocks in stages (`blocks.S.J`) of the sizes below;
  `blocks.6.0` is the last 1x1 conv."""
  stage_sizes = (1, 2, 3, 4, 2, 3)
  flat = [(s, j) for s, n in enumerate(stage_sizes) for j in range(n)]
  if len(flat) != len(model.config):
    raise pretrained.CheckpointError(
      f"{source}: timm's layout maps onto MobileNetV3-Large's 15 blocks, "
      f"not this model's {len(model.config)}"
    )
  renames = [
    (r"^conv_stem$", "stem.conv"),
    (r"^bn1$", "stem.bn"),
    (r"^blocks\.6\.0\.conv$", "last_conv.conv"),
    (r"^blocks\.6\.0\.bn1$", "last_conv.bn"),
    (r"^conv_head$", "pre_logits"),
    (r"^classifier$", "head"),
  ]
  for i, ((s, j), names) in enumerate(zip(flat, _block_parts(model.config))):
    prefix = rf"^blocks\.{s}\.{j}\."
    if "expand" in names:  # timm's InvertedResidual
      pairs = [
        ("conv_pw", "expand.conv"),
        ("bn1", "expand.bn"),
        ("conv_dw", "depthwise.conv"),
        ("bn2", "depthwise.bn"),
        ("conv_pwl", "project.conv"),
        ("bn3", "project.bn"),
      ]
    else:  # timm's DepthwiseSeparableConv
      pairs = [
        ("conv_dw", "depthwise.conv"),
        ("bn1", "depthwise.bn"),
        ("conv_pw", "project.conv"),
        ("bn2", "project.bn"),
      ]
    pairs += [("se.conv_reduce", "se.fc1"), ("se.conv_expand", "se.fc2")]
    renames += [
      (prefix + theirs.replace(".", r"\.") + "$", f"blocks.{i}.{ours}")
      for theirs, ours in pairs
    ]
  return _squeeze_1x1(
    pretrained.torch_to_flax(tensors, renames, ignore=[r"num_batches_tracked$"])
  )


def _squeeze_1x1(params):
  """1x1 convolutions of the files that are Linear layers here (squeeze-
  excite, timm's conv_head): (1, 1, in, out) kernels -> (in, out)."""
  return {
    k: v[0, 0]
    if v.ndim == 4 and re.search(r"(/se/fc[12]|^pre_logits)/kernel$", k)
    else v
    for k, v in params.items()
  }


def load_checkpoint(model: MobileNetV3, path: str) -> None:
  tensors, source = pretrained.read_torch_layout(path, "MobileNetV3")
  if _is_timm(tensors):
    params = from_timm(tensors, model, source)
  else:
    params = from_torchvision(tensors, model)
  pretrained.assign(model, params, source=source)
