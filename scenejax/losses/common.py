"""Helpers shared by the loss families: float32 promotion, unit vectors and
the [SupCon] anchor average.

References:
  [SupCon] P. Khosla et al. Supervised Contrastive Learning. NeurIPS 2020.
        arXiv:2004.11362. Eq. 2 (L^sup_out).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _f32(x):
  return jnp.asarray(x).astype(jnp.float32)


def _unit(x) -> jax.Array:
  """x / ||x|| on the last axis, in float32. rsqrt of the clamped squared
  norm: a zero vector gets 0 and a finite gradient (the norm's own
  gradient is NaN at 0)."""
  x = _f32(x)
  return x * jax.lax.rsqrt(
    jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12)
  )


def _anchor_mean(log_prob, positive) -> jax.Array:
  """(1 / |A'|) Σ_{a ∈ A'} -(1 / |P(a)|) Σ_{p ∈ P(a)} log_prob[a, p]: the
  [SupCon] average, anchors on every axis but the last, P(a) where
  `positive`, A' the anchors with a positive; 0 when there is none."""
  count = jnp.sum(positive, axis=-1)
  per_anchor = -jnp.sum(jnp.where(positive, log_prob, 0.0), axis=-1)
  per_anchor = per_anchor / jnp.maximum(count, 1)
  anchors = count > 0
  return jnp.sum(jnp.where(anchors, per_anchor, 0.0)) / jnp.maximum(
    jnp.sum(anchors), 1
  )
