"""The segmentation losses of [SEG]: the weighted focal loss and the
pixel-embedding contrastive loss (margin or SupCon form), with the pixel
sampling they use.

Pure functions of arrays: jittable, no Python branching on traced values,
inputs of any float dtype computed in float32.

References:
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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from scenejax.losses.common import _anchor_mean, _f32, _unit

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
