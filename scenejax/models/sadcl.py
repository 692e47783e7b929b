"""SADCL's Semantic-Aware Representation Learning (SARL) head on any
scenejax backbone, Flax NNX, NHWC.

[SADCL] (only its poster is public) builds one label-level visual
representation per category: a transformer encoder models the context of
the objects and the scene over the backbone's spatial tokens, then K
learnable label embeddings extract, by multi-head attention, each
category's representation. Our reading, every choice an option:

  tokens   t = Linear(F) + sine 2-D position code    F: the last map (B, h, w, C)
  encoder  t ← t + MHSA(LN(t)); t ← t + MLP(LN(t))   `encoder_layers` times
  labels   r = q + MHA(LN(q), LN(t)); r ← r + MLP(LN(r)),  q the (K, D)
           label embeddings, one query per category (cross-attention)
  logits   s_k = w_k·r_k + b_k                        one linear map per label

r (B, K, D) feeds SSCL and PSCL (`scenejax.losses.label_contrastive_loss`,
`prototype_contrastive_loss`); the model also holds the K category
prototypes PSCL compares with (learnable parameters here).

References:
  [SADCL] L. Ma, D. Sun, L. Wang, H. Zhao, B. Luo. Semantic-Aware Dual
          Contrastive Learning for Multi-label Image Classification. ECAI
          2023.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def sine_position_code(h: int, w: int, dim: int) -> np.ndarray:
  """(h·w, dim) fixed 2-D sine code (DETR's): the first half of the
  channels encodes the row, the second the column, each as sin/cos pairs
  of geometric frequencies 10000^(-2i/(dim/2)). No parameters, so any map
  size works."""
  if dim % 4:
    raise ValueError(f"dim {dim}: a multiple of 4 (sin/cos for rows, columns)")
  quarter = dim // 4
  freq = 10000.0 ** (-np.arange(quarter) / quarter)

  def code(n):
    angle = np.arange(n)[:, None] * freq[None, :]
    return np.concatenate([np.sin(angle), np.cos(angle)], axis=1)

  rows = np.repeat(code(h), w, axis=0)
  cols = np.tile(code(w), (h, 1))
  return np.concatenate([rows, cols], axis=1).astype(np.float32)


class _Mlp(nnx.Module):
  def __init__(self, dim, *, dtype, rngs):
    self.fc1 = nnx.Linear(dim, 4 * dim, dtype=dtype, rngs=rngs)
    self.fc2 = nnx.Linear(4 * dim, dim, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


def _attention(dim, num_heads, *, dtype, rngs):
  return nnx.MultiHeadAttention(
    num_heads=num_heads, in_features=dim, decode=False, dtype=dtype, rngs=rngs
  )


class EncoderLayer(nnx.Module):
  """t + MHSA(LN(t)), then + MLP(LN(t)) (pre-norm)."""

  def __init__(self, dim, num_heads, *, dtype, rngs):
    norm = functools.partial(nnx.LayerNorm, dim, dtype=dtype, rngs=rngs)
    self.norm1, self.norm2 = norm(), norm()
    self.attention = _attention(dim, num_heads, dtype=dtype, rngs=rngs)
    self.mlp = _Mlp(dim, dtype=dtype, rngs=rngs)

  def __call__(self, t):
    y = self.norm1(t)
    t = t + self.attention(y, y, deterministic=True)
    return t + self.mlp(self.norm2(t))


class LabelDecoderLayer(nnx.Module):
  """q + MHA(LN(q), LN(t)), then + MLP(LN(q)): each label query reads the
  tokens; queries do not attend to each other, so label k's
  representation depends on its own embedding only."""

  def __init__(self, dim, num_heads, *, dtype, rngs):
    norm = functools.partial(nnx.LayerNorm, dim, dtype=dtype, rngs=rngs)
    self.norm_query, self.norm_tokens, self.norm_mlp = norm(), norm(), norm()
    self.attention = _attention(dim, num_heads, dtype=dtype, rngs=rngs)
    self.mlp = _Mlp(dim, dtype=dtype, rngs=rngs)

  def __call__(self, q, t):
    tokens = self.norm_tokens(t)
    q = q + self.attention(self.norm_query(q), tokens, deterministic=True)
    return q + self.mlp(self.norm_mlp(q))


class SARLHead(nnx.Module):
  """(B, h, w, C) feature map -> (label representations (B, K, D),
  logits (B, K))."""

  def __init__(
    self,
    in_features: int,
    num_labels: int,
    *,
    dim: int = 256,
    num_heads: int = 8,
    encoder_layers: int = 1,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.dim = dim
    self.input_proj = nnx.Linear(in_features, dim, dtype=dtype, rngs=rngs)
    self.encoder = nnx.List(
      [
        EncoderLayer(dim, num_heads, dtype=dtype, rngs=rngs)
        for _ in range(encoder_layers)
      ]
    )
    self.label_embeddings = nnx.Param(
      nnx.initializers.normal(1.0)(rngs.params(), (num_labels, dim))
    )
    self.decoder = LabelDecoderLayer(dim, num_heads, dtype=dtype, rngs=rngs)
    self.label_weights = nnx.Param(
      nnx.initializers.normal(dim**-0.5)(rngs.params(), (num_labels, dim))
    )
    self.label_bias = nnx.Param(jnp.zeros((num_labels,)))
    self.dtype = dtype

  def __call__(self, feature_map) -> tuple[jax.Array, jax.Array]:
    b, h, w, c = feature_map.shape
    t = self.input_proj(feature_map.reshape(b, h * w, c))
    t = t + jnp.asarray(sine_position_code(h, w, self.dim), t.dtype)
    for layer in self.encoder:
      t = layer(t)
    q = jnp.broadcast_to(
      self.label_embeddings[...].astype(t.dtype),
      (b, *self.label_embeddings.shape),
    )
    r = self.decoder(q, t)
    logits = (
      jnp.einsum("bkd,kd->bk", r.astype(jnp.float32), self.label_weights[...])
      + self.label_bias[...]
    )
    return r, logits


class PrototypeEMA(nnx.Variable):
  """PSCL's category prototypes kept as an exponential moving average of
  the batch's activated representations (not a parameter: no gradient,
  no optimizer, no weight decay; saved with the model's state)."""


PROTOTYPE_KINDS = ("learnable", "ema")


class SADCLModel(nnx.Module):
  """A backbone's last feature map through the SARL head; `__call__`
  gives the K label logits, `label_outputs` the representations too.
  `prototypes` (K, D): PSCL's category prototypes, an `nnx.Param`
  ("learnable", trained through PSCL) or a `PrototypeEMA` ("ema", updated
  by the train step with `ema_prototypes`); the poster does not say which."""

  def __init__(
    self,
    backbone: nnx.Module,
    num_labels: int,
    *,
    prototypes: str = "learnable",
    rngs: nnx.Rngs,
    **head_options,
  ):
    """`head_options`: `SARLHead`'s (dim, num_heads, encoder_layers,
    dtype)."""
    if prototypes not in PROTOTYPE_KINDS:
      raise ValueError(
        f"prototypes = {prototypes!r}; expected one of {PROTOTYPE_KINDS}"
      )
    self.backbone = backbone
    self.sarl = SARLHead(
      backbone.feature_widths[-1], num_labels, rngs=rngs, **head_options
    )
    shape = (num_labels, self.sarl.dim)
    if prototypes == "learnable":
      self.prototypes = nnx.Param(
        nnx.initializers.normal(1.0)(rngs.params(), shape)
      )
    else:  # the first batch with label k sets its direction
      self.prototypes = PrototypeEMA(jnp.zeros(shape))
    self.num_labels = num_labels
    self.pixel_mean = backbone.pixel_mean
    self.pixel_std = backbone.pixel_std

  def label_outputs(self, x) -> dict[str, jax.Array]:
    """{"logits": (B, K), "representations": (B, K, D)}."""
    feature_map = self.backbone.forward_features(x)[1][-1]
    r, logits = self.sarl(feature_map)
    return {"logits": logits, "representations": r}

  def __call__(self, x):
    return self.label_outputs(x)["logits"]


def ema_prototypes(prototypes, representations, targets, momentum: float):
  """p_k ← m·p_k + (1 - m)·mean_{i: y_ik = 1} r_ik / ||r_ik|| for every label
  k present in the batch; the others unchanged (MoCo-style momentum
  update on unit vectors, the scale PSCL compares at). Pure, float32.

  prototypes (K, D); representations (B, K, D); targets (B, K) 0/1.
  """
  r = representations.astype(jnp.float32)
  z = r * jax.lax.rsqrt(jnp.maximum(jnp.sum(r * r, -1, keepdims=True), 1e-12))
  y = targets.astype(jnp.float32)
  count = y.sum(0)
  mean = jnp.einsum("bk,bkd->kd", y, z) / jnp.maximum(count, 1.0)[:, None]
  updated = momentum * prototypes + (1.0 - momentum) * mean
  return jnp.where((count > 0)[:, None], updated, prototypes)
