"""Multi-label losses: [ASL] and [SADCL]'s sample-to-sample (SSCL) and
prototype-to-sample (PSCL) contrastive losses over label-level
representations.

Pure functions of arrays: jittable, inputs of any float dtype computed in
float32.

References:
  [ASL] T. Ridnik et al. Asymmetric Loss For Multi-Label Classification.
        ICCV 2021. doi:10.1109/ICCV48922.2021.00015. Eq. 4 (L+, L-, with the
        probability margin of Eq. 3).
  [SADCL] L. Ma, D. Sun, L. Wang, H. Zhao, B. Luo. Semantic-Aware Dual
        Contrastive Learning for Multi-label Image Classification. ECAI
        2023 (only the poster is public: sample-to-sample and
        prototype-to-sample contrastive losses over label-level
        representations; the equations below are our reading).
  [SupCon] P. Khosla et al. Supervised Contrastive Learning. NeurIPS 2020.
        arXiv:2004.11362. Eq. 2 (L^sup_out).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from scenejax.losses.common import _anchor_mean, _f32, _unit

PSCL_UNACTIVATED = ("negatives", "ignore")


def label_contrastive_loss(
  representations, targets, *, temperature: float = 0.1
) -> jax.Array:
  """SSCL, the sample-to-sample contrastive loss of [SADCL]: [SupCon]
  Eq. 2 over the activated label-level representations of the batch.

  With z_{i,k} = r_{i,k} / ||r_{i,k}|| and A = {(i, k) : y_{i,k} = 1}:

    L = (1 / |A'|) Σ_{a ∈ A'} -(1 / |P(a)|) Σ_{p ∈ P(a)}
          log [ exp(z_a·z_p / τ) / Σ_{b ∈ A, b ≠ a} exp(z_a·z_b / τ) ]

  P((i, k)) = {(j, k) ∈ A : j ≠ i}: the same label in the other images
  (positives across images, [SADCL]'s intra-category relation); A': the
  anchors with |P(a)| >= 1. 0 when no label occurs twice.

  Args:
    representations: (B, K, D) label-level representations.
    targets: (B, K) 0/1 label presence.
  Memory O((B·K)²): the global batch's label slots, as BCL sees the
  global batch.
  """
  b, k, d = representations.shape
  z = _unit(representations).reshape(b * k, d)
  active = jnp.asarray(targets).reshape(b * k) > 0
  image = jnp.repeat(jnp.arange(b), k)
  label = jnp.tile(jnp.arange(k), b)
  pair = active[:, None] & active[None, :] & ~jnp.eye(b * k, dtype=bool)
  positive = pair & (label[:, None] == label[None, :])
  positive &= image[:, None] != image[None, :]
  logits = z @ z.T / temperature
  log_prob = logits - jax.nn.logsumexp(
    jnp.where(pair, logits, -jnp.inf), axis=-1, keepdims=True
  )
  return _anchor_mean(log_prob, positive)


def prototype_contrastive_loss(
  representations,
  targets,
  prototypes,
  *,
  temperature: float = 0.1,
  unactivated: str = "negatives",
) -> jax.Array:
  """PSCL, the prototype-to-sample contrastive loss of [SADCL], our
  reading: each category prototype is an anchor, its positives the
  activated representations of its category in the batch, and the
  unactivated ones (label absent) among its negatives, which is how the
  poster says PSCL "exploits the unactivated label-level representations".

  With z = r / ||r||, c_k = p_k / ||p_k||, A = {(i, k) : y_{i,k} = 1},
  N_k the negatives of prototype k:

    L = (1 / |K'|) Σ_{k ∈ K'} -(1 / |A_k|) Σ_{(i, k) ∈ A_k}
          log [ exp(c_k·z_{i,k} / τ) /
                ( exp(c_k·z_{i,k} / τ) + Σ_{n ∈ N_k} exp(c_k·z_n / τ) ) ]

  A_k = {(i, k) ∈ A}, K' = {k : |A_k| >= 1};
  unactivated = "negatives": N_k = A − A_k (the other categories'
  activated representations) ∪ {(i, k) : y_{i,k} = 0} (its own category's
  unactivated ones); "ignore": N_k = A − A_k only.

  Args:
    representations: (B, K, D); targets: (B, K) 0/1;
    prototypes: (K, D), learnable or an EMA (the caller's choice); their
      gradient flows through this loss.
  """
  if unactivated not in PSCL_UNACTIVATED:
    raise ValueError(
      f"unactivated = {unactivated!r}; expected one of {PSCL_UNACTIVATED}"
    )
  b, k, d = representations.shape
  z = _unit(representations).reshape(b * k, d)
  c = _unit(prototypes)
  active = jnp.asarray(targets).reshape(b * k) > 0
  label = jnp.tile(jnp.arange(k), b)
  logits = c @ z.T / temperature  # (K, B·K): prototype k vs every slot
  own = label[None, :] == jnp.arange(k)[:, None]
  positive = own & active[None, :]
  negative = ~own & active[None, :]
  if unactivated == "negatives":
    negative |= own & ~active[None, :]
  neg_lse = jax.nn.logsumexp(
    jnp.where(negative, logits, -jnp.inf), axis=-1, keepdims=True
  )
  # log [e^{s_p} / (e^{s_p} + Σ_n e^{s_n})] = s_p - logaddexp(s_p, lse_n)
  log_prob = logits - jnp.logaddexp(logits, neg_lse)
  return _anchor_mean(log_prob, positive)


def asymmetric_loss(
  logits,
  targets,
  *,
  gamma_positive: float = 0.0,
  gamma_negative: float = 4.0,
  margin: float = 0.05,
) -> jax.Array:
  """[ASL] Eq. 4: with p = σ(s) and the shifted p_m = max(p - m, 0),

    L = (1 / B) Σ_b Σ_k -[ y (1 - p)^γ+ log p + (1 - y) p_m^γ- log(1 - p_m) ]

  summed over the K labels and averaged over the batch, as ASL's code sums
  (the per-image scale of BCE summed over labels). γ+ = γ- = m = 0 is that
  binary cross-entropy. Defaults: the paper's (0, 4, 0.05).
  """
  x = _f32(logits)
  y = _f32(targets)
  p = jax.nn.sigmoid(x)
  positive = (1 - p) ** gamma_positive * jax.nn.log_sigmoid(x)
  if margin:
    p_m = jnp.maximum(p - margin, 0.0)
    # log(1 - p_m) = log(min(1 - p + m, 1)); clipped away from log 0.
    log_negative = jnp.log(jnp.clip(1 - p_m, 1e-8, 1.0))
  else:
    p_m, log_negative = p, jax.nn.log_sigmoid(-x)
  negative = p_m**gamma_negative * log_negative
  return -jnp.mean(jnp.sum(y * positive + (1 - y) * negative, axis=-1))
