"""[SP]'s training losses: Gradient Label Softening (Algorithm 2, Eq. 5-9),
the Batch-level Contrastive Loss (Eq. 10-15), and the baselines of its
Tables 1-2 (label smoothing, the classic contrastive loss).

Pure functions of arrays: jittable, no Python branching on traced values,
inputs of any float dtype (bf16 included) computed in float32.

References:
  [SP]  C. Song, H. Wu, X. Ma, Y. Li. Semantic-embedded Similarity Prototype
        for Scene Recognition. Pattern Recognition, 2024. arXiv:2308.05896.
        Algorithm 2, Eq. 5-16.

Notation: C scene classes, B samples, S the (C, C) similarity prototype from
`scenejax.prototype` (symmetric, unit diagonal, entries in [0, 1]).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from scenejax.losses.common import _f32

BCL_REDUCTIONS = (
  "mean_inter",
  "nonzero_inter",
  "mean_inter_intra",
  "nonzero_inter_intra",
)
BCL_METRICS = ("cosine", "euclidean")
BCL_PAIRINGS = ("gather", "product")
# Floor on a prediction row's norm in the cosine similarity. Probability rows
# have norm >= 1/sqrt(C) (>= 0.05 for C <= 400), so this only keeps an
# all-zero row (cosine undefined) finite: it gets similarity 0, finite grads.
_COSINE_MIN_NORM = 1e-6


# --------------------------------------------------------------------------
# [SP] Algorithm 2: Gradient Label Softening.


def gls_label_matrix(
  similarity, epoch, num_soft_epochs: int = 20, final_confidence: float = 0.99
) -> jax.Array:
  """Soft-label matrix of Gradient Label Softening ([SP] Algorithm 2).

  Row c is the soft label of class c: it sums to 1 and its diagonal entry
  (the target confidence) is `value`, the same for every class.

    S_norm      = S ⊘ (S · E)                         (Eq. 5, rows sum to 1)
    value_start = max_c S_norm[c, c]                  (Eq. 8; = max(S_norm),
                                                       as S has unit diagonal)
    value       = value_start + (final - value_start) · epoch / STEP
                                                      (Algorithm 2, 0-based)
    S¹[c, c]    = value / (1 - value) · Σ_{i≠c} S[c, i]   (Eq. 7-8)
    S¹_norm     = S¹ ⊘ (S¹ · E)                        (Eq. 5 again)
    S¹_norm     = I  once epoch > STEP                 (hard labels)

  `epoch` is 0-based (the paper's epoch - 1) and may be a traced scalar, or
  fractional for a per-step schedule: under jit this compiles once for the
  whole run. At epoch == STEP the labels are still soft with confidence
  `final`; from the next epoch on they are one-hot.

  Rows versus columns: Eq. 7 sums the column Σ_{i≠c} S[i, c]; for the
  symmetric S of Eq. 2/4 (`scenejax.prototype` rejects asymmetric ones) that
  is the row sum used here. Eq. 9 then indexes the column S¹_norm[j, target],
  but S¹_norm is row-normalised and no longer symmetric, so its columns do not
  sum to 1; the soft label of class c is row c (what Algorithm 2's "# soft
  label" and Fig. 4 show), and that is what the train step feeds to
  `optax.softmax_cross_entropy` as ``matrix[labels]``.

  Edge cases: if value_start >= final the labels are hard from epoch 0, as
  Algorithm 2's `if value > 0.99` gives. That happens for C = 1 and also
  when any one class has no similarity to any other (its S_norm[c, c] = 1,
  so max(S_norm) = 1): the paper's max makes one isolated class switch GLS
  off for all. num_soft_epochs = 0 means hard labels throughout.

  Args:
    similarity: (C, C) similarity prototype S.
    epoch: scalar, 0-based training epoch (int, float or traced).
    num_soft_epochs: STEP, the number of epochs with soft labels (paper: 20).
    final_confidence: target confidence reached at epoch STEP (paper: 0.99).

  Returns:
    (C, C) float32 matrix; ``gls_label_matrix(...)[labels]`` gives the soft
    targets of a batch for `optax.softmax_cross_entropy` (Eq. 9).
  """
  if num_soft_epochs < 0:
    raise ValueError(f"num_soft_epochs must be >= 0, got {num_soft_epochs}")
  if not 0.0 < final_confidence < 1.0:
    raise ValueError(
      f"final_confidence must be in (0, 1), got {final_confidence}"
    )
  s = _f32(similarity)
  num_classes = s.shape[0]
  eye = jnp.eye(num_classes, dtype=bool)
  hard_labels = eye.astype(jnp.float32)
  if num_soft_epochs == 0:
    return hard_labels
  off_diagonal = jnp.where(eye, 0.0, s)
  off_sum = off_diagonal.sum(axis=1)  # Σ_{i≠c} S[c, i]
  value_start = jnp.max(jnp.diagonal(s) / s.sum(axis=1))  # Eq. 5 + Eq. 8
  t = _f32(epoch) / num_soft_epochs
  value = value_start + (final_confidence - value_start) * t
  # Clamped so value / (1 - value) stays finite in the branch not taken.
  value = jnp.clip(value, 0.0, final_confidence)
  s1 = off_diagonal + jnp.diag(value / (1.0 - value) * off_sum)  # Eq. 7-8
  row_sum = s1.sum(axis=1, keepdims=True)
  soft = jnp.where(
    row_sum > 0, s1 / jnp.where(row_sum > 0, row_sum, 1.0), hard_labels
  )  # Eq. 5
  hard = (t > 1.0) | (value_start >= final_confidence)
  return jnp.where(hard, hard_labels, soft)


# --------------------------------------------------------------------------
# [SP] Eq. 10-15: Batch-level Contrastive Loss.


def prediction_similarity(predictions, metric: str = "cosine") -> jax.Array:
  """p_matrix of [SP] §3.4: (B, B) similarity between prediction rows.

  cosine:    p_ij = p_i · p_j / (‖p_i‖ ‖p_j‖)
  euclidean: p_ij = exp(-‖p_i - p_j‖)   (the transform of Eq. 3-4)

  The euclidean form takes differences rather than |a|²+|b|²-2ab, so nearly
  identical rows do not lose their distance to cancellation, and uses
  optax.safe_norm, whose gradient at distance 0 (the diagonal, duplicate
  rows) is 0 rather than NaN.
  """
  if metric not in BCL_METRICS:
    raise ValueError(f"metric must be one of {BCL_METRICS}, got {metric!r}")
  p = _f32(predictions)
  if metric == "cosine":
    unit = p / optax.safe_norm(p, _COSINE_MIN_NORM, axis=-1, keepdims=True)
    # Clipped: fp32 rounding can give cos(p_i, p_i) = 1.0000001 > S[y, y] = 1,
    # a spurious positive entry that the "nonzero" reductions would count.
    return jnp.clip(unit @ unit.T, -1.0, 1.0)
  distance = optax.safe_norm(p[:, None, :] - p[None, :, :], 0.0, axis=-1)
  return jnp.exp(-distance)


def max_off_diagonal(similarity) -> jax.Array:
  """m_c = max_{k≠c} S[c, k], the intra-class threshold of [SP] Eq. 14.

  0 for C = 1 (no other class; S is non-negative).
  """
  s = _f32(similarity)
  return jnp.where(jnp.eye(s.shape[0], dtype=bool), 0.0, s).max(axis=1)


def _reduce(matrix, how: str):
  """[SP] §4.3.2: "mean" = over all B×B entries; "nonzero" = over the
  positive entries only (0 when there are none)."""
  if how == "mean":
    return matrix.mean()
  count = jnp.sum(matrix > 0)
  return matrix.sum() / jnp.maximum(count, 1)


def bcl_loss(
  predictions,
  labels,
  similarity,
  *,
  metric: str = "cosine",
  reduction: str = "mean_inter",
  pairing: str = "gather",
) -> jax.Array:
  """Batch-level Contrastive Loss ([SP] Eq. 10-15).

    L_inter_matrix = p_matrix - S_batch                       (Eq. 12)
    L_intra_matrix = S''_batch - p_matrix                     (Eq. 15)
    S''[c, c]      = max_{k≠c} S[c, k],  0 off the diagonal   (Eq. 14)

  reduced as in §4.3.2:
    mean_inter          = mean(max(L_inter, 0))                         (Eq. 13)
    nonzero_inter       = Σ max(L_inter, 0) / #{entries > 0}
    mean_inter_intra    = mean(max(L_inter, 0) + max(L_intra, 0))
    nonzero_inter_intra = Σ (…) / #{entries of (…) > 0}
  "mean" averages over all B×B entries, diagonal included, as Eq. 13 reads;
  "nonzero" is 0 when no entry is positive. For "nonzero_inter_intra" the
  paper does not say whether each matrix is averaged over its own positive
  entries; here the sum max(L_inter, 0) + max(L_intra, 0) is averaged over
  its positive entries (one count). The per-matrix reading gives values
  1.4-2x larger on random batches.

  p: Eq. 16 writes the network's output p as the logits, but Eq. 10 compares
  cos(p_i, p_j) with S in [0, 1], and the cosine of two logit vectors can
  be negative; the train step passes softmax probabilities, whose cosine
  lies in [0, 1] like S.

  Pairing: how the (B, B) thresholds come from S and the labels y.
    "gather"  (default): S_batch[i, j] = S[y_i, y_j], S''_batch[i, j] =
              S''[y_i, y_j] - the per-pair thresholds of Eq. 10 and Eq. 14.
    "product": S_batch = S[y] · S[y]ᵀ, S''_batch = S''[y] · S''[y]ᵀ - the
              literal Eq. 11.
  Gather is the default because the literal product is not a similarity:
  with the authors' own SUN397 cosine prototype, (S·Sᵀ) has mean
  off-diagonal 65.5 while p_matrix ≤ 1, so L_inter is identically 0 and BCL
  does nothing; the gathered thresholds S[y_i, y_j] average 0.40 there
  (measured in tests/test_losses.py on ../shared/reference).

  Args:
    predictions: (B, K) network outputs; the train step passes softmax
      probabilities, the paper's p.
    labels: (B,) integer scene labels.
    similarity: (C, C) prototype S.
    metric: "cosine" or "euclidean", for p_matrix (see
      `prediction_similarity`).
    reduction: one of BCL_REDUCTIONS.
    pairing: "gather" or "product".

  Returns:
    scalar float32 loss.
  """
  if reduction not in BCL_REDUCTIONS:
    raise ValueError(
      f"reduction must be one of {BCL_REDUCTIONS}, got {reduction!r}"
    )
  if pairing not in BCL_PAIRINGS:
    raise ValueError(f"pairing must be one of {BCL_PAIRINGS}, got {pairing!r}")
  s = _f32(similarity)
  labels = jnp.asarray(labels)
  p_matrix = prediction_similarity(predictions, metric)
  intra_threshold = max_off_diagonal(s)
  if pairing == "gather":
    s_batch = s[labels[:, None], labels[None, :]]
    same_class = labels[:, None] == labels[None, :]
    s2_batch = jnp.where(same_class, intra_threshold[labels][:, None], 0.0)
  else:
    s_rows = s[labels]
    s_batch = s_rows @ s_rows.T  # Eq. 11
    s2_rows = jnp.diag(intra_threshold)[labels]  # S''[y], Eq. 14
    s2_batch = s2_rows @ s2_rows.T
  loss_matrix = jax.nn.relu(p_matrix - s_batch)
  if reduction.endswith("inter_intra"):
    loss_matrix = loss_matrix + jax.nn.relu(s2_batch - p_matrix)
  return _reduce(loss_matrix, reduction.split("_", 1)[0])


def contrastive_loss(
  predictions, labels, *, metric: str = "cosine"
) -> jax.Array:
  """Classic contrastive loss CL, the baseline of [SP] Table 2.

  Eq. 10 with the fixed expectations of CL: similarity 1 for a same-class
  pair, 0 otherwise,

    L_ij = (1 - γ_ij) · max(0, p_ij - 0) + γ_ij · max(0, 1 - p_ij),

  γ_ij = 1 if y_i == y_j; mean over all B×B pairs (diagonal included).
  """
  p_matrix = prediction_similarity(predictions, metric)
  labels = jnp.asarray(labels)
  same_class = labels[:, None] == labels[None, :]
  return jnp.where(
    same_class, jax.nn.relu(1.0 - p_matrix), jax.nn.relu(p_matrix)
  ).mean()


def label_smoothing_targets(
  labels, num_classes: int, alpha: float = 0.1
) -> jax.Array:
  """LSR targets (Szegedy et al.), the baseline of [SP] Table 1.

  (1 - α) · onehot(y) + α / C, via `optax.smooth_labels`.
  """
  return optax.smooth_labels(jax.nn.one_hot(labels, num_classes), alpha)
