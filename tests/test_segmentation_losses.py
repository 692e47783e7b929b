"""[SEG] segmentation losses against float64 references (tests/reference.py)
and their sampling's properties."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import reference
from hypothesis import given
from hypothesis import strategies as st

from scenejax import losses


@given(
  seed=st.integers(0, 2**31),
  k=st.integers(1, 7),
  shape=st.sampled_from([(1, 3, 4), (2, 5, 2), (3, 1, 1)]),
  gamma=st.sampled_from([0.0, 0.5, 2.0, 5.0]),
  weighted=st.booleans(),
)
def test_focal_loss_matches_reference(seed, k, shape, gamma, weighted):
  rng = np.random.default_rng(seed)
  logits = rng.normal(0, 3, shape + (k,))
  labels = rng.integers(0, k + 1, shape)  # 0 = unlabeled
  labels.flat[0] = 1  # at least one labelled pixel
  weights = rng.uniform(0.1, 3.0, k) if weighted else None
  ours = losses.weighted_focal_loss(
    jnp.asarray(logits, jnp.float32),
    labels,
    None if weights is None else jnp.asarray(weights, jnp.float32),
    gamma=gamma,
  )
  want = reference.focal_loss(logits, labels, weights, gamma)
  np.testing.assert_allclose(float(ours), want, rtol=2e-5, atol=2e-6)


def test_focal_loss_gamma0_uniform_is_cross_entropy():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(0, 2, (2, 6, 5, 9)), jnp.float32)
  labels = rng.integers(1, 10, (2, 6, 5))
  ours = losses.weighted_focal_loss(logits, labels, None, gamma=0.0)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels - 1)
  np.testing.assert_allclose(float(ours), float(ce.mean()), rtol=1e-6)
  uniform = losses.weighted_focal_loss(logits, labels, jnp.ones(9), gamma=0.0)
  np.testing.assert_allclose(float(uniform), float(ce.mean()), rtol=1e-6)


def test_focal_loss_ignores_unlabeled_and_out_of_range():
  logits = jnp.zeros((1, 1, 4, 3))
  # Only the one labelled pixel (id 2) counts: -log(1/3), whatever else.
  labels = np.array([[[0, 2, 4, 255]]])
  ours = losses.weighted_focal_loss(logits, labels, gamma=0.0)
  np.testing.assert_allclose(float(ours), np.log(3), rtol=1e-6)
  none = losses.weighted_focal_loss(logits, np.zeros((1, 1, 4), int))
  assert float(none) == 0.0
  grads = jax.grad(lambda z: losses.weighted_focal_loss(z, labels))(logits)
  assert np.all(np.asarray(grads)[0, 0, [0, 2, 3]] == 0)


def test_focal_loss_down_weights_easy_pixels():
  # A confident correct pixel loses (1 - p)^2 of its CE; a wrong one little.
  easy = jnp.array([[8.0, 0.0]])
  hard = jnp.array([[0.0, 2.0]])
  y = np.array([1])
  for logits, lo, hi in ((easy, 0.0, 1e-6), (hard, 0.7, 1.0)):
    ratio = losses.weighted_focal_loss(logits, y) / losses.weighted_focal_loss(
      logits, y, gamma=0.0
    )
    assert lo <= float(ratio) <= hi


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
def test_focal_loss_gradients_finite_when_certain(gamma):
  logits = jnp.array([[[60.0, -60.0, 0.0], [0.0, 1.0, 0.0]]])
  g = jax.grad(
    lambda z: losses.weighted_focal_loss(z, np.array([[1, 2]]), gamma=gamma)
  )(logits)
  assert np.all(np.isfinite(np.asarray(g))), gamma


@given(
  seed=st.integers(0, 2**31),
  k=st.integers(1, 6),
  size=st.sampled_from([3, 17, 60]),  # few shapes: few compiles
  per_class=st.integers(1, 12),
  num=st.sampled_from([1, 8, 30]),
)
def test_sample_pixels_class_balanced(seed, k, size, per_class, num):
  num = min(num, size)
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, k + 1, (2, size))
  if seed % 3 == 0:  # a dominant class
    labels[:, : size * 3 // 4] = 1
  key = jax.random.key(seed % 1000)
  idx, valid = losses.sample_pixels(
    labels, key, num_samples=num, per_class=per_class, num_classes=k
  )
  idx, valid = np.asarray(idx), np.asarray(valid)
  for b in range(2):
    chosen = idx[b][valid[b]]
    assert len(set(chosen)) == len(chosen)  # no pixel twice
    picked = labels[b][chosen]
    assert np.all((picked >= 1) & (picked <= k))
    available = {c: int(np.sum(labels[b] == c)) for c in range(1, k + 1)}
    counts = {c: int(np.sum(picked == c)) for c in range(1, k + 1)}
    capacity = {c: min(available[c], per_class) for c in counts}
    # Fills every slot it can.
    assert len(chosen) == min(num, sum(capacity.values()))
    assert all(counts[c] <= capacity[c] for c in counts)
    # Balanced: a class with fewer than another has run out.
    for c in counts:
      for other in counts:
        if counts[other] > counts[c] + 1:
          assert counts[c] == capacity[c]
  again = losses.sample_pixels(
    labels, key, num_samples=num, per_class=per_class, num_classes=k
  )
  np.testing.assert_array_equal(np.asarray(again[0]), idx)


def test_sample_pixels_keys_differ_per_image_and_key():
  labels = np.ones((2, 400), int)
  a, _ = losses.sample_pixels(
    labels, jax.random.key(0), num_samples=8, per_class=8, num_classes=1
  )
  b, _ = losses.sample_pixels(
    labels, jax.random.key(1), num_samples=8, per_class=8, num_classes=1
  )
  a, b = np.asarray(a), np.asarray(b)
  assert set(a[0]) != set(a[1]) and set(a[0]) != set(b[0])


@given(
  seed=st.integers(0, 2**31),
  n=st.sampled_from([1, 2, 9]),
  d=st.sampled_from([1, 4]),
  k=st.integers(1, 3),
  form=st.sampled_from(losses.PIXEL_CONTRASTIVE_FORMS),
)
def test_pairwise_contrastive_matches_reference(seed, n, d, k, form):
  rng = np.random.default_rng(seed)
  e = rng.normal(0, 1, (2, n, d))
  y = rng.integers(1, k + 1, (2, n))
  valid = rng.random((2, n)) < 0.8
  ours = losses.pairwise_contrastive_loss(
    jnp.asarray(e, jnp.float32),
    y,
    valid,
    form=form,
    margin=1.5,
    temperature=0.2,
  )
  if form == "margin":
    want = reference.margin_contrastive(e, y, valid, margin=1.5)
  else:
    want = reference.supcon(e, y, valid, temperature=0.2)
  np.testing.assert_allclose(float(ours), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("form", losses.PIXEL_CONTRASTIVE_FORMS)
def test_pairwise_contrastive_gradients_finite_on_coincident_points(form):
  e = jnp.zeros((1, 4, 3)).at[0, 2:].set(1.0)  # two pairs coincide
  y = np.array([[1, 2, 1, 2]])
  g = jax.grad(
    lambda e: losses.pairwise_contrastive_loss(
      e, y, np.ones((1, 4), bool), form=form
    )
  )(e)
  assert np.all(np.isfinite(np.asarray(g)))


def test_pixel_contrastive_loss_is_the_sampled_pairs():
  rng = np.random.default_rng(3)
  emb = rng.normal(0, 1, (2, 8, 8, 5)).astype(np.float32)
  labels = rng.integers(0, 4, (2, 32, 32))
  key = jax.random.key(7)
  ours = losses.pixel_contrastive_loss(
    jnp.asarray(emb), labels, key, num_classes=3, num_samples=20, per_class=6
  )
  # The same sample, drawn by the (separately tested) sampler, and the
  # nearest labels by PIL's rule, written out here.
  small = labels[:, 2::4, 2::4].reshape(2, 64)
  idx, valid = losses.sample_pixels(
    small, key, num_samples=20, per_class=6, num_classes=3
  )
  idx, valid = np.asarray(idx), np.asarray(valid)
  flat = emb.reshape(2, 64, 5)
  want = reference.margin_contrastive(
    np.take_along_axis(flat, idx[..., None], 1),
    np.take_along_axis(small, idx, 1),
    valid,
  )
  np.testing.assert_allclose(float(ours), want, rtol=1e-4)


def test_nearest_labels_pil_rule():
  from PIL import Image

  labels = (
    np.random.default_rng(0).integers(0, 150, (1, 37, 53)).astype(np.uint8)
  )
  ours = np.asarray(losses.nearest_labels(labels, (10, 14)))[0]
  pil = np.asarray(Image.fromarray(labels[0]).resize((14, 10), Image.NEAREST))
  np.testing.assert_array_equal(ours, pil)
