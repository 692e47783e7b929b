"""[PCL]'s pairwise consistency loss.

Pure functions of arrays: jittable, inputs of any float dtype computed in
float32.

References:
  [PCL] G. Chen, X. Song, B. Wang, S. Jiang. See More for Scene: Pairwise
        Consistency Learning for Scene Classification. NeurIPS 2021. Eq. 3.
"""

from __future__ import annotations

import jax
import optax

from scenejax.losses.common import _f32


def kl_consistency(logits, mod_logits) -> jax.Array:
  """Instance-level consistency term l_kl of [PCL] Eq. 3, batch mean.

  KL(q ‖ p) = Σ_k q_k log(q_k / p_k), p = softmax(logits) (original image),
  q = softmax(mod_logits) (erased image).

  Eq. 3 prints the term as Σ_k -q_k log(q_k / p_k) = -KL(q ‖ p); added to the
  loss with β > 0 that would reward the two predictions for *disagreeing*,
  the opposite of the consistency the paper describes. We implement the
  sign-corrected KL(q ‖ p) ≥ 0. Gradients flow into both predictions (the
  paper stops none). Computed from log-probabilities
  (`optax.losses.kl_divergence_with_log_targets`), so q_k = 0 is exact.
  """
  log_p = jax.nn.log_softmax(_f32(logits))
  log_q = jax.nn.log_softmax(_f32(mod_logits))
  return optax.losses.kl_divergence_with_log_targets(log_p, log_q).mean()


def pcl_loss(
  main_logits,
  side_logits,
  mod_logits,
  targets,
  alpha: float = 1.0,
  beta: float = 2.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Pairwise consistency learning loss, [PCL] Eq. 3.

    L = l_main + l_side + α · l_mod + β · l_kl
      = CE(g, p) + CE(g, r) + α · CE(g, q) + β · KL(q ‖ p)

  p, r, q: softmax of the main, CAM-module (side) and modified-image (mod)
  logits; g: targets, one-hot or soft (so GLS soft labels can be fed in).
  Each term is a batch mean; α = 1, β = 2 are the paper's values.

  Returns:
    (total, {"main", "side", "mod", "kl"}) scalars.
  """
  targets = _f32(targets)

  def ce(logits):
    return optax.softmax_cross_entropy(_f32(logits), targets).mean()

  parts = dict(
    main=ce(main_logits),
    side=ce(side_logits),
    mod=ce(mod_logits),
    kl=kl_consistency(main_logits, mod_logits),
  )
  total = (
    parts["main"] + parts["side"] + alpha * parts["mod"] + beta * parts["kl"]
  )
  return total, parts
