"""SAS-Net (López-Cifuentes et al. 2020), the semantic-aware two-branch
scene recogniser, Flax NNX, NHWC.

Built from the official PyTorch module (`SASceneNet.py`, MIT licence), in
its order:

  * RGB branch: an ImageNet ResNet-18/50 (`resnet.ResNet`, headless; its
    stem is SAS-Net's `in_block`, a conv of the ResNet's shape);
  * semantic branch on the (L+1) = 152-channel score tensor
    (`semantic_tensor`): a 7x7/2 conv (64), BN, ReLU, 3x3/2 max-pool, then
    three blocks of 3x3/2 conv, BN, channel attention, ReLU (128, 256,
    512 channels) - stride 32, as the RGB branch;
  * channel attention (ChAM; CBAM's, Woo et al. 2018, Eq. 2):
    M_c(F) = σ(W1 ReLU(W0 avgpool(F)) + W1 ReLU(W0 maxpool(F))), W0 a 1x1
    conv C -> C/16 and W1 C/16 -> C, no biases; the block multiplies its
    BN output by M_c before the ReLU;
  * attention module (SAS-Net §3.3, Fig. 3): two 3x3 ConvBNReLU without
    padding on each branch's last map (RGB: 2048 -> 1024 -> 1024 for
    ResNet-50, 512 -> 512 -> 1024 for ResNet-18; semantic: 512 -> 512 ->
    1024), then features = rgb * σ(semantic);
  * three heads, each after global average pooling and dropout 0.3: the
    combined one on the gated features (`logits`), the RGB-only one on the
    RGB branch's last map (`rgb_logits`), the semantic-only one on the
    semantic branch's last map (`semantic_logits`).

One difference: the official code pools with fixed 7x7 / 3x3 average
pools, which equal global means at its 224 px crops (7x7 and 3x3 maps) and
fail at other sizes; here the pools are global means, so the heads take any
input size with at least 5x5 maps at stride 32 (160 px).

`model(images, semantic_scores)` returns a dict with `logits`,
`rgb_logits`, `semantic_logits` and `features` (the gated map, the
official forward's second output); `model.rgb_logits(images)` runs the RGB
branch alone (RGB-only evaluation needs no semantic input).

Weights: a safetensors file in the official `SASceneNet` state-dict layout
(`python -m scenejax.convert` turns the model-zoo `.pth.tar` files into
one); an ImageNet Hugging Face ResNet checkpoint initialises the RGB
branch for training (`init_from`).

References:
  A. López-Cifuentes, M. Escudero-Viñolo, J. Bescós, Á. García-Martín.
  Semantic-aware scene recognition. Pattern Recognition 102, 107256, 2020.
  doi:10.1016/j.patcog.2020.107256.
  S. Woo, J. Park, J.-Y. Lee, I. S. Kweon. CBAM: Convolutional Block
  Attention Module. ECCV 2018. doi:10.1007/978-3-030-01234-2_1.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scenejax.errors import ConfigError
from scenejax.models import pretrained, resnet
from scenejax.models.conv import Conv
from scenejax.models.vit import IMAGENET_MEAN, IMAGENET_STD

# 150 ADE20K classes + SAS-Net's two always-empty channels: its loaders add
# 1 to the 0-based ids and `make_one_hot` scatters into C + 1 = 152.
SEMANTIC_CHANNELS = 152
LICENCE = "official SAS-Net model zoo: MIT (the code's licence)"

# PyTorch's BatchNorm2d defaults (momentum 0.1 on the new value = 0.9 here).
_BatchNorm = functools.partial(nnx.BatchNorm, momentum=0.9, epsilon=1e-5)
_Conv = functools.partial(Conv, use_bias=False)


def semantic_tensor(
  ids: jax.Array, scores: jax.Array, num_channels: int = SEMANTIC_CHANNELS
) -> jax.Array:
  """SAS-Net's semantic input from the top-k segmentation of each pixel.

  ids: (..., k) integer 0-based segmenter channels (ADE20K id - 1, as
  SAS-Net's top-3 PNGs store them); scores: (..., k) their probabilities.
  Returns (..., num_channels) float32 T with

    T[..., c] = scores[..., n]  for the last n with ids[..., n] + 1 = c,
    T[..., c] = 0               otherwise,

  the official `make_one_hot` (a scatter per n in order, the last
  overwriting). Ids -1..num_channels-2 fill channels 0..num_channels-1;
  others set nothing.
  """
  channel = jnp.arange(num_channels)
  out = jnp.zeros(ids.shape[:-1] + (num_channels,), jnp.float32)
  for n in range(ids.shape[-1]):
    hit = channel == ids[..., n : n + 1].astype(jnp.int32) + 1
    out = jnp.where(hit, scores[..., n : n + 1].astype(jnp.float32), out)
  return out


class ChannelAttention(nnx.Module):
  """ChAM: σ(W1 ReLU(W0 avg) + W1 ReLU(W0 max)) per channel (module doc)."""

  def __init__(self, features, *, dtype, rngs):
    self.fc1 = _Conv(features, features // 16, (1, 1), dtype=dtype, rngs=rngs)
    self.fc2 = _Conv(features // 16, features, (1, 1), dtype=dtype, rngs=rngs)

  def __call__(self, x):
    def mlp(v):
      return self.fc2(jax.nn.relu(self.fc1(v)))

    avg = jnp.mean(x, axis=(1, 2), keepdims=True)
    # The max by gathering at the argmax: its gradient goes to one pixel,
    # as PyTorch's AdaptiveMaxPool2d routes it. jnp.max's gradient (shared
    # among the pixels equal to the max) came out NaN in the second step of
    # a demo run compiled without XLA optimisations (the test suite's
    # mode); this form stays finite in both modes.
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    where = jnp.argmax(flat, axis=1, keepdims=True)
    peak = jnp.take_along_axis(flat, where, axis=1)[:, :, None, :]
    return jax.nn.sigmoid(mlp(avg) + mlp(peak))


class SemanticBlock(nnx.Module):
  """3x3/2 conv, BN, x * ChAM(x), ReLU (the official BasicBlockSem)."""

  def __init__(self, in_features, out_features, *, dtype, rngs):
    self.conv = _Conv(
      in_features,
      out_features,
      (3, 3),
      strides=2,
      padding=1,
      dtype=dtype,
      rngs=rngs,
    )
    self.bn = _BatchNorm(out_features, dtype=dtype, rngs=rngs)
    self.attention = ChannelAttention(out_features, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    x = self.bn(self.conv(x))
    return jax.nn.relu(self.attention(x) * x)


class ValidConvBNReLU(nnx.Module):
  """3x3 conv without padding, BN, ReLU (the attention module's layers)."""

  def __init__(self, in_features, out_features, *, dtype, rngs):
    self.conv = _Conv(
      in_features, out_features, (3, 3), padding="VALID", dtype=dtype,
      rngs=rngs,
    )  # fmt: skip
    self.bn = _BatchNorm(out_features, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    return jax.nn.relu(self.bn(self.conv(x)))


class SemanticBranch(nnx.Module):
  """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) and the three
  `SemanticBlock`s: the score tensor -> a stride-32 map of `widths[-1]`.
  `small_inputs` (sasnet_resnet_tiny): a 3x3/1 stem and no max-pool."""

  def __init__(self, in_features, stem, widths, *, small_inputs, dtype, rngs):
    self.small_inputs = small_inputs
    self.stem_conv = _Conv(
      in_features,
      stem,
      (3, 3) if small_inputs else (7, 7),
      strides=1 if small_inputs else 2,
      padding=1 if small_inputs else 3,
      dtype=dtype,
      rngs=rngs,
    )
    self.stem_bn = _BatchNorm(stem, dtype=dtype, rngs=rngs)
    self.blocks = nnx.List(
      [
        SemanticBlock(a, b, dtype=dtype, rngs=rngs)
        for a, b in zip((stem,) + tuple(widths[:-1]), widths)
      ]
    )

  def __call__(self, scores) -> jax.Array:
    y = jax.nn.relu(self.stem_bn(self.stem_conv(scores)))
    if not self.small_inputs:
      y = nnx.max_pool(y, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for block in self.blocks:
      y = block(y)
    return y


# Per RGB backbone: the semantic branch (stem width, block widths), the RGB
# attention layers' (input, middle) widths, the gated features' width.
_VARIANTS = {
  "resnet18": dict(semantic=(64, (128, 256, 512)), rgb=(512, 512), out=1024),
  "resnet50": dict(semantic=(64, (128, 256, 512)), rgb=(2048, 1024), out=1024),
  # The demo's scaled-down SAS-Net for the 32 px synthetic scenes: both
  # branches at stride 4 (8x8 maps, 4x4 after the attention layers).
  "resnet_tiny": dict(semantic=(16, (32, 64)), rgb=(64, 64), out=128),
}


class SASNet(nnx.Module):
  """SAS-Net; `model(images, semantic_scores)` -> dict of the three heads'
  logits and the gated features (module docstring)."""

  head_prefixes = ("head/", "rgb_head/", "semantic_head/")

  def __init__(
    self,
    depth: str,
    num_classes: int,
    *,
    semantic_channels: int = SEMANTIC_CHANNELS,
    dropout: float = 0.3,
    pixel_mean=IMAGENET_MEAN,
    pixel_std=IMAGENET_STD,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    if depth not in _VARIANTS:
      raise ValueError(f"SAS-Net depth {depth!r}: one of {sorted(_VARIANTS)}")
    spec = _VARIANTS[depth]
    self.depth, self.num_classes = depth, num_classes
    self.semantic_channels = semantic_channels
    self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
    self.rgb = getattr(resnet, depth)(0, dtype=dtype, rngs=rngs)
    stem, widths = spec["semantic"]
    self.semantic = SemanticBranch(
      semantic_channels,
      stem,
      widths,
      small_inputs=depth == "resnet_tiny",
      dtype=dtype,
      rngs=rngs,
    )
    rgb_in, rgb_mid = spec["rgb"]
    out = spec["out"]
    layer = functools.partial(ValidConvBNReLU, dtype=dtype, rngs=rngs)
    self.rgb_attention = nnx.List([layer(rgb_in, rgb_mid), layer(rgb_mid, out)])
    self.semantic_attention = nnx.List(
      [layer(widths[-1], widths[-1]), layer(widths[-1], out)]
    )
    self.dropout = nnx.Dropout(dropout, rngs=rngs)
    linear = functools.partial(nnx.Linear, dtype=dtype, rngs=rngs)
    self.rgb_head = linear(self.rgb.num_features, num_classes)
    self.semantic_head = linear(widths[-1], num_classes)
    self.head = linear(out, num_classes)

  def _rgb_map(self, images) -> jax.Array:
    return self.rgb.forward_features(images)[1][-1]

  def _pooled_logits(self, head, x) -> jax.Array:
    return head(self.dropout(jnp.mean(x, axis=(1, 2))))

  def rgb_logits(self, images) -> jax.Array:
    """The RGB branch alone (no semantic input)."""
    return self._pooled_logits(self.rgb_head, self._rgb_map(images))

  def semantic_logits(self, semantic_scores) -> jax.Array:
    """The semantic branch alone (no image)."""
    return self._pooled_logits(
      self.semantic_head, self.semantic(semantic_scores)
    )

  def __call__(
    self, images, semantic_scores, *, branch_gradients: bool = True
  ) -> dict[str, jax.Array]:
    """images (B, H, W, 3) normalised; semantic_scores (B, H, W, 152) from
    `semantic_tensor`. `branch_gradients=False` stops the gradient at the
    two branches' maps (a stage that trains only the attention module)."""
    rgb = self._rgb_map(images)
    semantic = self.semantic(semantic_scores)
    if not branch_gradients:
      rgb, semantic = jax.lax.stop_gradient((rgb, semantic))
    if min(rgb.shape[1:3]) < 5:  # two unpadded 3x3 layers, then a pool
      raise ConfigError(
        f"SAS-Net input {images.shape[1]}x{images.shape[2]} gives "
        f"{rgb.shape[1]}x{rgb.shape[2]} maps; its attention module needs at "
        "least 5x5 (ResNet-18/50: 160 px, config.data.image_size)"
      )
    e, y = rgb, semantic
    for layer in self.rgb_attention:
      e = layer(e)
    for layer in self.semantic_attention:
      y = layer(y)
    features = e * jax.nn.sigmoid(y)  # SAS-Net §3.3: RGB gated by semantics
    return {
      "logits": self._pooled_logits(self.head, features),
      "rgb_logits": self._pooled_logits(self.rgb_head, rgb),
      "semantic_logits": self._pooled_logits(self.semantic_head, semantic),
      "features": features,
    }


def sasnet_resnet18(num_classes, **kw) -> SASNet:
  return SASNet("resnet18", num_classes, **kw)


def sasnet_resnet50(num_classes, **kw) -> SASNet:
  return SASNet("resnet50", num_classes, **kw)


def sasnet_resnet_tiny(num_classes, **kw) -> SASNet:
  return SASNet("resnet_tiny", num_classes, **kw)


def from_official(tensors) -> dict[str, np.ndarray]:
  """Official `SASceneNet` state-dict names -> our parameter paths
  (a "module." prefix, as nn.DataParallel saves, is dropped)."""
  tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
  renames = [
    (r"^in_block\.0$", "rgb.stem_conv"),
    (r"^in_block\.1$", "rgb.stem_bn"),
    (
      r"^encoder(\d)\.(\d+)\.",
      lambda m: f"rgb.stages.{int(m[1]) - 1}.layers.{m[2]}.",
    ),
    (r"\.downsample\.(\d)$", r".downsample.layers.\1"),
    (r"^in_block_sem\.0$", "semantic.stem_conv"),
    (r"^in_block_sem\.1$", "semantic.stem_bn"),
    (
      r"^in_block_sem_(\d)\.ca\.",
      lambda m: f"semantic.blocks.{int(m[1]) - 1}.attention.",
    ),
    (r"^in_block_sem_(\d)\.", lambda m: f"semantic.blocks.{int(m[1]) - 1}."),
    (r"^lastConvRGB(\d)\.0$", lambda m: f"rgb_attention.{int(m[1]) - 1}.conv"),
    (r"^lastConvRGB(\d)\.1$", lambda m: f"rgb_attention.{int(m[1]) - 1}.bn"),
    (
      r"^lastConvSEM(\d)\.0$",
      lambda m: f"semantic_attention.{int(m[1]) - 1}.conv",
    ),
    (
      r"^lastConvSEM(\d)\.1$",
      lambda m: f"semantic_attention.{int(m[1]) - 1}.bn",
    ),
    (r"^fc_RGB$", "rgb_head"),
    (r"^fc_SEM$", "semantic_head"),
    (r"^fc$", "head"),
  ]
  return pretrained.torch_to_flax(
    tensors, renames, ignore=[r"num_batches_tracked$"]
  )


def checkpoint_options(path: str) -> dict:
  return {}


def load_checkpoint(model: SASNet, path: str) -> None:
  """A safetensors file in the official layout, or a Hugging Face ImageNet
  ResNet checkpoint for the RGB branch. (A training workdir of the previous
  stage is loaded by `scenejax.tasks.semantic_aware.build_model`.)"""
  if os.path.isdir(path):
    resnet.load_checkpoint(model.rgb, path)
    return
  if path.endswith((".pth", ".tar", ".pt", ".bin")):
    raise pretrained.CheckpointError(
      f"{path}: a PyTorch file (a pickle, never read here); convert it "
      "once: python -m scenejax.convert --from=... --to=X.safetensors"
    )
  tensors = pretrained.read_safetensors(path)
  if not any("in_block_sem" in k for k in tensors):
    raise pretrained.CheckpointError(
      f"{path}: not a SAS-Net state dict (no in_block_sem.* keys); "
      "sasnet_* loads the official SASceneNet layout (python -m "
      "scenejax.convert turns its .pth.tar into safetensors) or a Hugging "
      "Face ResNet directory for the RGB branch"
    )
  pretrained.assign(model, from_official(tensors), source=path)
