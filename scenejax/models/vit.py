"""Vision Transformer (Dosovitskiy et al. 2021), Flax NNX, NHWC.

Pre-norm encoder blocks, a class token, learned position embeddings added
to the patch tokens before the class token is prepended (big_vision's
layout), classifier on the final-normed class token. Variants follow
big_vision's table: Ti/S/B/L with 16 px patches.

Pretrained weights: big_vision / vit_jax `.npz` (old pre-Linen names
"Transformer/encoderblock_i/MultiHeadDotProductAttention_1/..." and the
Linen names, scanned or not) and Hugging Face ViT safetensors. The
checkpoint decides two details that differ between the sources: GELU
(vit_jax/big_vision trained with the tanh approximation, transformers uses
the exact erf form) and the LayerNorm epsilon (1e-6 vs 1e-12).
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

VARIANTS = {  # width, depth, mlp_dim, heads (big_vision's table)
  "Ti": (192, 12, 768, 3),
  "S": (384, 12, 1536, 6),
  "B": (768, 12, 3072, 12),
  "L": (1024, 24, 4096, 16),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIGNED_UNIT = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # pixels to [-1, 1]


def fused_attention(
  query,
  key,
  value,
  bias=None,
  mask=None,
  *,
  dropout_rate=0.0,
  deterministic=True,
  is_causal=False,
  **unused,
):
  """`nnx.MultiHeadAttention`'s `attention_fn` as one
  `jax.nn.dot_product_attention`, softmax(q kᵀ / √d) v (Vaswani et al.
  2017, Eq. 1), logits and softmax in float32 for bfloat16 inputs.

  On a GPU with bfloat16/float16 inputs it asks for cuDNN's fused (flash)
  attention; JAX's default (`implementation=None`) is always XLA's
  einsum-softmax. Where cuDNN refuses the shapes, dtype or GPU (JAX checks
  at trace time), XLA's is used. No attention dropout (none of these
  models uses it)."""
  del unused  # dtype, precision, dropout_rng, module: not used here
  if dropout_rate and not deterministic:
    raise NotImplementedError("fused_attention has no attention dropout")
  attend = functools.partial(
    jax.nn.dot_product_attention,
    query,
    key,
    value,
    bias=bias,
    mask=mask,
    is_causal=is_causal,
  )
  if jax.default_backend() == "gpu" and query.dtype in (
    jnp.bfloat16,
    jnp.float16,
  ):
    try:
      return attend(implementation="cudnn")
    except (NotImplementedError, ValueError, RuntimeError):
      pass  # e.g. head size, sequence length, cuDNN version or GPU
  return attend()


class EncoderBlock(nnx.Module):
  """x + MHSA(LN(x)), then x + MLP(LN(x))."""

  def __init__(
    self, width, mlp_dim, num_heads, *, epsilon, gelu_approximate, dtype, rngs
  ):
    dense = functools.partial(
      nnx.Linear,
      dtype=dtype,
      rngs=rngs,
      kernel_init=nnx.initializers.xavier_uniform(),
      bias_init=nnx.initializers.normal(1e-6),
    )
    self.norm1 = nnx.LayerNorm(width, epsilon=epsilon, dtype=dtype, rngs=rngs)
    self.attention = nnx.MultiHeadAttention(
      num_heads=num_heads,
      in_features=width,
      decode=False,
      dtype=dtype,
      kernel_init=nnx.initializers.xavier_uniform(),
      attention_fn=fused_attention,
      rngs=rngs,
    )
    self.norm2 = nnx.LayerNorm(width, epsilon=epsilon, dtype=dtype, rngs=rngs)
    self.mlp1 = dense(width, mlp_dim)
    self.mlp2 = dense(mlp_dim, width)
    self.gelu_approximate = gelu_approximate

  def __call__(self, x):
    y = self.norm1(x)
    x = x + self.attention(y, y, deterministic=True)
    y = jax.nn.gelu(self.mlp1(self.norm2(x)), approximate=self.gelu_approximate)
    return x + self.mlp2(y)


class ViT(Classifier):
  """ViT classifier. `forward_features(x)` gives (class-token embedding,
  [patch-token grid (N, h, w, D) after each block]); `__call__` the logits."""

  def __init__(
    self,
    variant: str,
    num_classes: int,
    *,
    patch_size=16,
    image_size=224,
    epsilon=1e-6,
    gelu_approximate=False,
    pixel_mean=IMAGENET_MEAN,
    pixel_std=IMAGENET_STD,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    width, depth, mlp_dim, num_heads = VARIANTS[variant]
    if image_size % patch_size:
      raise ValueError(
        f"image_size {image_size} is not a multiple of the "
        f"patch size {patch_size}"
      )
    self.grid = image_size // patch_size
    self.patch_size = patch_size
    self.num_features = width
    self.feature_widths = (width,) * depth
    self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
    self.embedding = Conv(
      3,
      width,
      (patch_size, patch_size),
      strides=patch_size,
      padding="VALID",
      dtype=dtype,
      rngs=rngs,
    )
    self.pos_embedding = nnx.Param(
      nnx.initializers.normal(1 / np.sqrt(width))(
        rngs.params(), (1, self.grid * self.grid, width)
      )
    )
    self.cls = nnx.Param(jnp.zeros((1, 1, width)))
    self.blocks = nnx.List(
      [
        EncoderBlock(
          width,
          mlp_dim,
          num_heads,
          epsilon=epsilon,
          gelu_approximate=gelu_approximate,
          dtype=dtype,
          rngs=rngs,
        )
        for _ in range(depth)
      ]
    )
    self.encoder_norm = nnx.LayerNorm(
      width, epsilon=epsilon, dtype=dtype, rngs=rngs
    )
    # Zero head, as big_vision fine-tunes: the first logits are all equal.
    self.head = nnx.Linear(
      width,
      num_classes,
      dtype=dtype,
      kernel_init=nnx.initializers.zeros,
      rngs=rngs,
    )
    self.default_cam_stage = 3 * depth // 4 - 1  # after block 3/4 depth

  def forward_features(self, x) -> tuple[jax.Array, list[jax.Array]]:
    x = self.embedding(x)
    n, h, w, d = x.shape
    if (h, w) != (self.grid, self.grid):
      raise ValueError(
        f"ViT built for {self.grid * self.patch_size} px inputs got "
        f"{h * self.patch_size}x{w * self.patch_size}; create the model "
        "with image_size= the input size"
      )
    tokens = x.reshape(n, h * w, d) + self.pos_embedding[...].astype(x.dtype)
    cls = jnp.broadcast_to(self.cls[...].astype(x.dtype), (n, 1, d))
    tokens = jnp.concatenate([cls, tokens], axis=1)
    maps = []
    for block in self.blocks:
      tokens = block(tokens)
      maps.append(tokens[:, 1:].reshape(n, h, w, d))
    return self.encoder_norm(tokens)[:, 0], maps


def vit_ti16(num_classes, **kw) -> ViT:
  return ViT("Ti", num_classes, **kw)


def vit_s16(num_classes, **kw) -> ViT:
  return ViT("S", num_classes, **kw)


def vit_b16(num_classes, **kw) -> ViT:
  return ViT("B", num_classes, **kw)


def vit_l16(num_classes, **kw) -> ViT:
  return ViT("L", num_classes, **kw)


# ----------------------------------------------------------------------------
# Pretrained weights.


def resample_posemb(posemb: np.ndarray, grid: int) -> np.ndarray:
  """(1, g*g, D) position embeddings -> (1, grid*grid, D), bilinear.

  For fine-tuning at another resolution (big_vision's "high-res
  fine-tuning"; it zooms with scipy at order 1, we resize with
  half-pixel-centred bilinear interpolation, as `jax.image.resize` does).
  """
  old = int(round(np.sqrt(posemb.shape[1])))
  if old * old != posemb.shape[1]:
    raise pretrained.CheckpointError(
      f"position embeddings of {posemb.shape[1]} tokens are not a square grid"
    )
  if old == grid:
    return posemb
  square = posemb.reshape(old, old, -1)
  resized = jax.image.resize(
    square, (grid, grid, square.shape[-1]), method="bilinear"
  )
  return np.asarray(resized).reshape(1, grid * grid, -1)


def _split_cls_posemb(params: dict) -> None:
  """Old layout: posemb over [cls] + patches. Ours adds it before [cls]."""
  pe = params["pos_embedding"]
  if int(round(np.sqrt(pe.shape[1] - 1))) ** 2 == pe.shape[1] - 1:
    params["pos_embedding"] = pe[:, 1:]
    if "cls" in params:
      params["cls"] = params["cls"] + pe[:, :1]


def from_big_vision(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """big_vision / vit_jax npz arrays -> our parameter paths.

  Accepts the pre-Linen names of the AugReg checkpoints (LayerNorm_0,
  MultiHeadDotProductAttention_1, LayerNorm_2, MlpBlock_3), the Linen
  names (…_0, …_0, …_1, …_0) and the scanned layout
  ("Transformer/encoderblock/..." with a leading depth axis). A
  `pre_logits` layer (the original i21k models) is dropped, as vit_jax
  drops it for fine-tuning.
  """
  flat = {}
  for key, value in arrays.items():
    if key.startswith("Transformer/encoderblock/"):  # scanned: unstack
      rest = key[len("Transformer/encoderblock/") :]
      for i in range(value.shape[0]):
        flat[f"Transformer/encoderblock_{i}/{rest}"] = value[i]
    else:
      flat[key] = value
  renames = [
    (r"^Transformer/posembed_input/pos_embedding$", "pos_embedding"),
    (r"^Transformer/pos_embedding$", "pos_embedding"),
    (r"^Transformer/encoder_norm/", "encoder_norm/"),
    (r"^Transformer/encoderblock_(\d+)/", r"blocks/\1/"),
    (r"/LayerNorm_0/", "/norm1/"),
    (r"/LayerNorm_[12]/", "/norm2/"),
    (r"/MultiHeadDotProductAttention_[01]/", "/attention/"),
    (r"/MlpBlock_[03]/Dense_0/", "/mlp1/"),
    (r"/MlpBlock_[03]/Dense_1/", "/mlp2/"),
  ]
  params = {}
  for key, value in flat.items():
    if key.startswith("pre_logits/"):
      continue
    for pattern, replacement in renames:
      key = re.sub(pattern, replacement, key)
    params[key] = value
  if "pos_embedding" in params:
    _split_cls_posemb(params)
  return params


def from_hf(
  tensors: dict[str, np.ndarray], config: dict
) -> dict[str, np.ndarray]:
  """Hugging Face ViT(Model|ForImageClassification) tensors -> our paths."""
  tensors = {k.removeprefix("vit."): v for k, v in tensors.items()}
  params = {}
  for name, ours in (
    ("embeddings.cls_token", "cls"),
    ("embeddings.position_embeddings", "pos_embedding"),
  ):
    if name in tensors:
      params[ours] = tensors.pop(name)
  params.update(
    pretrained.torch_to_flax(
      tensors,
      [
        (r"^embeddings\.patch_embeddings\.projection$", "embedding"),
        (r"^encoder\.layer\.(\d+)\.", r"blocks.\1."),
        (r"\.attention\.attention\.", ".attention."),
        (r"\.attention\.output\.dense$", ".attention.out"),
        (r"\.intermediate\.dense$", ".mlp1"),
        (r"\.output\.dense$", ".mlp2"),
        (r"\.layernorm_before$", ".norm1"),
        (r"\.layernorm_after$", ".norm2"),
        (r"^layernorm$", "encoder_norm"),
        (r"^classifier$", "head"),
      ],
      ignore=[r"^pooler\."],
    )
  )
  params = pretrained.to_multihead(params, config["num_attention_heads"])
  if "pos_embedding" in params:
    _split_cls_posemb(params)
  return params


_HF_ACT = {
  "gelu": False,
  "gelu_new": True,
  "gelu_pytorch_tanh": True,
  "gelu_fast": True,
}


def checkpoint_options(path: str) -> dict:
  """Model options a checkpoint fixes: GELU form, LN epsilon, pixel scale."""
  if not pretrained.is_hf(path):  # big_vision: tanh GELU, LN 1e-6, [-1, 1]
    return dict(
      gelu_approximate=True,
      epsilon=1e-6,
      pixel_mean=SIGNED_UNIT[0],
      pixel_std=SIGNED_UNIT[1],
    )
  config = pretrained.read_hf_config(path)
  act = config.get("hidden_act", "gelu")
  if act not in _HF_ACT:
    raise pretrained.CheckpointError(
      f"{path}: hidden_act {act!r} is not supported (GELU forms only)"
    )
  mean, std = pretrained.hf_pixel_stats(path, default=SIGNED_UNIT)
  return dict(
    gelu_approximate=_HF_ACT[act],
    epsilon=config.get("layer_norm_eps", 1e-12),
    pixel_mean=mean,
    pixel_std=std,
  )


def load_checkpoint(model: ViT, path: str) -> None:
  """Loads a big_vision `.npz` or Hugging Face ViT checkpoint into `model`."""
  if pretrained.is_hf(path):
    config, tensors, source = pretrained.read_hf(path)
    pretrained.check_hf_config(
      config,
      source,
      "vit",
      {
        "hidden_size": model.num_features,
        "num_hidden_layers": len(model.blocks),
        "num_attention_heads": model.blocks[0].attention.num_heads,
        "intermediate_size": model.blocks[0].mlp1.out_features,
        "patch_size": model.patch_size,
        "qkv_bias": True,
      },
    )
    params = from_hf(tensors, config)
  else:
    source = path
    params = from_big_vision(pretrained.read_npz(path))
  if "pos_embedding" in params:
    params["pos_embedding"] = resample_posemb(
      params["pos_embedding"], model.grid
    )
  pretrained.assign(model, params, source=source)
