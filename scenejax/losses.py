"""Loss kernels: GLS labels, BCL, pairwise consistency, the baselines, and
the segmentation losses of [SEG] (weighted focal loss, pixel-embedding
contrastive loss).

Pure functions of arrays: jittable, no Python branching on traced values,
inputs of any float dtype (bf16 included) computed in float32.

References:
  [SP]  C. Song, H. Wu, X. Ma, Y. Li. Semantic-embedded Similarity Prototype
        for Scene Recognition. Pattern Recognition, 2024. arXiv:2308.05896.
        Algorithm 2, Eq. 5-16.
  [PCL] G. Chen, X. Song, B. Wang, S. Jiang. See More for Scene: Pairwise
        Consistency Learning for Scene Classification. NeurIPS 2021. Eq. 3.
  [SEG] X. Jia, Y. Zhang, X. Chang, J. Sun. Scene recognition based on deep
        metric learning and semantic segmentation. Chinese Journal of Liquid
        Crystals and Displays 40(5), 740,
        2025 (only the abstract is public: an ASPP segmenter trained
        with a weighted focal loss plus a pixel-embedding contrastive loss).
  [FL]  T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollár. Focal Loss for
        Dense Object Detection. ICCV 2017. doi:10.1109/ICCV.2017.324. Eq. 5.
  [HCL] R. Hadsell, S. Chopra, Y. LeCun. Dimensionality Reduction by
        Learning an Invariant Mapping. CVPR 2006.
        doi:10.1109/CVPR.2006.100. Eq. 4.
  [SupCon] P. Khosla et al. Supervised Contrastive Learning. NeurIPS 2020.
        arXiv:2004.11362. Eq. 2 (L^sup_out).
  [ASL] T. Ridnik et al. Asymmetric Loss For Multi-Label Classification.
        ICCV 2021. doi:10.1109/ICCV48922.2021.00015. Eq. 4 (L+, L-, with the
        probability margin of Eq. 3).
  [SADCL] L. Ma, D. Sun, L. Wang, H. Zhao, B. Luo. Semantic-Aware Dual
        Contrastive Learning for Multi-label Image Classification. ECAI
        2023 (only the poster is public: sample-to-sample and
        prototype-to-sample contrastive losses over label-level
        representations; the equations below are our reading).

Notation: C scene classes, B samples, S the (C, C) similarity prototype from
`scenejax.prototype` (symmetric, unit diagonal, entries in [0, 1]).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

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


def _f32(x):
  return jnp.asarray(x).astype(jnp.float32)


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


# --------------------------------------------------------------------------
# [PCL] Eq. 3: pairwise consistency.


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


# --------------------------------------------------------------------------
# [SEG]: segmentation losses. Label maps hold ids 1..K (channel k of the
# logits is id k + 1); 0 = unlabeled is ignored, as is any id outside 1..K
# (e.g. padding), so a jitted step never indexes out of range.

PIXEL_CONTRASTIVE_FORMS = ("margin", "supcon")
# Added under the square root of a squared distance: d = sqrt(d² + ε) keeps
# the gradient finite when two embeddings coincide (error <= 1e-3 at d = 0,
# < 1e-6 for d >= 0.5).
_DISTANCE_EPS = 1e-6


def _labelled(labels, num_classes: int, ignore_label: int):
  labels = jnp.asarray(labels)
  valid = (labels != ignore_label) & (labels >= 1) & (labels <= num_classes)
  return valid, jnp.clip(labels - 1, 0, num_classes - 1)


def weighted_focal_loss(
  logits, labels, class_weights=None, gamma: float = 2.0, ignore_label: int = 0
) -> jax.Array:
  """Class-weighted softmax focal loss ([FL] Eq. 5, α_t = w[y]), [SEG].

    FL = (1 / |V|) Σ_{n ∈ V} -w[y_n] · (1 - p_{n,y_n})^γ · log p_{n,y_n}

  V: the pixels whose label is an id in 1..K (not `ignore_label`); p =
  softmax(logits) over the K channels, channel y - 1 for id y. The mean is
  over pixels, not over Σ w (PyTorch's weighted cross-entropy divides by
  Σ w[y_n]): so the weights change the balance between classes, not the
  loss's scale. γ = 0 and w = 1 give the plain cross-entropy. No labelled
  pixel gives 0.

  Args:
    logits: (..., K) scores, any float dtype (computed in float32).
    labels: (...) integer ids, 0 = unlabeled.
    class_weights: (K,) w per channel, or None for w = 1.
    gamma: focusing parameter γ >= 0 ([FL] uses 2).
  """
  logits = _f32(logits)
  num_classes = logits.shape[-1]
  valid, index = _labelled(labels, num_classes, ignore_label)
  log_p = jnp.take_along_axis(
    jax.nn.log_softmax(logits), index[..., None], axis=-1
  )[..., 0]
  per_pixel = -log_p
  if gamma:
    # 1 - p as -expm1(log p): exact for confident pixels (p near 1). At
    # p = 1 the factor is 0; the power's gradient there (inf for γ < 1) is
    # kept out by taking it of 1 instead.
    q = -jnp.expm1(log_p)
    positive = q > 0
    factor = jnp.where(positive, jnp.where(positive, q, 1.0) ** gamma, 0.0)
    per_pixel = per_pixel * factor
  if class_weights is not None:
    per_pixel = per_pixel * _f32(class_weights)[index]
  total = jnp.sum(jnp.where(valid, per_pixel, 0.0))
  return total / jnp.maximum(jnp.sum(valid), 1)


def nearest_labels(labels, shape: tuple[int, int]) -> jax.Array:
  """(B, H, W) label maps -> (B, h, w) by nearest neighbour (PIL's rule:
  row floor((i + 0.5) · H / h)): the labels of an embedding map at the
  decoder's stride. Never blends ids, as a resize of the logits would."""
  labels = jnp.asarray(labels)
  height, width = labels.shape[1:3]
  rows = (np.arange(shape[0]) * 2 + 1) * height // (2 * shape[0])
  cols = (np.arange(shape[1]) * 2 + 1) * width // (2 * shape[1])
  return labels[:, rows][:, :, cols]


