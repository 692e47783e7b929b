"""The pairwise-consistency model: CAM (Eq. 1), erasing (Eq. 2), export."""

import hypothesis
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import strategies as st

from scenejax import input_pipeline, losses, models
from scenejax.models import pcl
from scenejax.tasks import classification


def _numpy_cam(features, weights, classes):
  """Float64 Eq. 1 by loops: M = Σ_c W[c, t] A[..., c], then min-max."""
  features = np.asarray(features, np.float64)
  out = np.zeros(features.shape[:3])
  for n in range(features.shape[0]):
    for c in range(features.shape[-1]):
      out[n] += weights[c, classes[n]] * features[n, :, :, c]
    low, high = out[n].min(), out[n].max()
    out[n] = (out[n] - low) / (high - low) if high > low else 0.0
  return out


def _numpy_bilinear(image, size):
  """Half-pixel-centred bilinear upsampling with edge clamping, float64."""
  h, w = image.shape
  out_h, out_w = size

  def coords(n_in, n_out):
    x = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    x = np.clip(x, 0, n_in - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, x - lo

  y0, y1, fy = coords(h, out_h)
  x0, x1, fx = coords(w, out_w)
  top = image[y0][:, x0] * (1 - fx) + image[y0][:, x1] * fx
  bottom = image[y1][:, x0] * (1 - fx) + image[y1][:, x1] * fx
  return top * (1 - fy[:, None]) + bottom * fy[:, None]


@hypothesis.given(
  features=hnp.arrays(
    np.float32, (2, 3, 4, 5), elements=st.floats(-4, 4, width=32)
  ),
  weights=hnp.arrays(np.float32, (5, 6), elements=st.floats(-2, 2, width=32)),
  classes=hnp.arrays(np.int32, (2,), elements=st.integers(0, 5)),
)
def test_class_activation_map_matches_reference(features, weights, classes):
  raw = np.einsum(
    "nhwc,cn->nhw",
    features.astype(np.float64),
    weights.astype(np.float64)[:, classes],
  )
  span = raw.max(axis=(1, 2)) - raw.min(axis=(1, 2))
  # A map whose range is below float32's resolution at its magnitude (e.g.
  # 2 + 1e-7 vs 2 + 2e-7) is constant in float32: nothing to compare.
  hypothesis.assume(
    np.all((span == 0) | (span > 1e-4 * np.abs(raw).max(axis=(1, 2))))
  )
  got = np.asarray(pcl.class_activation_map(features, weights, classes))
  want = _numpy_cam(features, weights, classes)
  np.testing.assert_allclose(got, want, atol=2e-4)
  assert got.min() >= 0 and got.max() <= 1


@pytest.mark.parametrize("gamma", [0.5, 0.7, 0.9])
def test_erase_mask_matches_reference(gamma):
  cam = np.random.default_rng(1).uniform(0, 1, (2, 4, 4))
  got = np.asarray(
    pcl.erase_mask(jnp.asarray(cam, jnp.float32), (16, 12), gamma)
  )
  for n in range(2):
    resized = _numpy_bilinear(cam[n], (16, 12))
    clear = np.abs(resized - gamma) > 1e-5  # skip values on the threshold
    np.testing.assert_array_equal(got[n][clear], (resized < gamma)[clear])


def test_mask_fraction_and_erasing_on_a_constructed_map():
  """One channel, a left-to-right ramp: the right 30% is what M ≥ 0.7 erases."""
  ramp = np.tile(np.linspace(0, 1, 10), (10, 1))  # columns 0..1 in 10 steps
  features = jnp.asarray(ramp[None, :, :, None], jnp.float32)
  weights = jnp.ones((1, 1), jnp.float32)
  cam = pcl.class_activation_map(features, weights, jnp.zeros(1, jnp.int32))
  mask = np.asarray(pcl.erase_mask(cam, (10, 10), 0.7))
  # Same size: no interpolation; linspace values ≥ 0.7 are columns 7, 8, 9.
  np.testing.assert_array_equal(mask[0], np.tile(np.arange(10) < 7, (10, 1)))
  assert mask.mean() == pytest.approx(0.7)
  image = np.random.default_rng(0).uniform(1, 2, (1, 10, 10, 3))
  erased = image * mask[..., None]
  assert np.all(erased[0, :, 7:] == 0) and np.all(
    erased[0, :, :7] == image[0, :, :7]
  )


def test_cam_uses_the_predicted_class_not_the_label():
  """Two classes whose CAMs are opposite ramps: the mask follows argmax."""
  ramp = np.tile(np.linspace(0, 1, 8), (8, 1))
  features = jnp.asarray(np.stack([ramp, 1 - ramp], -1)[None], jnp.float32)
  weights = jnp.asarray([[1.0, 0.0], [0.0, 1.0]])
  right = pcl.erase_mask(
    pcl.class_activation_map(features, weights, jnp.asarray([0])), (8, 8)
  )
  left = pcl.erase_mask(
    pcl.class_activation_map(features, weights, jnp.asarray([1])), (8, 8)
  )
  assert np.asarray(right)[0, :, -1].sum() == 0  # class 0 erases the right
  assert np.asarray(left)[0, :, 0].sum() == 0  # class 1 erases the left


def _pcl_model(name="resnet_tiny", num_classes=5):
  backbone = models.create(name, num_classes, rngs=nnx.Rngs(0))
  return pcl.PCLModel(backbone, num_classes, rngs=nnx.Rngs(1))


@pytest.mark.slow
def test_no_gradient_through_the_mask():
  """d(mod logits)/d(CAM module) = 0; d/d(input) = mask ⊙ d/d(erased)."""
  model = _pcl_model()
  model.eval()
  x = jnp.asarray(
    np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32
  )

  def mod_sum(model, x):
    return model.pcl_outputs(x)["mod"].sum()

  grads = nnx.grad(mod_sum)(model, x)
  for leaf in jax.tree.leaves(nnx.state(grads.cam_conv)) + jax.tree.leaves(
    nnx.state(grads.cam_head)
  ):
    assert not np.any(leaf)
  # The input gradient of the mod path: d/dx f(mask ⊙ x) = mask ⊙ f'(·), plus
  # the main path's contribution through the backbone (none: mask is a
  # constant), so it vanishes exactly where the mask erased.
  mask = model.pcl_outputs(x)["mask"]
  assert 0 < float(mask.mean()) < 1
  input_grad = jax.grad(lambda x: mod_sum(model, x))(x)
  assert not np.any(np.asarray(input_grad)[np.asarray(mask) == 0])
  assert np.any(np.asarray(input_grad)[np.asarray(mask) == 1])


def test_pcl_forward_jits_and_feeds_pcl_loss():
  model = _pcl_model()
  x = jnp.ones((4, 32, 32, 3))
  out = nnx.jit(lambda m, x: m.pcl_outputs(x))(model, x)
  assert {k: v.shape for k, v in out.items()} == {
    "main": (4, 5),
    "side": (4, 5),
    "mod": (4, 5),
    "mask": (4, 32, 32),
  }
  total, parts = losses.pcl_loss(
    out["main"], out["side"], out["mod"], jax.nn.one_hot(jnp.arange(4) % 5, 5)
  )
  assert np.isfinite(float(total)) and set(parts) == {
    "main",
    "side",
    "mod",
    "kl",
  }


@pytest.mark.parametrize(
  "name", ["resnet18", "convnext_tiny", "mobilenetv3_large", "vit_ti16"]
)
def test_export_has_the_baseline_parameters(name):
  def build():
    backbone = models.create(name, 10, rngs=nnx.Rngs(0))
    return pcl.PCLModel(backbone, 10, rngs=nnx.Rngs(1))

  model = nnx.eval_shape(build)
  plain = nnx.eval_shape(lambda: models.create(name, 10))
  assert models.num_params(model) > models.num_params(plain)
  assert models.num_params(pcl.export(model)) == models.num_params(plain)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [0, 1, 2])
