"""MobileViT (Mehta & Rastegari 2022), Flax NNX, NHWC.

A MobileNetV2-style convolutional network whose last three stages end in
a MobileViT block: local 3x3 conv, 1x1 projection to the transformer
width, a transformer over the map unfolded into 2x2 patches (each of the
four in-patch positions attends across all patches), fold back, 1x1
projection, and a 3x3 fusion conv over [input, result]. Stem 3x3/2,
SiLU everywhere, BatchNorm eps 1e-5, LayerNorm eps 1e-5; head: 1x1 conv
to 640 (S) channels, global average pool, Linear. The classifier's
dropout is not implemented.

A map whose size is not a multiple of the patch size is resized
(bilinear, half-pixel centres, no antialiasing) to the next multiple
before unfolding and back after folding, as the reference code does.

Pretrained weights: Hugging Face `MobileViTForImageClassification`
safetensors (apple/mobilevit-small, whose preprocessor feeds BGR images
in [0, 1]: the loader flips the stem's input channels so the model takes
RGB like every other scenejax model) and timm's layout
(`mobilevit_s.cvnets_in1k`).

References:
  Mehta & Rastegari, "MobileViT: Light-weight, General-purpose, and
  Mobile-friendly Vision Transformer", ICLR 2022. arXiv:2110.02178
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scenejax.models import pretrained
from scenejax.models.classifier import Classifier, ConvBN
from scenejax.models.conv import Conv
from scenejax.models.mobilenetv3 import make_divisible
from scenejax.models.segmenter import resize_bilinear
from scenejax.models.vit import fused_attention

# neck widths (stem, stage 1..5, head), transformer widths, expand ratio
VARIANTS = {
  "s": ((16, 32, 64, 96, 128, 160, 640), (144, 192, 240), 4),
  "xs": ((16, 32, 48, 64, 80, 96, 384), (96, 120, 144), 4),
  "xxs": ((16, 16, 24, 48, 64, 80, 320), (64, 80, 96), 2),
}
TRANSFORMER_DEPTHS = (2, 4, 3)
NUM_HEADS = 4  # every MobileViT transformer
UNIT_RANGE = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # pixels in [0, 1]


ConvBN = functools.partial(ConvBN, activation=jax.nn.silu)


class InvertedResidual(nnx.Module):
  """1x1 expand -> 3x3 depthwise (stride) -> 1x1 project, + x if shapes
  allow (MobileNetV2)."""

  def __init__(self, in_features, out, stride, expand_ratio, *, dtype, rngs):
    hidden = make_divisible(int(round(in_features * expand_ratio)))
    conv = functools.partial(ConvBN, dtype=dtype, rngs=rngs)
    self.expand = conv(in_features, hidden, 1)
    self.depthwise = conv(hidden, hidden, 3, stride=stride, groups=hidden)
    self.project = conv(hidden, out, 1, activation=None)
    self.residual = stride == 1 and in_features == out

  def __call__(self, x):
    y = self.project(self.depthwise(self.expand(x)))
    return x + y if self.residual else y


class TransformerLayer(nnx.Module):
  """Pre-norm: x + MHSA(LN(x)), then x + Linear(SiLU(Linear(LN(x))))."""

  def __init__(self, width, num_heads, mlp_dim, *, dtype, rngs):
    norm = functools.partial(
      nnx.LayerNorm, width, epsilon=1e-5, dtype=dtype, rngs=rngs
    )
    dense = functools.partial(nnx.Linear, dtype=dtype, rngs=rngs)
    self.norm1, self.norm2 = norm(), norm()
    self.attention = nnx.MultiHeadAttention(
      num_heads=num_heads,
      in_features=width,
      decode=False,
      dtype=dtype,
      attention_fn=fused_attention,
      rngs=rngs,
    )
    self.fc1, self.fc2 = dense(width, mlp_dim), dense(mlp_dim, width)

  def __call__(self, x):
    y = self.norm1(x)
    x = x + self.attention(y, y, deterministic=True)
    return x + self.fc2(jax.nn.silu(self.fc1(self.norm2(x))))


class MobileViTBlock(nnx.Module):
  """Down-sampling inverted residual, then local conv, global transformer
  over unfolded patches, fold, project, fuse with the block's input."""

  def __init__(
    self, in_features, out, width, depth, *, expand_ratio, patch, dtype, rngs
  ):
    conv = functools.partial(ConvBN, dtype=dtype, rngs=rngs)
    self.downsample = InvertedResidual(
      in_features, out, 2, expand_ratio, dtype=dtype, rngs=rngs
    )
    self.conv_kxk = conv(out, out, 3)
    self.conv_1x1 = Conv(
      out, width, (1, 1), use_bias=False, dtype=dtype, rngs=rngs
    )
    self.transformer = nnx.List(
      [
        TransformerLayer(width, NUM_HEADS, 2 * width, dtype=dtype, rngs=rngs)
        for _ in range(depth)
      ]
    )
    self.norm = nnx.LayerNorm(width, epsilon=1e-5, dtype=dtype, rngs=rngs)
    self.conv_proj = conv(width, out, 1)
    self.conv_fusion = conv(2 * out, out, 3)
    self.patch = patch

  def __call__(self, x):
    x = self.downsample(x)
    y = self.conv_1x1(self.conv_kxk(x))
    b, h, w, c = y.shape
    p = self.patch
    hp, wp = math.ceil(h / p) * p, math.ceil(w / p) * p
    if (hp, wp) != (h, w):
      y = resize_bilinear(y, (hp, wp))
    # (B, hp, wp, C) -> (B·p·p, patches, C): tokens at the same position
    # inside their p x p patch attend to each other.
    tokens = y.reshape(b, hp // p, p, wp // p, p, c).transpose(0, 2, 4, 1, 3, 5)
    tokens = tokens.reshape(b * p * p, -1, c)
    for layer in self.transformer:
      tokens = layer(tokens)
    y = self.norm(tokens).reshape(b, p, p, hp // p, wp // p, c)
    y = y.transpose(0, 3, 1, 4, 2, 5).reshape(b, hp, wp, c)
    if (hp, wp) != (h, w):
      y = resize_bilinear(y, (h, w))
    y = self.conv_proj(y)
    return self.conv_fusion(jnp.concatenate([x, y], axis=-1))


class MobileViT(Classifier):
  """`forward_features(x)` gives (pooled embedding after the 1x1 head
  conv, [output of each of the five stages])."""

  def __init__(
    self,
    variant: str,
    num_classes: int,
    *,
    patch_size=2,
    pixel_mean=UNIT_RANGE[0],
    pixel_std=UNIT_RANGE[1],
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    neck, widths, expand = VARIANTS[variant]
    self.variant = variant
    self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
    conv = functools.partial(ConvBN, dtype=dtype, rngs=rngs)
    ir = functools.partial(
      InvertedResidual, expand_ratio=expand, dtype=dtype, rngs=rngs
    )
    self.stem = conv(3, neck[0], 3, stride=2)
    self.stages = nnx.List(
      [
        nnx.Sequential(ir(neck[0], neck[1], 1)),
        nnx.Sequential(
          ir(neck[1], neck[2], 2),
          ir(neck[2], neck[2], 1),
          ir(neck[2], neck[2], 1),
        ),
      ]
      + [
        MobileViTBlock(
          neck[i + 2],
          neck[i + 3],
          widths[i],
          TRANSFORMER_DEPTHS[i],
          expand_ratio=expand,
          patch=patch_size,
          dtype=dtype,
          rngs=rngs,
        )
        for i in range(3)
      ]
    )
    self.final_conv = conv(neck[5], neck[6], 1)
    self.head = nnx.Linear(neck[6], num_classes, dtype=dtype, rngs=rngs)
    self.num_features = neck[6]
    self.feature_widths = tuple(neck[1:6])
    self.default_cam_stage = 3  # 14x14 at 224 px, entering the last stride 2

  def forward_features(self, x) -> tuple[jax.Array, list[jax.Array]]:
    x = self.stem(x)
    maps = []
    for stage in self.stages:
      x = stage(x)
      maps.append(x)
    return jnp.mean(self.final_conv(x), axis=(1, 2)), maps


def mobilevit_s(num_classes, **kw) -> MobileViT:
  return MobileViT("s", num_classes, **kw)


def mobilevit_xs(num_classes, **kw) -> MobileViT:
  return MobileViT("xs", num_classes, **kw)


def mobilevit_xxs(num_classes, **kw) -> MobileViT:
  return MobileViT("xxs", num_classes, **kw)


def checkpoint_options(path: str) -> dict:
  """Patch size and pixel statistics of a Hugging Face checkpoint; timm's
  layout keeps the defaults (patch 2, pixels in [0, 1])."""
  config = pretrained.hf_config_or_none(path)
  if config is None:
    return {}
  mean, std = pretrained.hf_pixel_stats(path, UNIT_RANGE)
  return dict(
    patch_size=config.get("patch_size", 2), pixel_mean=mean, pixel_std=std
  )


def from_hf(tensors) -> dict[str, np.ndarray]:
  """Hugging Face MobileViT tensors -> our parameter paths."""
  tensors = {k.removeprefix("mobilevit."): v for k, v in tensors.items()}
  renames = [
    (r"^conv_stem", "stem"),
    (r"^conv_1x1_exp", "final_conv"),
    (r"^encoder\.layer\.([01])\.layer\.(\d+)", r"stages.\1.layers.\2"),
    (r"^encoder\.layer\.(\d+)\.downsampling_layer", r"stages.\1.downsample"),
    (r"^encoder\.layer\.(\d+)\.transformer\.layer", r"stages.\1.transformer"),
    (r"^encoder\.layer\.(\d+)\.layernorm$", r"stages.\1.norm"),
    (r"^encoder\.layer\.(\d+)\.conv_projection", r"stages.\1.conv_proj"),
    (r"^encoder\.layer\.(\d+)\.fusion", r"stages.\1.conv_fusion"),
    (r"^encoder\.layer\.(\d+)\.conv_1x1\.convolution$", r"stages.\1.conv_1x1"),
    (r"^encoder\.layer\.(\d+)\.conv_kxk", r"stages.\1.conv_kxk"),
    (r"\.expand_1x1", ".expand"),
    (r"\.conv_3x3", ".depthwise"),
    (r"\.reduce_1x1", ".project"),
    (r"\.attention\.attention\.", ".attention."),
    (r"\.attention\.output\.dense$", ".attention.out"),
    (r"\.layernorm_before$", ".norm1"),
    (r"\.layernorm_after$", ".norm2"),
    (r"\.intermediate\.dense$", ".fc1"),
    (r"\.output\.dense$", ".fc2"),
    (r"\.convolution$", ".conv"),
    (r"\.normalization$", ".bn"),
    (r"^classifier$", "head"),
  ]
  params = pretrained.torch_to_flax(
    tensors, renames, ignore=[r"num_batches_tracked$"]
  )
  return pretrained.to_multihead(params, NUM_HEADS)


def load_checkpoint(model: MobileViT, path: str) -> None:
  config, tensors, source = pretrained.read_weights(path)
  if config is not None:
    neck, widths, expand = VARIANTS[model.variant]
    pretrained.check_hf_config(
      config,
      source,
      "mobilevit",
      {
        "neck_hidden_sizes": list(neck),
        "hidden_sizes": list(widths),
        "expand_ratio": float(expand),
        "num_attention_heads": NUM_HEADS,
        "mlp_ratio": 2.0,
        "hidden_act": "silu",
        "conv_kernel_size": 3,
        "layer_norm_eps": 1e-5,
        "qkv_bias": True,
      },
    )
    params = from_hf(tensors)
    if _flips_channels(path) and "stem/conv/kernel" in params:
      # The checkpoint was trained on BGR input; ours is RGB.
      params["stem/conv/kernel"] = params["stem/conv/kernel"][:, :, ::-1]
  elif "stem.conv.weight" in tensors:
    params = from_timm(tensors)
  else:
    raise pretrained.CheckpointError(
      f"{source}: neither a Hugging Face MobileViT checkpoint (no "
      "config.json with a model_type beside it) nor timm's layout (no "
      "stem.conv.weight)"
    )
  pretrained.assign(model, params, source=source)


def _flips_channels(path: str) -> bool:
  """MobileViTImageProcessor flips RGB to BGR unless told not to."""
  return bool(
    pretrained.hf_preprocessor(path).get("do_flip_channel_order", True)
  )


def from_timm(tensors) -> dict[str, np.ndarray]:
  """timm MobileViT tensors (byobnet names, fused qkv) -> our paths."""
  renames = [
    (r"^stages\.([01])\.(\d+)", r"stages.\1.layers.\2"),
    (r"^stages\.([234])\.0(?=\.)", r"stages.\1.downsample"),
    (r"^stages\.([234])\.1(?=\.)", r"stages.\1"),
    (r"\.conv1_1x1", ".expand"),
    (r"\.conv2_kxk", ".depthwise"),
    (r"\.conv3_1x1", ".project"),
    (r"\.attn\.proj$", ".attention.out"),
    (r"\.attn\.(query|key|value)$", r".attention.\1"),
    (r"\.mlp\.fc([12])$", r".fc\1"),
    (r"^head\.fc$", "head"),
  ]
  params = pretrained.torch_to_flax(
    pretrained.split_qkv(tensors, r"\.qkv\."),
    renames,
    ignore=[r"num_batches_tracked$"],
  )
  return pretrained.to_multihead(params, NUM_HEADS)
