"""The CPU convolution (`models/conv.py`): its output and gradients
against float64 loops.

The reference is the definition, y[n,h,w,o] = Σ_{i,j,c} pad(x)[n, s·h+d·i,
s·w+d·j, c] · K[i,j,c,o], differentiated by hand: for a cotangent G,
∂K[i,j,c,o] = Σ_{n,h,w} pad(x)[n, s·h+d·i, s·w+d·j, c] · G[n,h,w,o], and
∂pad(x)[n, s·h+d·i, s·w+d·j, c] += Σ_o G[n,h,w,o] · K[i,j,c,o], cropped.
"""

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import strategies as st
from jax import lax

from scenejax import models
from scenejax.models import conv


def _reference(x, kernel, g, stride, pads, dilation):
  """(conv(x, K), ∂x, ∂K) of Σ G·conv(x, K) in float64, by the loops
  above."""
  kh, kw = kernel.shape[:2]
  (pt, pb), (pl, pr) = pads
  padded = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  d_padded = np.zeros_like(padded)
  d_kernel = np.zeros_like(kernel)
  y = np.zeros(g.shape)
  for h in range(g.shape[1]):
    for w in range(g.shape[2]):
      for i in range(kh):
        for j in range(kw):
          r, q = stride * h + dilation * i, stride * w + dilation * j
          y[:, h, w, :] += padded[:, r, q, :] @ kernel[i, j]
          d_kernel[i, j] += padded[:, r, q, :].T @ g[:, h, w, :]
          d_padded[:, r, q, :] += g[:, h, w, :] @ kernel[i, j].T
  d_x = d_padded[:, pt : pt + x.shape[1], pl : pl + x.shape[2], :]
  return y, d_x, d_kernel


def _check(size, channels, out, kernel, stride, dilation, padding, seed):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(2, size, size + 1, channels))
  k = rng.normal(size=(kernel, kernel, channels, out))
  x32, k32 = jnp.asarray(x, jnp.float32), jnp.asarray(k, jnp.float32)

  def forward(x, k):
    return conv.conv_general_dilated(
      x,
      k,
      (stride, stride),
      padding,
      rhs_dilation=(dilation, dilation),
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )

  y, vjp = jax.vjp(forward, x32, k32)
  g = rng.normal(size=y.shape)
  got_x, got_k = vjp(jnp.asarray(g, jnp.float32))
  if isinstance(padding, str):
    window = [dilation * (kernel - 1) + 1] * 2
    pads = lax.padtype_to_pads(x.shape[1:3], window, (stride,) * 2, padding)
  else:
    pads = padding
  want_y, want_x, want_k = _reference(x, k, g, stride, pads, dilation)
  scale = np.sqrt(kernel * kernel * channels * out)
  np.testing.assert_allclose(y, want_y, atol=1e-4 * scale, rtol=1e-4)
  np.testing.assert_allclose(got_k, want_k, atol=1e-4 * scale, rtol=1e-4)
  np.testing.assert_allclose(got_x, want_x, atol=1e-4 * scale, rtol=1e-4)


@pytest.mark.parametrize(
  "kernel, stride, padding",
  [
    (1, 2, ((0, 0), (0, 0))),  # ResNet's downsampling shortcut
    (3, 2, ((1, 1), (1, 1))),  # ResNet v1.5's strided 3x3
    (4, 4, "VALID"),  # a patch embedding: windows as a reshape
    (7, 2, ((3, 3), (3, 3))),  # the stem
  ],
)
def test_conv_gradient_matches_float64_loop(kernel, stride, padding):
  _check(9, 3, 4, kernel, stride, 1, padding, seed=kernel)


@pytest.mark.slow
# Each example compiles new shapes (~1 s).
@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(
  kernel=st.sampled_from([1, 2, 3, 5]),
  stride=st.sampled_from([1, 2, 3]),
  dilation=st.sampled_from([1, 2]),
  padding=st.sampled_from(["SAME", "VALID", 0, 1, 2]),
  size=st.integers(5, 10),
  channels=st.integers(1, 4),
  out=st.integers(1, 4),
  seed=st.integers(0, 2**16),
)
def test_conv_gradient_matches_float64_loop_property(
  kernel, stride, dilation, padding, size, channels, out, seed
):
  if isinstance(padding, int):
    padding = ((padding, padding), (padding + 1, padding))  # asymmetric
  hypothesis.assume(size + 2 > dilation * (kernel - 1))
  _check(size, channels, out, kernel, stride, dilation, padding, seed)


def test_zoo_convolutions_take_the_cpu_gradient():
  """On CPU a ResNet's ungrouped convs go through the custom VJP (the
  library's gradient otherwise)."""
  model = models.create("resnet18", 3, rngs=nnx.Rngs(0))
  model.eval()
  x = jnp.zeros((1, 32, 32, 3))
  jaxpr = str(jax.make_jaxpr(lambda x: model(x))(x))
  assert jax.default_backend() == "cpu"
  assert jaxpr.count("custom_vjp_call") == 20  # 17 + 3 shortcuts


def test_other_convolutions_fall_back_to_the_library():
  """Grouped convs and other layouts are the library's, unchanged."""
  x = jnp.ones((1, 6, 6, 4))
  k = jnp.ones((3, 3, 2, 4))
  grouped = conv.conv_general_dilated(
    x,
    k,
    (1, 1),
    "SAME",
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    feature_group_count=2,
  )
  want = lax.conv_general_dilated(
    x,
    k,
    (1, 1),
    "SAME",
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    feature_group_count=2,
  )
  np.testing.assert_array_equal(grouped, want)
  jaxpr = str(
    jax.make_jaxpr(
      lambda x: conv.conv_general_dilated(
        x,
        k,
        (1, 1),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=2,
      )
    )(x)
  )
  assert "custom_vjp_call" not in jaxpr