def sample_pixels(
  labels,
  key,
  *,
  num_samples: int,
  per_class: int,
  num_classes: int,
  ignore_label: int = 0,
) -> tuple[jax.Array, jax.Array]:
  """Class-balanced sample of labelled pixels, per image, [SEG].

  Each image's labelled pixels get a random rank within their class; the
  sample is the `num_samples` pixels of lowest (rank + u), u ~ U[0, 1) the
  same draw that ordered the class: every class present gives one pixel
  before any gives two, and no class more than `per_class`. So a class's
  count differs from another's by at most one unless it has run out of
  pixels (or hit `per_class`). Deterministic given `key`.

  Args:
    labels: (B, P) integer ids per pixel (a flattened label map).
    key: a PRNG key; image b uses `jax.random.fold_in(key, b)`.
  Returns:
    (indices (B, num_samples) int32 into P, valid (B, num_samples) bool):
    slots past the pixels available are valid = False.
  """
  labels = jnp.asarray(labels)
  size = labels.shape[1]
  if num_samples > size:
    raise ValueError(f"num_samples = {num_samples} > {size} pixels per image")
  positions = jnp.arange(size)

  def one(labels, key):
    valid, index = _labelled(labels, num_classes, ignore_label)
    index = jnp.where(valid, index, num_classes)  # unlabeled sort last
    u = jax.random.uniform(key, (size,))
    order = jnp.lexsort((u, index))  # by class, then by u
    sorted_class = index[order]
    first = jnp.searchsorted(sorted_class, sorted_class, side="left")
    rank = jnp.zeros(size, jnp.int32).at[order].set(positions - first)
    priority = jnp.where(valid & (rank < per_class), rank + u, jnp.inf)
    neg_top, chosen = jax.lax.top_k(-priority, num_samples)
    return chosen.astype(jnp.int32), jnp.isfinite(neg_top)

  keys = jax.vmap(lambda b: jax.random.fold_in(key, b))(
    jnp.arange(labels.shape[0])
  )
  return jax.vmap(one)(labels, keys)


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


