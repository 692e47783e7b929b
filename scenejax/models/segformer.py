"""SegFormer (Xie et al. 2021): Mix Transformer encoder + all-MLP decoder,
Flax NNX, NHWC.

Encoder (MiT-B0..B5), four stages, each:
  * overlapping patch embedding: conv k x k / s (7/4 then 3/2), padding
    k // 2, then LayerNorm;
  * blocks: x + Attn(LN(x)), then x + MixFFN(LN(x)). Attention is
    efficient self-attention: keys and values come from the tokens
    spatially reduced by a conv of kernel = stride = R (then LayerNorm),
    R = 8, 4, 2, 1 by stage; MixFFN is Linear(4C) -> 3x3 depthwise conv ->
    GELU (exact) -> Linear(C);
  * a final LayerNorm.
All LayerNorms use epsilon 1e-5 (PyTorch's default, as the reference does).
Decoder: each stage map -> Linear(D) -> bilinear to stride 4; concatenated
in reverse stage order -> 1x1 conv (no bias) -> BatchNorm -> ReLU -> 1x1
conv classifier (`head`). Logits come out at stride 4; `__call__`
upsamples them to the input as transformers' docs advise.

Pretrained weights: Hugging Face `SegformerForSemanticSegmentation`
checkpoints, in the Hub's original key layout
(`segformer.encoder.block.0.0.attention.self.query`, ...) or in the layout
transformers >= 5 writes (`segformer.stages.0.blocks.0.attention.q_proj`);
e.g. `nvidia/segformer-b0-finetuned-ade-512-512` ... `-b5-...-640-640`.
Those weights are under NVIDIA's Source Code License for SegFormer:
non-commercial (research or evaluation) use only. Loading weights that came
from NVIDIA's hub repositories logs that; weights you trained yourself
carry your own terms.

References:
  E. Xie, W. Wang, Z. Yu, A. Anandkumar, J. M. Alvarez, P. Luo.
  SegFormer: Simple and Efficient Design for Semantic Segmentation with
  Transformers. NeurIPS 2021. arXiv:2105.15203.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from scenejax.models import pretrained
from scenejax.models.conv import Conv, depthwise_conv
from scenejax.models.segmenter import Segmenter, resize_bilinear
from scenejax.models.vit import IMAGENET_MEAN, IMAGENET_STD

LICENCE = (
  "NVIDIA Source Code License for SegFormer: non-commercial use only "
  "(research or evaluation); see https://github.com/NVlabs/SegFormer"
)
# MiT variants: depths, widths, heads per stage; decoder width.
VARIANTS = {
  "b0": ((2, 2, 2, 2), (32, 64, 160, 256), (1, 2, 5, 8), 256),
  "b1": ((2, 2, 2, 2), (64, 128, 320, 512), (1, 2, 5, 8), 256),
  "b2": ((3, 4, 6, 3), (64, 128, 320, 512), (1, 2, 5, 8), 768),
  "b3": ((3, 4, 18, 3), (64, 128, 320, 512), (1, 2, 5, 8), 768),
  "b4": ((3, 8, 27, 3), (64, 128, 320, 512), (1, 2, 5, 8), 768),
  "b5": ((3, 6, 40, 3), (64, 128, 320, 512), (1, 2, 5, 8), 768),
}
PATCH_SIZES = (7, 3, 3, 3)
STRIDES = (4, 2, 2, 2)
REDUCTIONS = (8, 4, 2, 1)  # key/value spatial reduction R per stage
MLP_RATIO = 4
_EPS = 1e-5


class Attention(nnx.Module):
  """Multi-head attention whose keys/values see the map reduced R x R."""

  def __init__(self, width, heads, reduction, *, dtype, rngs):
    dense = functools.partial(nnx.Linear, width, width, dtype=dtype, rngs=rngs)
    self.q, self.k, self.v, self.o = dense(), dense(), dense(), dense()
    self.heads, self.reduction = heads, reduction
    if reduction > 1:
      self.sr = Conv(
        width,
        width,
        (reduction, reduction),
        strides=reduction,
        padding="VALID",
        dtype=dtype,
        rngs=rngs,
      )
      self.sr_norm = nnx.LayerNorm(width, epsilon=_EPS, dtype=dtype, rngs=rngs)

  def __call__(self, x):  # x: (B, H, W, C)
    b, h, w, c = x.shape
    kv = self.sr_norm(self.sr(x)) if self.reduction > 1 else x
    kv = kv.reshape(b, -1, c)
    split = lambda t: t.reshape(b, t.shape[1], self.heads, c // self.heads)
    y = jax.nn.dot_product_attention(
      split(self.q(x.reshape(b, h * w, c))),
      split(self.k(kv)),
      split(self.v(kv)),
    )
    return self.o(y.reshape(b, h * w, c)).reshape(b, h, w, c)


class MixFFN(nnx.Module):
  """Linear -> 3x3 depthwise conv -> GELU -> Linear."""

  def __init__(self, width, hidden, *, dtype, rngs):
    self.fc1 = nnx.Linear(width, hidden, dtype=dtype, rngs=rngs)
    self.dwconv = Conv(
      hidden,
      hidden,
      (3, 3),
      padding=1,
      feature_group_count=hidden,
      dtype=dtype,
      rngs=rngs,
    )
    self.fc2 = nnx.Linear(hidden, width, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    y = depthwise_conv(self.dwconv, self.fc1(x))
    return self.fc2(jax.nn.gelu(y, approximate=False))


class Block(nnx.Module):
  def __init__(self, width, heads, reduction, *, dtype, rngs):
    norm = functools.partial(
      nnx.LayerNorm, width, epsilon=_EPS, dtype=dtype, rngs=rngs
    )
    self.norm1, self.norm2 = norm(), norm()
    self.attention = Attention(width, heads, reduction, dtype=dtype, rngs=rngs)
    self.mlp = MixFFN(width, MLP_RATIO * width, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    x = x + self.attention(self.norm1(x))
    return x + self.mlp(self.norm2(x))


class Stage(nnx.Module):
  def __init__(self, index, in_features, width, depth, heads, *, dtype, rngs):
    k = PATCH_SIZES[index]
    self.patch_conv = Conv(
      in_features,
      width,
      (k, k),
      strides=STRIDES[index],
      padding=k // 2,
      dtype=dtype,
      rngs=rngs,
    )
    self.patch_norm = nnx.LayerNorm(width, epsilon=_EPS, dtype=dtype, rngs=rngs)
    self.blocks = nnx.List(
      [
        Block(width, heads, REDUCTIONS[index], dtype=dtype, rngs=rngs)
        for _ in range(depth)
      ]
    )
    self.norm = nnx.LayerNorm(width, epsilon=_EPS, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    x = self.patch_norm(self.patch_conv(x))
    for block in self.blocks:
      x = block(x)
    return self.norm(x)


class SegFormer(Segmenter):
  """SegFormer MiT-B0..B5; `__call__(x)` -> logits at the input resolution."""

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
    depths, widths, heads, decoder_width = VARIANTS[variant]
    self.variant, self.num_classes = variant, num_classes
    self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
    self.stages = nnx.List(
      [
        Stage(
          i,
          3 if i == 0 else widths[i - 1],
          widths[i],
          depths[i],
          heads[i],
          dtype=dtype,
          rngs=rngs,
        )
        for i in range(4)
      ]
    )
    self.projections = nnx.List(
      [nnx.Linear(w, decoder_width, dtype=dtype, rngs=rngs) for w in widths]
    )
    self.fuse = Conv(
      4 * decoder_width,
      decoder_width,
      (1, 1),
      use_bias=False,
      dtype=dtype,
      rngs=rngs,
    )
    self.batch_norm = nnx.BatchNorm(
      decoder_width, momentum=0.9, epsilon=1e-5, dtype=dtype, rngs=rngs
    )
    self.head = Conv(decoder_width, num_classes, (1, 1), dtype=dtype, rngs=rngs)

  def stage_maps(self, x) -> list[jax.Array]:
    maps = []
    for stage in self.stages:
      x = stage(x)
      maps.append(x)
    return maps

  def decode(self, x) -> jax.Array:
    """Logits at stride 4: (B, ceil(H/4), ceil(W/4), num_classes)."""
    maps = self.stage_maps(x)
    size = maps[0].shape[1:3]
    projected = [
      resize_bilinear(proj(m), size) for proj, m in zip(self.projections, maps)
    ]
    fused = self.fuse(jnp.concatenate(projected[::-1], axis=-1))
    return self.head(jax.nn.relu(self.batch_norm(fused)))


def _builder(variant):
  def build(num_classes, **kw) -> SegFormer:
    return SegFormer(variant, num_classes, **kw)

  build.__name__ = f"segformer_{variant}"
  build.__module__ = __name__
  return build


segformer_b0 = _builder("b0")
segformer_b1 = _builder("b1")
segformer_b2 = _builder("b2")
segformer_b3 = _builder("b3")
segformer_b4 = _builder("b4")
segformer_b5 = _builder("b5")


def checkpoint_options(path: str) -> dict:
  """Pixel statistics of a Hugging Face checkpoint."""
  pretrained.require_model_type(
    pretrained.read_hf_config(path),
    path,
    "segformer",
    "a SegFormer segmentation checkpoint",
  )
  mean, std = pretrained.hf_pixel_stats(path, (IMAGENET_MEAN, IMAGENET_STD))
  return dict(pixel_mean=mean, pixel_std=std)


# The Hub's original names -> the names transformers >= 5 uses.
_ORIGINAL_TO_CURRENT = [
  (r"encoder\.patch_embeddings\.(\d+)\.", r"stages.\1.patch_embeddings."),
  (r"encoder\.block\.(\d+)\.", r"stages.\1.blocks."),
  (r"encoder\.layer_norm\.(\d+)\.", r"stages.\1.layer_norm."),
  (r"attention\.self\.query\.", "attention.q_proj."),
  (r"attention\.self\.key\.", "attention.k_proj."),
  (r"attention\.self\.value\.", "attention.v_proj."),
  (
    r"attention\.self\.sr\.",
    "attention.sequence_reduction.sequence_reduction.",
  ),
  (
    r"attention\.self\.layer_norm\.",
    "attention.sequence_reduction.layer_norm.",
  ),
  (r"attention\.output\.dense\.", "attention.o_proj."),
  (r"mlp\.dense1\.", "mlp.fc1."),
  (r"mlp\.dense2\.", "mlp.fc2."),
  (r"\.layer_norm_1\.", ".layernorm_before."),
  (r"\.layer_norm_2\.", ".layernorm_after."),
  (r"decode_head\.linear_c\.", "decode_head.linear_projections."),
]


def from_hf(tensors) -> dict[str, np.ndarray]:
  """Hugging Face SegFormer tensors (either layout) -> our paths."""
  current = {}
  for key, value in tensors.items():
    for pattern, replacement in _ORIGINAL_TO_CURRENT:
      key = re.sub(pattern, replacement, key)
    current[key.removeprefix("segformer.")] = value
  return pretrained.torch_to_flax(
    current,
    [
      (r"\.patch_embeddings\.proj$", ".patch_conv"),
      (r"\.patch_embeddings\.layer_norm$", ".patch_norm"),
      (r"\.sequence_reduction\.sequence_reduction$", ".sr"),
      (r"\.sequence_reduction\.layer_norm$", ".sr_norm"),
      (r"\.layer_norm$", ".norm"),
      (r"\.layernorm_before$", ".norm1"),
      (r"\.layernorm_after$", ".norm2"),
      (r"\.attention\.(q|k|v|o)_proj$", r".attention.\1"),
      (r"\.mlp\.dwconv\.dwconv$", ".mlp.dwconv"),
      (r"^decode_head\.linear_projections\.(\d+)\.proj$", r"projections.\1"),
      (r"^decode_head\.linear_fuse$", "fuse"),
      (r"^decode_head\.batch_norm$", "batch_norm"),
      (r"^decode_head\.classifier$", "head"),
    ],
    ignore=(r"num_batches_tracked$",),
  )


def load_checkpoint(model: SegFormer, path: str) -> None:
  config, tensors, source = pretrained.read_hf(path)
  depths, widths, heads, decoder_width = VARIANTS[model.variant]
  pretrained.check_hf_config(
    config,
    source,
    "segformer",
    {
      "depths": list(depths),
      "hidden_sizes": list(widths),
      "num_attention_heads": list(heads),
      "decoder_hidden_size": decoder_width,
      "sr_ratios": list(REDUCTIONS),
      "patch_sizes": list(PATCH_SIZES),
      "strides": list(STRIDES),
      "mlp_ratios": [MLP_RATIO] * 4,
      "hidden_act": "gelu",
    },
  )
  pretrained.assign(model, from_hf(tensors), source=source)
  if pretrained.hf_published_by(path, config, "nvidia"):
    logging.warning(
      "%s: NVIDIA's SegFormer weights, licence: %s", source, LICENCE
    )
