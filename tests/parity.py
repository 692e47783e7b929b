"""What the parity tests share: inputs, the jitted forward, and the
tolerance check against a reference's logits."""

import numpy as np
from flax import nnx

RTOL = 1e-4  # relative to the reference logits' scale, fp32


def images(size, n=2, seed=0, low=-1.0):
  """(n, size, size, 3) float32 images, uniform in [low, 1)."""
  rng = np.random.default_rng(seed)
  return rng.uniform(low, 1, (n, size, size, 3)).astype(np.float32)


@nnx.jit
def logits(model, x):
  return model(x)


def assert_close(ours, ref, rtol=RTOL):
  """max |ours - ref| <= rtol · max |ref| (the logits' scale)."""
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  assert ours.shape == ref.shape
  err = np.abs(ours - ref).max()
  assert err <= rtol * np.abs(ref).max(), (err, np.abs(ref).max())