def pairwise_contrastive_loss(
  embeddings,
  labels,
  valid,
  *,
  form: str = "margin",
  margin: float = 1.0,
  temperature: float = 0.1,
) -> jax.Array:
  """Contrastive loss over the pairs of sampled pixels of each image, [SEG].

  "margin" ([HCL] Eq. 4, without its 1/2 factors, which λ absorbs):

    L = (1 / |Π|) Σ_{(i, j) ∈ Π} [y_i = y_j] d_ij² + [y_i ≠ y_j] max(0, m - d_ij)²

  Π: the ordered pairs i ≠ j of valid pixels of the same image, pooled over
  the batch; d_ij = ||e_i - e_j||₂, Euclidean on the raw embeddings (the
  abstract's "far apart in Euclidean distance").

  "supcon" ([SupCon] Eq. 2 on z = e / ||e||, temperature τ):

    L = (1 / |A|) Σ_{i ∈ A} -(1 / |P(i)|) Σ_{p ∈ P(i)}
          log [ exp(z_i·z_p / τ) / Σ_{a ≠ i} exp(z_i·z_a / τ) ]

  a, p over the valid pixels of i's image; P(i): those of i's class; A: the
  valid anchors with |P(i)| >= 1. Either form is 0 when nothing pairs up.

  Args:
    embeddings: (B, N, D) sampled pixel embeddings.
    labels: (B, N) their ids.
    valid: (B, N) bool, False on empty sample slots.
  Memory is O(B·N²), independent of the image size.
  """
  if form not in PIXEL_CONTRASTIVE_FORMS:
    raise ValueError(
      f"form = {form!r}; expected one of {PIXEL_CONTRASTIVE_FORMS}"
    )
  e = _f32(embeddings)
  labels = jnp.asarray(labels)
  n = e.shape[1]
  pair = valid[:, :, None] & valid[:, None, :] & ~jnp.eye(n, dtype=bool)
  same = labels[:, :, None] == labels[:, None, :]
  if form == "margin":
    sq = jnp.sum(e * e, axis=-1)
    d2 = jnp.maximum(
      sq[:, :, None] + sq[:, None, :] - 2 * jnp.einsum("bnd,bmd->bnm", e, e),
      0.0,
    )
    hinge = jax.nn.relu(margin - jnp.sqrt(d2 + _DISTANCE_EPS))
    per_pair = jnp.where(same, d2, hinge**2)
    return jnp.sum(jnp.where(pair, per_pair, 0.0)) / jnp.maximum(
      jnp.sum(pair), 1
    )
  z = _unit(e)
  logits = jnp.einsum("bnd,bmd->bnm", z, z) / temperature
  log_prob = logits - jax.nn.logsumexp(
    jnp.where(pair, logits, -jnp.inf), axis=-1, keepdims=True
  )
  positive = pair & same
  return _anchor_mean(log_prob, positive)


def pixel_contrastive_loss(
  embeddings,
  labels,
  key,
  *,
  num_classes: int,
  num_samples: int = 1024,
  per_class: int = 64,
  form: str = "margin",
  margin: float = 1.0,
  temperature: float = 0.1,
  ignore_label: int = 0,
) -> jax.Array:
  """The pixel-embedding contrastive loss of [SEG]: `sample_pixels` on each
  image's labels at the embedding's resolution (`nearest_labels`), then
  `pairwise_contrastive_loss` on the sampled embeddings.

  Args:
    embeddings: (B, h, w, D) pixel embeddings (the decoder's stride).
    labels: (B, H, W) label maps at any resolution (ids 1..K, 0 ignored).
    key: PRNG key of the step.
  Memory: O(B·h·w) for the sampling, O(B·num_samples²) for the pairs; no
  (h·w)² matrix.
  """
  b, h, w, d = embeddings.shape
  labels = nearest_labels(labels, (h, w)).reshape(b, h * w)
  indices, valid = sample_pixels(
    labels,
    key,
    num_samples=min(num_samples, h * w),
    per_class=per_class,
    num_classes=num_classes,
    ignore_label=ignore_label,
  )
  sampled = jnp.take_along_axis(
    embeddings.reshape(b, h * w, d), indices[..., None], axis=1
  )
  return pairwise_contrastive_loss(
    sampled,
    jnp.take_along_axis(labels, indices, axis=1),
    valid,
    form=form,
    margin=margin,
    temperature=temperature,
  )


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
