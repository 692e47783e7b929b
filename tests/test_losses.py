"""Loss kernels against the independent float64 reference (tests/reference.py)."""

import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference
from conftest import PROTOTYPES
from hypothesis import given
from hypothesis import strategies as st

from scenejax import losses
from scenejax.tasks import classification

RTOL, ATOL = 2e-5, 2e-6  # float32 kernels vs float64 reference


def random_similarity(rng, num):
  """A valid prototype: symmetric, unit diagonal, entries in [0, 1]."""
  a = rng.uniform(0.0, 1.0, (num, num))
  s = (a + a.T) / 2
  np.fill_diagonal(s, 1.0)
  return s


def random_batch(rng, batch, num, duplicates=False):
  logits = rng.normal(0, 2, (batch, num))
  if duplicates and batch > 1:
    logits[1] = logits[0]
  return reference.softmax(logits), rng.integers(0, num, batch)


def published():
  return sorted(glob.glob(os.path.join(PROTOTYPES, "*.npz")))


def load_published(path):
  return np.load(path, allow_pickle=False)["similarity"]


# --------------------------------------------------------------------------
# GLS


@given(
  seed=st.integers(0, 2**31),
  num=st.integers(1, 12),
  step=st.integers(1, 25),
  final=st.sampled_from([0.9, 0.99, 0.999]),
)
def test_gls_matches_algorithm2(seed, num, step, final):
  rng = np.random.default_rng(seed)
  s = random_similarity(rng, num)
  for epoch in sorted({0, 1, step // 2, step - 1, step, step + 1, step + 5}):
    if epoch < 0:
      continue
    ours = np.asarray(losses.gls_label_matrix(s, epoch, step, final))
    if reference.value_start(s) >= final:
      ref = np.eye(num)  # Algorithm 2's `value > final` from epoch 1 on
    else:
      ref = reference.algorithm2_gls(s, epoch + 1, step, final)
    np.testing.assert_allclose(
      ours, ref, rtol=RTOL, atol=ATOL, err_msg=f"epoch {epoch}"
    )


@pytest.mark.parametrize("path", published(), ids=os.path.basename)
def test_gls_on_published_prototypes(path, shared):
  del shared
  s = load_published(path)
  vs = reference.value_start(s)
  label0 = np.asarray(losses.gls_label_matrix(s, 0))
  # Epoch 1 of the paper: every class's target confidence is value_start.
  np.testing.assert_allclose(np.diag(label0), vs, rtol=RTOL)
  np.testing.assert_allclose(label0.sum(axis=1), 1.0, rtol=RTOL)
  for epoch in (0, 7, 19, 20, 21, 60):
    np.testing.assert_allclose(
      np.asarray(losses.gls_label_matrix(s, epoch)),
      reference.algorithm2_gls(s, epoch + 1),
      rtol=RTOL,
      atol=ATOL,
      err_msg=f"{os.path.basename(path)} epoch {epoch}",
    )


def test_published_value_starts(shared):
  """value_start of the 8 published matrices, from Eq. 5 and Eq. 8.

  Independent check of the figures quoted in the README: in float64 from the
  files themselves, compared with the kernel's epoch-0 diagonal.
  """
  del shared
  got = {
    os.path.basename(p): float(
      losses.gls_label_matrix(load_published(p), 0)[0, 0]
    )
    for p in published()
  }
  assert len(got) == 8
  for p in published():
    assert got[os.path.basename(p)] == pytest.approx(
      reference.value_start(load_published(p)), rel=1e-5
    )
  # The finer the class structure, the softer the first labels.
  assert (
    got["SUN397_SP_cosine.npz"]
    < got["MIT67_SP_cosine.npz"]
    < got["Places_14_SP_cosine.npz"]
    < got["Places_7_SP_cosine.npz"]
  )


def test_gls_traced_epoch_compiles_once():
  s = random_similarity(np.random.default_rng(0), 7)
  fn = jax.jit(losses.gls_label_matrix, static_argnums=(2, 3))
  outs = [fn(s, jnp.float32(e), 20, 0.99) for e in range(30)]
  assert fn._cache_size() == 1
  assert float(outs[5][0, 0]) < float(outs[15][0, 0]) < 1.0
  np.testing.assert_array_equal(np.asarray(outs[25]), np.eye(7))


def test_gls_edge_cases():
  # No soft epochs: hard labels throughout.
  s = random_similarity(np.random.default_rng(1), 4)
  np.testing.assert_array_equal(losses.gls_label_matrix(s, 0, 0), np.eye(4))
  # One class: hard (value_start = 1 >= final).
  np.testing.assert_array_equal(
    losses.gls_label_matrix(np.ones((1, 1)), 0), np.ones((1, 1))
  )
  # A class similar to nothing has S_norm[c, c] = 1, so value_start =
  # max(S_norm) = 1 and Algorithm 2 gives hard labels for every class.
  s = np.array([[1, 0, 0], [0, 1, 0.5], [0, 0.5, 1]])
  np.testing.assert_array_equal(losses.gls_label_matrix(s, 0), np.eye(3))
  with pytest.raises(ValueError, match="final_confidence"):
    losses.gls_label_matrix(s, 0, 20, 1.0)
  with pytest.raises(ValueError, match="num_soft_epochs"):
    losses.gls_label_matrix(s, 0, -1)


@given(
  seed=st.integers(0, 2**31),
  num=st.integers(2, 9),
  batch=st.integers(1, 10),
  epoch=st.integers(0, 22),
)
def test_gls_cross_entropy_is_eq9(seed, num, batch, epoch):
  """The train step's GLS term (optax CE on matrix[labels]) equals Eq. 9."""
  rng = np.random.default_rng(seed)
  s = random_similarity(rng, num)
  logits = rng.normal(0, 3, (batch, num))
  labels = rng.integers(0, num, batch)
  cfg = classification.LossConfig.with_defaults(
    labels="gls", num_soft_epochs=20, bcl_weight=0.0
  )
  ours = float(
    classification.loss_terms(
      jnp.asarray(logits, jnp.float32),
      labels,
      jnp.asarray(s, jnp.float32),
      epoch,
      cfg,
    )["ce"]
  )
  ref = reference.eq9_cross_entropy(
    logits, labels, reference.algorithm2_gls(s, epoch + 1)
  )
  assert ours == pytest.approx(ref, rel=1e-4, abs=1e-5)


# --------------------------------------------------------------------------
# BCL


@given(
  seed=st.integers(0, 2**31),
  num=st.integers(1, 8),
  batch=st.integers(1, 10),
  duplicates=st.booleans(),
  metric=st.sampled_from(losses.BCL_METRICS),
  reduction=st.sampled_from(losses.BCL_REDUCTIONS),
  pairing=st.sampled_from(losses.BCL_PAIRINGS),
)
def test_bcl_matches_reference(
  seed, num, batch, duplicates, metric, reduction, pairing
):
  rng = np.random.default_rng(seed)
  s = random_similarity(rng, num)
  p, y = random_batch(rng, batch, num, duplicates)
  ours = float(
    losses.bcl_loss(
      p, y, s, metric=metric, reduction=reduction, pairing=pairing
    )
  )
  ref = reference.bcl(p, y, s, metric, reduction, pairing)
  assert ours == pytest.approx(ref, rel=1e-4, abs=1e-5)


def test_bcl_hand_computed():
  """Two samples of different classes, one pair entry worked by hand."""
  s = np.array([[1.0, 0.3], [0.3, 1.0]])
  p = np.array([[0.6, 0.8], [0.8, 0.6]])  # unit rows: cos = 0.96
  y = np.array([0, 1])
  # inter: off-diagonal 0.96 - 0.3 = 0.66 twice, diagonal 1 - 1 = 0.
  assert float(losses.bcl_loss(p, y, s)) == pytest.approx(2 * 0.66 / 4)
  assert float(
    losses.bcl_loss(p, y, s, reduction="nonzero_inter")
  ) == pytest.approx(0.66)
  # Same class: intra threshold max_{k≠0} S[0, k] = 0.3 < 0.96, no loss.
  assert (
    float(
      losses.bcl_loss(p, np.array([0, 0]), s, reduction="nonzero_inter_intra")
    )
    == 0.0
  )


def test_bcl_product_pairing_is_inert_on_sun397(shared):
  """The measured reason gather is the default (see bcl_loss docstring)."""
  del shared
  s = load_published(os.path.join(PROTOTYPES, "SUN397_SP_cosine.npz"))
  off = ~np.eye(len(s), dtype=bool)
  assert (s @ s.T)[off].mean() == pytest.approx(65.5, abs=0.05)
  assert s[off].mean() == pytest.approx(0.40, abs=0.005)
  rng = np.random.default_rng(0)
  p, y = random_batch(rng, 32, len(s))
  assert float(losses.bcl_loss(p, y, s, pairing="product")) == 0.0
  assert float(losses.bcl_loss(p, y, s, pairing="gather")) > 0.0


EDGE_BATCHES = {
  "identical_rows": (np.tile([[0.2, 0.5, 0.3]], (4, 1)), [0, 1, 2, 0]),
  "zero_rows": (np.array([[0.0, 0, 0], [0.2, 0.5, 0.3], [0, 0, 0]]), [0, 1, 1]),
  "one_class": (
    reference.softmax(np.random.default_rng(3).normal(size=(5, 3))),
    [2] * 5,
  ),
  "single_sample": (np.array([[0.1, 0.7, 0.2]]), [1]),
  # Predictions far apart and S near 1: no positive entry anywhere.
  "no_positive": (np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]]), [0, 1, 2]),
}


