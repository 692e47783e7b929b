"""Multi-label metrics and SADCL's contrastive losses against references
written here: scikit-learn's average precision, a hand-computed case for
the counts, and float64 loops over the equations for SSCL and PSCL."""

import hypothesis
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from scenejax import losses, metrics


def test_multilabel_metrics_hand_computed():
  scores = np.array([[0.9, 0.6, 0.1], [0.2, 0.8, 0.7], [0.55, 0.3, 0.4]])
  targets = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 0]])
  m = metrics.multilabel_metrics(scores, targets, top_k=1)
  # >= 0.5 predicts {0,1}, {1,2}, {0}: per class correct/predicted/true
  # 2/2/2, 1/2/1, 1/1/1.
  expected = dict(CP=(1 + 0.5 + 1) / 3, CR=1.0, OP=4 / 5, OR=1.0)
  # Top-1 and >= 0.5 predicts {0}, {1}, {0}: 2/2/2, 1/1/1, 0/0/1.
  expected.update(top1_CP=2 / 3, top1_CR=2 / 3, top1_OP=1.0, top1_OR=3 / 4)
  for key, value in expected.items():
    assert m[key] == pytest.approx(value), key
  for p in ("", "top1_"):
    cp, cr, op, orr = (m[p + k] for k in ("CP", "CR", "OP", "OR"))
    assert m[p + "CF1"] == pytest.approx(2 * cp * cr / (cp + cr))
    assert m[p + "OF1"] == pytest.approx(2 * op * orr / (op + orr))
  assert m["mAP"] == 1.0  # every positive outranks every negative
  assert m["absent_classes"] == []
  assert set(metrics.multilabel_metrics(scores, targets)) >= {
    "top3_CP", "top3_CR", "top3_CF1", "top3_OP", "top3_OR", "top3_OF1",
  }  # fmt: skip


@hypothesis.given(
  n=st.integers(2, 30),
  k=st.integers(1, 6),
  levels=st.integers(2, 10),  # few distinct scores: ties
  seed=st.integers(0, 2**16),
)
def test_average_precision_matches_scikit_learn(n, k, levels, seed):
  rng = np.random.default_rng(seed)
  scores = rng.integers(0, levels, (n, k)) / levels
  targets = rng.random((n, k)) < 0.4
  m = metrics.multilabel_metrics(scores, targets)
  present = [c for c in range(k) if targets[:, c].any()]
  hypothesis.assume(present)
  want = np.mean(
    [average_precision_score(targets[:, c], scores[:, c]) for c in present]
  )
  assert m["mAP"] == pytest.approx(want, abs=1e-12)
  assert m["absent_classes"] == [c for c in range(k) if c not in present]


def test_multilabel_metrics_shape_error():
  with pytest.raises(ValueError, match=r"\(N, K\)"):
    metrics.multilabel_metrics(np.zeros((3, 2)), np.zeros((3, 3)))


def _unit(x):
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def _sscl_reference(r, y, tau):
  """[SupCon] Eq. 2 over the activated (image, label) slots, positives the
  same label in another image, float64 loops."""
  z = _unit(np.asarray(r, np.float64))
  slots = [
    (i, k) for i in range(y.shape[0]) for k in range(y.shape[1]) if y[i, k]
  ]
  total, anchors = 0.0, 0
  for i, k in slots:
    others = [(j, l) for j, l in slots if (j, l) != (i, k)]
    positives = [(j, l) for j, l in others if l == k and j != i]
    if not positives:
      continue
    denom = sum(np.exp(z[i, k] @ z[j, l] / tau) for j, l in others)
    total += -np.mean(
      [np.log(np.exp(z[i, k] @ z[j, l] / tau) / denom) for j, l in positives]
    )
    anchors += 1
  return total / max(anchors, 1)


def _pscl_reference(r, y, p, tau, unactivated):
  z, c = _unit(np.asarray(r, np.float64)), _unit(np.asarray(p, np.float64))
  b, k = y.shape
  total, anchors = 0.0, 0
  for cat in range(k):
    positives = [i for i in range(b) if y[i, cat]]
    if not positives:
      continue
    negatives = [
      z[i, l] for i in range(b) for l in range(k) if y[i, l] and l != cat
    ]
    if unactivated == "negatives":
      negatives += [z[i, cat] for i in range(b) if not y[i, cat]]
    neg = sum(np.exp(c[cat] @ n / tau) for n in negatives)
    terms = []
    for i in positives:
      e = np.exp(c[cat] @ z[i, cat] / tau)
      terms.append(-np.log(e / (e + neg)))
    total += np.mean(terms)
    anchors += 1
  return total / max(anchors, 1)