def test_cam_stage_is_configurable(stage):
  backbone = models.create("resnet_tiny", 3)
  model = pcl.PCLModel(backbone, 3, cam_stage=stage, rngs=nnx.Rngs(1))
  assert model.cam_conv.in_features == backbone.feature_widths[stage]
  with pytest.raises(ValueError, match="cam_stage 3 out of range"):
    pcl.PCLModel(backbone, 3, cam_stage=3, rngs=nnx.Rngs(1))


@pytest.mark.slow
def test_train_step_with_pcl_terms():
  """The jitted train step runs the PCL forward and returns Eq. 3's terms,
  each equal to a float64 recomputation from the model's own outputs."""
  model = _pcl_model(num_classes=4)
  optimizer = nnx.Optimizer(model, optax.sgd(0.0), wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  cfg = classification.LossConfig.with_defaults(
    labels="ce", bcl_weight=0.0, pcl=True, pcl_alpha=1.5, pcl_beta=2.0
  )
  rng = np.random.default_rng(0)
  batch = {
    "image": rng.integers(0, 255, (8, 32, 32, 3), np.uint8),
    "label": rng.integers(0, 4, 8).astype(np.int32),
  }
  step = jax.jit(
    lambda s, b: classification.train_step(
      graphdef,
      s,
      b,
      0.0,
      jnp.eye(4),
      loss_cfg=cfg,
      mean=input_pipeline.IMAGENET_MEAN,
      std=input_pipeline.IMAGENET_STD,
    )
  )
  model.train()
  out = model.pcl_outputs(input_pipeline.normalize(batch["image"]))
  _, metrics = step(state, batch)

  def log_softmax(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))

  onehot = np.eye(4)[batch["label"]]
  lp, lr, lq = (log_softmax(out[k]) for k in ("main", "side", "mod"))
  kl = (np.exp(lq) * (lq - lp)).sum(-1).mean()
  np.testing.assert_allclose(
    float(metrics["ce"]), -(onehot * lp).sum(-1).mean(), rtol=1e-4
  )
  np.testing.assert_allclose(
    float(metrics["side"]), -(onehot * lr).sum(-1).mean(), rtol=1e-4
  )
  np.testing.assert_allclose(
    float(metrics["mod"]), 1.5 * -(onehot * lq).sum(-1).mean(), rtol=1e-4
  )
  np.testing.assert_allclose(
    float(metrics["kl"]), 2.0 * kl, rtol=1e-3, atol=1e-6
  )