@pytest.mark.parametrize("case", sorted(EDGE_BATCHES))
@pytest.mark.parametrize("metric", losses.BCL_METRICS)
@pytest.mark.parametrize("reduction", losses.BCL_REDUCTIONS)
@pytest.mark.parametrize("pairing", losses.BCL_PAIRINGS)
def test_bcl_gradients_finite(case, metric, reduction, pairing):
  p, y = EDGE_BATCHES[case]
  s = np.full((3, 3), 0.95)
  np.fill_diagonal(s, 1.0)
  p = jnp.asarray(p, jnp.float32)
  value, grad = jax.value_and_grad(
    lambda p: losses.bcl_loss(
      p, jnp.asarray(y), s, metric=metric, reduction=reduction, pairing=pairing
    )
  )(p)
  assert np.isfinite(float(value))
  assert np.isfinite(np.asarray(grad)).all()
  if case == "no_positive" and "intra" not in reduction:
    assert float(value) == 0.0


def test_classic_contrastive_loss():
  rng = np.random.default_rng(4)
  for metric in losses.BCL_METRICS:
    p, y = random_batch(rng, 9, 4)
    assert float(losses.contrastive_loss(p, y, metric=metric)) == pytest.approx(
      reference.classic_cl(p, y, metric), rel=1e-4
    )