_shapes = dict(
  b=st.integers(1, 5),
  k=st.integers(1, 5),
  d=st.integers(1, 6),
  tau=st.sampled_from([0.07, 0.1, 0.5, 1.0]),
  density=st.sampled_from([0.2, 0.5, 0.9]),
  seed=st.integers(0, 2**16),
)


@hypothesis.given(**_shapes)
def test_label_contrastive_loss_matches_float64_loop(
  b, k, d, tau, density, seed
):
  rng = np.random.default_rng(seed)
  r = rng.normal(size=(b, k, d))
  y = rng.random((b, k)) < density
  got = float(
    losses.label_contrastive_loss(
      jnp.asarray(r, jnp.float32), y, temperature=tau
    )
  )
  assert got == pytest.approx(_sscl_reference(r, y, tau), rel=1e-4, abs=1e-5)


@hypothesis.given(
  unactivated=st.sampled_from(losses.PSCL_UNACTIVATED), **_shapes
)
def test_prototype_contrastive_loss_matches_float64_loop(
  b, k, d, tau, density, seed, unactivated
):
  rng = np.random.default_rng(seed)
  r, p = rng.normal(size=(b, k, d)), rng.normal(size=(k, d))
  y = rng.random((b, k)) < density
  got = float(
    losses.prototype_contrastive_loss(
      jnp.asarray(r, jnp.float32), y, jnp.asarray(p, jnp.float32),
      temperature=tau, unactivated=unactivated,
    )
  )  # fmt: skip
  want = _pscl_reference(r, y, p, tau, unactivated)
  assert got == pytest.approx(want, rel=1e-4, abs=1e-5)


def test_unactivated_representations_matter_only_as_negatives():
  """Moving an absent label's representation changes PSCL with
  unactivated="negatives" and leaves SSCL and the "ignore" reading as
  they were."""
  rng = np.random.default_rng(0)
  r = rng.normal(size=(4, 3, 5)).astype(np.float32)
  p = rng.normal(size=(3, 5)).astype(np.float32)
  y = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 0]])
  moved = r.copy()
  moved[0, 1] = p[1]  # image 0 lacks label 1: now on its prototype
  for fn, changes in (
    (lambda x: losses.prototype_contrastive_loss(x, y, p), True),
    (
      lambda x: losses.prototype_contrastive_loss(
        x, y, p, unactivated="ignore"
      ),
      False,
    ),
    (lambda x: losses.label_contrastive_loss(x, y), False),
  ):
    assert (float(fn(r)) != float(fn(moved))) == changes
  with pytest.raises(ValueError, match="unactivated = 'all'"):
    losses.prototype_contrastive_loss(r, y, p, unactivated="all")


def _asl_reference(x, y, gp, gn, m):
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  p = 1 / (1 + np.exp(-x))
  pm = np.maximum(p - m, 0)
  pos = (1 - p) ** gp * np.log(p)
  neg = pm**gn * np.log(1 - pm)
  return float(np.mean(np.sum(-(y * pos + (1 - y) * neg), axis=-1)))


@hypothesis.given(
  b=st.integers(1, 4),
  k=st.integers(1, 6),
  gp=st.sampled_from([0.0, 1.0]),
  gn=st.sampled_from([0.0, 2.0, 4.0]),
  m=st.sampled_from([0.0, 0.05, 0.2]),
  seed=st.integers(0, 2**16),
)
def test_asymmetric_loss_matches_float64(b, k, gp, gn, m, seed):
  rng = np.random.default_rng(seed)
  x = rng.normal(0, 3, (b, k))
  y = rng.random((b, k)) < 0.5
  got = losses.asymmetric_loss(
    jnp.asarray(x, jnp.float32),
    y,
    gamma_positive=gp,
    gamma_negative=gn,
    margin=m,
  )
  assert float(got) == pytest.approx(
    _asl_reference(x, y, gp, gn, m), rel=1e-4, abs=1e-5
  )


def test_asymmetric_loss_without_focusing_is_bce():
  import optax

  x = jnp.asarray(np.random.default_rng(0).normal(0, 4, (5, 7)), jnp.float32)
  y = np.random.default_rng(1).random((5, 7)) < 0.3
  bce = (
    optax.sigmoid_binary_cross_entropy(x, y.astype(np.float32)).sum(-1).mean()
  )
  asl = losses.asymmetric_loss(
    x, y, gamma_positive=0.0, gamma_negative=0.0, margin=0.0
  )
  np.testing.assert_allclose(float(asl), float(bce), rtol=1e-6)
