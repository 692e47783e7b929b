"""Swin Transformer (Liu et al. 2021), Flax NNX, NHWC.

Patch embedding (4x4/4 conv + LN); four stages, each but the first
opening with patch merging (the four 2x2 sub-grids concatenated, LN,
Linear 4C -> 2C without bias); blocks of window attention in
non-overlapping w x w windows with a learned relative position bias,
every second block on windows cyclically shifted by w // 2 with the
wrap-around pairs masked (-100 before the softmax, as the reference
code); then an MLP (4C, exact GELU). Head: final LN, mean over tokens,
Linear. LayerNorm epsilon 1e-5 (a transformers config may set the blocks'
and the final norm's; the patch and merging norms keep 1e-5, as there).
Stochastic depth is not implemented.

Sizes that are not multiples of the window are padded at the bottom and
right after the norm (zeros, unmasked), as the reference code does; a
stage whose map is no larger than the window uses one window of the
map's size and no shift. For such a smaller window w' the bias is read
from the table at the same relative offsets (the reference
implementations assume w' = w; at 224 px they coincide).

Pretrained weights: Hugging Face `SwinForImageClassification`
safetensors (e.g. microsoft/swin-base-patch4-window7-224-in22k) and
timm's layout (`swin_base_patch4_window7_224.ms_in22k`, fused qkv,
merging at the start of a stage).

References:
  [Swin] Liu et al., "Swin Transformer: Hierarchical Vision Transformer using
  Shifted Windows", ICCV 2021. https://doi.org/10.1109/ICCV48922.2021.00986
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

VARIANTS = {  # embed width, depths, heads
  "tiny": (96, (2, 2, 6, 2), (3, 6, 12, 24)),
  "small": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
  "base": (128, (2, 2, 18, 2), (4, 8, 16, 32)),
}
_init = nnx.initializers.truncated_normal(0.02)


def relative_position_index(window: int, table_window: int) -> np.ndarray:
  """(w*w, w*w) row of the bias table for each query/key pair of a w x w
  window, in a table of (2·table_window - 1)² relative offsets."""
  coords = np.stack(
    np.meshgrid(np.arange(window), np.arange(window), indexing="ij")
  )
  coords = coords.reshape(2, -1)
  offset = coords[:, :, None] - coords[:, None, :] + table_window - 1
  return offset[0] * (2 * table_window - 1) + offset[1]


def shifted_window_mask(height, width, window, shift) -> np.ndarray:
  """(windows, w*w, w*w) additive mask: 0 within a region of the shifted
  map, -100 between regions (pairs that are neighbours only through the
  cyclic roll)."""

  def regions(n):
    i = np.arange(n)
    return (i >= n - window).astype(int) + (i >= n - shift).astype(int)

  label = regions(height)[:, None] * 3 + regions(width)[None, :]
  label = partition(label[None, :, :, None], window)[..., 0]
  return np.where(label[:, None, :] != label[:, :, None], -100.0, 0.0).astype(
    np.float32
  )


def partition(x, window):
  """(B, H, W, C) -> (B·H/w·W/w, w·w, C): the w x w windows, in row-major
  order, each flattened row-major."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // window, window, w // window, window, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def unpartition(windows, window, b, h, w):
  """The inverse of `partition`: (B·H/w·W/w, w·w, C) -> (B, H, W, C)."""
  c = windows.shape[-1]
  x = windows.reshape(b, h // window, w // window, window, window, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


class WindowAttention(nnx.Module):
  """softmax(q·kᵀ/√d + B[Δ] + M)·v per window and head, B the learned
  relative position bias ([Swin] Eq. 4), M the shifted-window mask."""

  def __init__(self, width, num_heads, window, *, dtype, rngs):
    dense = functools.partial(
      nnx.Linear, width, width, kernel_init=_init, dtype=dtype, rngs=rngs
    )
    self.query, self.key, self.value, self.proj = (dense() for _ in range(4))
    self.relative_position_bias_table = nnx.Param(
      _init(rngs.params(), ((2 * window - 1) ** 2, num_heads))
    )
    self.num_heads, self.window = num_heads, window

  def __call__(self, x, window, mask):
    n, tokens, width = x.shape
    heads = self.num_heads
    q, k, v = (
      f(x).reshape(n, tokens, heads, width // heads)
      for f in (self.query, self.key, self.value)
    )
    logits = jnp.einsum("nqhd,nkhd->nhqk", q, k) * (width // heads) ** -0.5
    index = relative_position_index(window, self.window).reshape(-1)
    bias = self.relative_position_bias_table[...][index]
    bias = bias.reshape(tokens, tokens, heads).transpose(2, 0, 1)
    logits = logits.astype(jnp.float32) + bias
    if mask is not None:  # (windows, tokens, tokens), windows per image
      logits = logits.reshape(-1, mask.shape[0], heads, tokens, tokens)
      logits = (logits + mask[None, :, None]).reshape(n, heads, tokens, tokens)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    y = jnp.einsum("nhqk,nkhd->nqhd", weights, v).reshape(n, tokens, width)
    return self.proj(y)


class Block(nnx.Module):
  """x + W-MSA(LN(x)) (shifted when `shift`), then x + MLP(LN(x))."""

  def __init__(self, width, num_heads, window, shift, *, epsilon, dtype, rngs):
    norm = functools.partial(
      nnx.LayerNorm, width, epsilon=epsilon, dtype=dtype, rngs=rngs
    )
    self.norm1, self.norm2 = norm(), norm()
    self.attn = WindowAttention(
      width, num_heads, window, dtype=dtype, rngs=rngs
    )
    self.fc1 = nnx.Linear(
      width, 4 * width, kernel_init=_init, dtype=dtype, rngs=rngs
    )
    self.fc2 = nnx.Linear(
      4 * width, width, kernel_init=_init, dtype=dtype, rngs=rngs
    )
    self.window, self.shift = window, shift

  def __call__(self, x):
    b, h, w, _ = x.shape
    window, shift = self.window, self.shift
    if min(h, w) <= window:  # one window covers the map: nothing to shift
      window, shift = min(h, w), 0
    y = self.norm1(x)
    pad_h, pad_w = -h % window, -w % window
    y = jnp.pad(y, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
    hp, wp = h + pad_h, w + pad_w
    mask = None
    if shift:
      y = jnp.roll(y, (-shift, -shift), axis=(1, 2))
      mask = jnp.asarray(shifted_window_mask(hp, wp, window, shift))
    y = self.attn(partition(y, window), window, mask)
    y = unpartition(y, window, b, hp, wp)
    if shift:
      y = jnp.roll(y, (shift, shift), axis=(1, 2))
    x = x + y[:, :h, :w]
    y = jax.nn.gelu(self.fc1(self.norm2(x)), approximate=False)
    return x + self.fc2(y)


class PatchMerging(nnx.Module):
  """(B, H, W, C) -> (B, H/2, W/2, 2C): the 2x2 neighbours concatenated in
  the order (0,0), (1,0), (0,1), (1,1) (row, column offsets), LN, Linear."""

  def __init__(self, width, *, dtype, rngs):
    self.norm = nnx.LayerNorm(4 * width, epsilon=1e-5, dtype=dtype, rngs=rngs)
    self.reduction = nnx.Linear(
      4 * width,
      2 * width,
      use_bias=False,
      kernel_init=_init,
      dtype=dtype,
      rngs=rngs,
    )

  def __call__(self, x):
    _, h, w, _ = x.shape
    x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    x = jnp.concatenate(
      [x[:, r::2, c::2] for c in range(2) for r in range(2)], axis=-1
    )
    return self.reduction(self.norm(x))


class Stage(nnx.Module):
  """Patch merging (all stages but the first), then `depth` blocks,
  unshifted and shifted in turn."""

  def __init__(
    self, width, depth, num_heads, window, *, downsample, epsilon, dtype, rngs
  ):
    if downsample:
      self.downsample = PatchMerging(width // 2, dtype=dtype, rngs=rngs)
    self.has_downsample = downsample
    self.blocks = nnx.List(
      [
        Block(
          width,
          num_heads,
          window,
          0 if i % 2 == 0 else window // 2,
          epsilon=epsilon,
          dtype=dtype,
          rngs=rngs,
        )
        for i in range(depth)
      ]
    )

  def __call__(self, x):
    if self.has_downsample:
      x = self.downsample(x)
    for block in self.blocks:
      x = block(x)
    return x


class Swin(Classifier):
  """Swin classifier; `forward_features(x)` gives (pooled, normed
  embedding, [output of each stage, NHWC]); `__call__` the logits."""

  def __init__(
    self,
    variant: str,
    num_classes: int,
    *,
    patch_size=4,
    window_size=7,
    epsilon=1e-5,
    pixel_mean=IMAGENET_MEAN,
    pixel_std=IMAGENET_STD,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    embed, depths, heads = VARIANTS[variant]
    self.embed_dim, self.depths, self.num_heads = embed, depths, heads
    self.patch_size, self.window_size = patch_size, window_size
    self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
    self.patch_embed = Conv(
      3,
      embed,
      (patch_size, patch_size),
      strides=patch_size,
      padding="VALID",
      dtype=dtype,
      rngs=rngs,
    )
    self.patch_norm = nnx.LayerNorm(embed, epsilon=1e-5, dtype=dtype, rngs=rngs)
    widths = tuple(embed * 2**i for i in range(len(depths)))
    self.stages = nnx.List(
      [
        Stage(
          widths[i],
          depths[i],
          heads[i],
          window_size,
          downsample=i > 0,
          epsilon=epsilon,
          dtype=dtype,
          rngs=rngs,
        )
        for i in range(len(depths))
      ]
    )
    self.norm = nnx.LayerNorm(
      widths[-1], epsilon=epsilon, dtype=dtype, rngs=rngs
    )
    self.head = nnx.Linear(
      widths[-1], num_classes, kernel_init=_init, dtype=dtype, rngs=rngs
    )
    self.num_features = widths[-1]
    self.feature_widths = widths
    # Stage 3's output, 14x14 at 224 px: the input of the last merging.
    self.default_cam_stage = len(depths) - 2

  def forward_features(self, x) -> tuple[jax.Array, list[jax.Array]]:
    p = self.patch_size
    _, h, w, _ = x.shape
    x = jnp.pad(x, ((0, 0), (0, -h % p), (0, -w % p), (0, 0)))
    x = self.patch_norm(self.patch_embed(x))
    maps = []
    for stage in self.stages:
      x = stage(x)
      maps.append(x)
    return jnp.mean(self.norm(x), axis=(1, 2)), maps


def swin_t(num_classes, **kw) -> Swin:
  return Swin("tiny", num_classes, **kw)


def swin_s(num_classes, **kw) -> Swin:
  return Swin("small", num_classes, **kw)


def swin_b(num_classes, **kw) -> Swin:
  return Swin("base", num_classes, **kw)


def checkpoint_options(path: str) -> dict:
  """Epsilon, window, patch and pixel statistics of a Hugging Face
  checkpoint; timm's layout keeps the defaults (timm's Swin: window 7,
  patch 4, epsilon 1e-5, ImageNet statistics)."""
  config = pretrained.hf_config_or_none(path)
  if config is None:
    return {}
  mean, std = pretrained.hf_pixel_stats(path, (IMAGENET_MEAN, IMAGENET_STD))
  return dict(
    epsilon=config.get("layer_norm_eps", 1e-5),
    window_size=config.get("window_size", 7),
    patch_size=config.get("patch_size", 4),
    pixel_mean=mean,
    pixel_std=std,
  )


def from_hf(tensors) -> dict[str, np.ndarray]:
  """Hugging Face Swin tensors -> our parameter paths (HF merges patches
  at the end of stage i, we at the start of stage i + 1)."""
  tensors = {k.removeprefix("swin."): v for k, v in tensors.items()}
  renames = [
    (r"^embeddings\.patch_embeddings\.projection$", "patch_embed"),
    (r"^embeddings\.norm$", "patch_norm"),
    (
      r"^encoder\.layers\.(\d+)\.downsample",
      lambda m: f"stages.{int(m.group(1)) + 1}.downsample",
    ),
    (r"^encoder\.layers\.(\d+)\.blocks\.(\d+)", r"stages.\1.blocks.\2"),
    (r"\.attention\.self\.(query|key|value)$", r".attn.\1"),
    (r"\.attention\.self$", ".attn"),  # the bias table's module
    (r"\.attention\.output\.dense$", ".attn.proj"),
    (r"\.layernorm_before$", ".norm1"),
    (r"\.layernorm_after$", ".norm2"),
    (r"\.intermediate\.dense$", ".fc1"),
    (r"\.output\.dense$", ".fc2"),
    (r"^layernorm$", "norm"),
    (r"^classifier$", "head"),
  ]
  return pretrained.torch_to_flax(
    tensors, renames, ignore=[r"relative_position_index$", r"attn_mask$"]
  )


def from_timm(tensors) -> dict[str, np.ndarray]:
  """timm Swin tensors (fused qkv; `layers.i.downsample` opening stage i)
  -> our parameter paths. timm's older layout (merging closing stage i,
  head.weight) is converted as timm's own checkpoint filter does."""
  if "layers.0.downsample.reduction.weight" in tensors:  # older layout
    tensors = {
      re.sub(
        r"^layers\.(\d+)\.downsample",
        lambda m: f"layers.{int(m.group(1)) + 1}.downsample",
        k,
      ).replace("head.", "head.fc."): v
      for k, v in tensors.items()
    }
  renames = [
    (r"^patch_embed\.proj$", "patch_embed"),
    (r"^patch_embed\.norm$", "patch_norm"),
    (r"^layers\.(\d+)", r"stages.\1"),
    (r"\.mlp\.fc([12])$", r".fc\1"),
    (r"^head\.fc$", "head"),
  ]
  return pretrained.torch_to_flax(
    pretrained.split_qkv(tensors, r"\.qkv\."),
    renames,
    ignore=[r"relative_position_index$", r"attn_mask$"],
  )


def load_checkpoint(model: Swin, path: str) -> None:
  config, tensors, source = pretrained.read_weights(path)
  if config is not None:
    pretrained.check_hf_config(
      config,
      source,
      "swin",
      {
        "embed_dim": model.embed_dim,
        "depths": list(model.depths),
        "num_heads": list(model.num_heads),
        "window_size": model.window_size,
        "patch_size": model.patch_size,
        "mlp_ratio": 4.0,
        "hidden_act": "gelu",
        "use_absolute_embeddings": False,
        "qkv_bias": True,
      },
    )
    params = from_hf(tensors)
  elif "patch_embed.proj.weight" in tensors:
    params = from_timm(tensors)
  else:
    raise pretrained.CheckpointError(
      f"{source}: neither a Hugging Face Swin checkpoint (no config.json "
      "with a model_type beside it) nor timm's layout (no "
      "patch_embed.proj.weight)"
    )
  pretrained.assign(model, params, source=source)