def test_label_smoothing_targets():
  t = np.asarray(losses.label_smoothing_targets(jnp.array([2, 0]), 4, 0.2))
  np.testing.assert_allclose(
    t, [[0.05, 0.05, 0.85, 0.05], [0.85, 0.05, 0.05, 0.05]], rtol=1e-6
  )


# --------------------------------------------------------------------------
# Pairwise consistency


@given(
  seed=st.integers(0, 2**31),
  batch=st.integers(1, 8),
  num=st.integers(2, 10),
  soft=st.booleans(),
)
def test_pcl_matches_reference(seed, batch, num, soft):
  rng = np.random.default_rng(seed)
  main, side, mod = (rng.normal(0, 3, (batch, num)) for _ in range(3))
  g = (
    reference.softmax(rng.normal(size=(batch, num)))
    if soft
    else np.eye(num)[rng.integers(0, num, batch)]
  )
  total, parts = losses.pcl_loss(main, side, mod, g, alpha=1.0, beta=2.0)
  ref_total, ref_parts = reference.pcl(main, side, mod, g)
  assert float(total) == pytest.approx(ref_total, rel=1e-4, abs=1e-5)
  for k, v in ref_parts.items():
    assert float(parts[k]) == pytest.approx(v, rel=1e-4, abs=1e-5), k


def test_kl_consistency_sign_and_gradients():
  rng = np.random.default_rng(5)
  a, b = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
  assert float(losses.kl_consistency(a, b)) > 0.0  # sign corrected
  assert float(losses.kl_consistency(a, a)) == pytest.approx(0.0, abs=1e-6)
  # Saturated logits (q_k -> 0): the log-space form stays finite.
  big = jnp.array([[80.0, -80.0, 0.0]])
  g = jax.grad(lambda x: losses.kl_consistency(x, -x))(big)
  assert np.isfinite(np.asarray(g)).all()


# --------------------------------------------------------------------------
# dtype handling


def test_bf16_inputs_are_computed_in_fp32():
  rng = np.random.default_rng(6)
  s = random_similarity(rng, 5)
  p, y = random_batch(rng, 8, 5)
  p16 = jnp.asarray(p, jnp.bfloat16)
  p16_as_f32 = np.asarray(p16.astype(jnp.float32))
  out = losses.bcl_loss(
    p16, y, jnp.asarray(s, jnp.bfloat16), reduction="mean_inter_intra"
  )
  assert out.dtype == jnp.float32
  s16_as_f32 = np.asarray(jnp.asarray(s, jnp.bfloat16).astype(jnp.float32))
  assert float(out) == pytest.approx(
    reference.bcl(p16_as_f32, y, s16_as_f32, "cosine", "mean_inter_intra"),
    rel=1e-4,
    abs=1e-5,
  )
  assert losses.gls_label_matrix(jnp.asarray(s, jnp.bfloat16), 3).dtype == (
    jnp.float32
  )
  logits = jnp.asarray(rng.normal(size=(3, 5)), jnp.bfloat16)
  total, _ = losses.pcl_loss(
    logits, logits, logits, jax.nn.one_hot(jnp.array([0, 1, 2]), 5)
  )
  assert total.dtype == jnp.float32


def test_gls_targets_feed_optax_cross_entropy():
  """GLS rows are valid distributions for optax.softmax_cross_entropy."""
  s = random_similarity(np.random.default_rng(7), 6)
  m = losses.gls_label_matrix(s, 4)
  logits = jnp.zeros((2, 6))
  ce = optax.softmax_cross_entropy(logits, m[jnp.array([1, 3])])
  np.testing.assert_allclose(np.asarray(ce), np.log(6), rtol=1e-6)
