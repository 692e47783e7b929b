"""The SARL head and SADCL model: shapes, the per-label structure the
losses rely on, the position code against its formula, and gradients of
the full SADCL objective reaching every part."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scenejax import losses, models
from scenejax.models import sadcl


def _model(num_labels=6, dim=32):
  backbone = models.create("resnet_tiny", 10, rngs=nnx.Rngs(0))
  return sadcl.SADCLModel(
    backbone,
    num_labels,
    dim=dim,
    num_heads=4,
    encoder_layers=2,
    rngs=nnx.Rngs(1),
  )


def _x(n=2, size=32):
  return jnp.asarray(
    np.random.default_rng(0).normal(size=(n, size, size, 3)), jnp.float32
  )


def test_outputs_and_per_label_linear_logits():
  model = _model()
  model.eval()
  out = nnx.jit(lambda m, x: m.label_outputs(x))(model, _x())
  assert out["logits"].shape == (2, 6)
  assert out["representations"].shape == (2, 6, 32)
  r = np.asarray(out["representations"], np.float64)
  w = np.asarray(model.sarl.label_weights[...], np.float64)
  b = np.asarray(model.sarl.label_bias[...], np.float64)
  want = np.einsum("bkd,kd->bk", r, w) + b  # s_k = w_k·r_k + b_k
  np.testing.assert_allclose(
    np.asarray(out["logits"]), want, rtol=1e-5, atol=1e-5
  )


def test_label_k_depends_on_its_own_embedding_only():
  """Permuting the label embeddings and per-label weights permutes the
  logits: the label queries do not attend to each other."""
  model = _model()
  model.eval()
  x = _x()
  before = np.asarray(model(x))
  perm = np.array([3, 0, 5, 1, 4, 2])
  for param in (
    model.sarl.label_embeddings,
    model.sarl.label_weights,
    model.sarl.label_bias,
  ):
    param[...] = param[...][perm]
  after = np.asarray(model(x))
  np.testing.assert_allclose(after, before[:, perm], rtol=1e-5, atol=1e-5)


def test_sine_position_code_formula():
  h, w, dim = 3, 5, 8
  code = sadcl.sine_position_code(h, w, dim)
  q = dim // 4
  for row in range(h):
    for col in range(w):
      for i in range(q):
        f = 10000.0 ** (-i / q)
        t = code[row * w + col]
        np.testing.assert_allclose(
          [t[i], t[q + i], t[2 * q + i], t[3 * q + i]],
          [np.sin(row * f), np.cos(row * f), np.sin(col * f), np.cos(col * f)],
          rtol=1e-6, atol=1e-6,
        )  # fmt: skip


def test_sadcl_objective_reaches_every_part():
  """ASL + SSCL + PSCL: finite, and the gradient reaches the backbone,
  the encoder, the label embeddings and the prototypes."""
  model = _model()
  targets = jnp.asarray([[1, 0, 1, 0, 0, 1], [1, 1, 0, 0, 0, 1]], jnp.float32)

  def objective(model):
    out = model.label_outputs(_x())
    r = out["representations"]
    return (
      losses.asymmetric_loss(out["logits"], targets)
      + losses.label_contrastive_loss(r, targets)
      + losses.prototype_contrastive_loss(r, targets, model.prototypes[...])
    )

  value, grads = nnx.jit(nnx.value_and_grad(objective))(model)
  assert np.isfinite(float(value))
  for part in (
    grads.backbone.stem_conv.kernel,
    grads.sarl.encoder[0].mlp.fc1.kernel,
    grads.sarl.label_embeddings,
    grads.prototypes,
  ):
    g = np.asarray(part[...])
    assert np.isfinite(g).all() and np.abs(g).sum() > 0
  assert all(
    np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(nnx.state(grads))
  )
