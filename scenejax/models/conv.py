"""Convolutions whose gradients XLA:CPU computes slowly, as matrix products.

Two CPU-only paths, each behind `jax.default_backend() == "cpu"`, so GPUs
and TPUs (which have fast convolution kernels of every kind) run the
library convolution; parameters are the same either way:

  `conv_general_dilated`  a drop-in for `lax.conv_general_dilated`, given to
      every ungrouped `nnx.Conv` of the zoo (`Conv` below). The forward pass
      is the library's, except a 1x1 convolution's, which is one matrix
      product; the backward pass is a custom VJP of matrix products.
  `depthwise_conv`  a depthwise `nnx.Conv` as a sum of shifted, scaled
      copies of its input, forward and backward.

Why: measured on a 2-core AMD EPYC (AVX2 only), batch 8, XLA:CPU takes
24.5 ms for the filter gradient of a 1x1 conv 64 -> 64 at 56x56 that one
matrix product does in 4.4 ms, and 158 ms against 15 ms for 1x1/2
256 -> 512 (the forward passes: 2.8 and 10.8 ms). ResNet-50 has two 1x1
convolutions per block.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")


def _pairs(value, default):
  if value is None:
    return (default, default)
  if isinstance(value, int):
    return (value, value)
  return tuple(value)


def conv_general_dilated(
  lhs,
  rhs,
  window_strides,
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count=1,
  batch_group_count=1,
  precision=None,
  preferred_element_type=None,
  **kwargs,
):
  """`lax.conv_general_dilated`, with the gradients of an ungrouped 2-D
  NHWC/HWIO convolution computed as matrix products on CPU (`_conv`);
  anything else (other backends, groups, input dilation, other layouts,
  sharding arguments) is the library convolution unchanged."""
  library = functools.partial(
    lax.conv_general_dilated,
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=lhs_dilation,
    rhs_dilation=rhs_dilation,
    dimension_numbers=dimension_numbers,
    feature_group_count=feature_group_count,
    batch_group_count=batch_group_count,
    precision=precision,
    preferred_element_type=preferred_element_type,
    **kwargs,
  )
  if (
    jax.default_backend() != "cpu"
    or lhs.ndim != 4
    or feature_group_count != 1
    or batch_group_count != 1
    or _pairs(lhs_dilation, 1) != (1, 1)
    or any(v is not None for v in kwargs.values())  # out_sharding
    or preferred_element_type is not None
    or lhs.dtype != rhs.dtype
    or lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    != lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  ):
    return library()
  strides = _pairs(window_strides, 1)
  dilation = _pairs(rhs_dilation, 1)
  if isinstance(padding, str):
    window = [(k - 1) * d + 1 for k, d in zip(rhs.shape[:2], dilation)]
    padding = lax.padtype_to_pads(lhs.shape[1:3], window, strides, padding)
  padding = tuple(tuple(int(p) for p in pair) for pair in padding)
  return _conv(lhs, rhs, strides, padding, dilation, precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _conv(x, kernel, strides, padding, dilation, precision):
  r"""y = conv(x, K): y[n, h, w, o] = Σ_{i,j,c} pad(x)[n, s·h + d·i,
  s·w + d·j, c] · K[i, j, c, o] (stride s, kernel dilation d); for a 1x1
  kernel without padding, y = x[:, ::s, ::s] · K[0, 0].

  Its gradients, with P the patches of pad(x), P[n, h, w, (i, j, c)] =
  pad(x)[n, s·h + d·i, s·w + d·j, c]:

    ∂L/∂K[(i, j, c), o] = Σ_{n,h,w} P[n, h, w, (i, j, c)] · g[n, h, w, o]
                          (one matrix product, PᵀG)
    ∂L/∂x               = 1x1: G·K[0, 0]ᵀ, placed every s-th pixel;
                          larger kernels: the library's transposed
                          convolution (as fast as the forward on CPU)
  """
  one_pixel = all(
    (size - 1) // stride == 0 for size, stride in zip(x.shape[1:3], strides)
  )
  if (
    kernel.shape[:2] == (1, 1) and padding == ((0, 0), (0, 0)) and not one_pixel
  ):
    # XLA:CPU runs a 1x1 convolution 1.5-5x slower than the same dot
    # (batch 8, ResNet-50's 1x1 shapes, 2-core AMD EPYC): with the dot,
    # ResNet-50's eval forward takes 0.68 instead of 0.90 s (batch 16)
    # and its train step 1.50 instead of 1.59 s (batch 8), 2026-11-24.
    # As a 2-D product: the TFLite converter rejects a 4-D dot_general,
    # and a one-pixel output even as 2-D ("tfl.batch_matmul ... invalid
    # output rank"), hence the library conv there.
    pixels = x[:, :: strides[0], :: strides[1], :]
    y = lax.dot_general(
      pixels.reshape(-1, pixels.shape[3]),
      kernel[0, 0],
      (((1,), (0,)), ((), ())),
      precision=precision,
    )
    return y.reshape(pixels.shape[:3] + (kernel.shape[3],))
  return _library_conv(x, kernel, strides, padding, dilation, precision)


def _library_conv(x, kernel, strides, padding, dilation, precision):
  return lax.conv_general_dilated(
    x,
    kernel,
    strides,
    padding,
    rhs_dilation=dilation,
    dimension_numbers=_NHWC,
    precision=precision,
  )


def _conv_fwd(x, kernel, strides, padding, dilation, precision):
  return _conv(x, kernel, strides, padding, dilation, precision), (x, kernel)


def _patches(x, kernel_shape, out_hw, strides, padding, dilation):
  """P above: (N, Ho, Wo, kh·kw·C), taps (i, j) major, channels minor, so
  that PᵀG reshapes straight to HWIO. Built from kh·kw strided slices:
  `lax.conv_general_dilated_patches` is itself a convolution, and with it
  the filter gradient of a 3x3 64 -> 64 at 56x56 (batch 8) took 141 ms,
  against 73 ms this way and 54 ms for the library's (which is slower
  inside the whole ResNet-50 step: 2.46 against 2.37 s)."""
  kh, kw = kernel_shape
  (sh, sw), (dh, dw) = strides, dilation
  ho, wo = out_hw
  n, c = x.shape[0], x.shape[3]
  if (kh, kw) == (1, 1) and padding == ((0, 0),) * 2:
    return x[:, : sh * (ho - 1) + 1 : sh, : sw * (wo - 1) + 1 : sw, :]
  if (kh, kw) == (sh, sw) and (dh, dw) == (1, 1) and padding == ((0, 0),) * 2:
    # Non-overlapping windows (ViT's patch embedding): a reshape.
    x = x[:, : ho * kh, : wo * kw, :].reshape(n, ho, kh, wo, kw, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, ho, wo, kh * kw * c)
  padded = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
  return jnp.concatenate(
    [
      padded[
        :,
        dh * i : dh * i + sh * (ho - 1) + 1 : sh,
        dw * j : dw * j + sw * (wo - 1) + 1 : sw,
        :,
      ]
      for i in range(kh)
      for j in range(kw)
    ],
    axis=-1,
  )


def _conv_bwd(strides, padding, dilation, precision, residuals, g):
  x, kernel = residuals
  kh, kw, c, o = kernel.shape
  n, ho, wo, _ = g.shape
  pointwise = (kh, kw) == (1, 1) and padding == ((0, 0), (0, 0))
  flat_g = g.reshape(n * ho * wo, o)
  patches = _patches(x, (kh, kw), (ho, wo), strides, padding, dilation)
  d_kernel = lax.dot_general(
    patches.reshape(n * ho * wo, kh * kw * c),
    flat_g,
    (((0,), (0,)), ((), ())),
    precision=precision,
  ).reshape(kh, kw, c, o)
  if pointwise:
    d_x = lax.dot_general(
      flat_g, kernel[0, 0], (((1,), (1,)), ((), ())), precision=precision
    ).reshape(n, ho, wo, c)
    # Every s-th pixel (from 0) fed the output; the rest get no gradient,
    # nor do trailing pixels a stride skipped past.
    (sh, sw) = strides
    d_x = lax.pad(
      d_x,
      jnp.zeros((), d_x.dtype),
      (
        (0, 0, 0),
        (0, x.shape[1] - (sh * (ho - 1) + 1), sh - 1),
        (0, x.shape[2] - (sw * (wo - 1) + 1), sw - 1),
        (0, 0, 0),
      ),
    )
  else:  # the library's transposed convolution
    (d_x,) = jax.linear_transpose(
      lambda x: _library_conv(x, kernel, strides, padding, dilation, precision),
      x,
    )(g)
  return d_x.astype(x.dtype), d_kernel.astype(kernel.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def depthwise_conv(conv: nnx.Conv, x) -> jax.Array:
  """`conv(x)` for a depthwise `nnx.Conv` (one filter per channel).

  On CPU it is computed as the sum of kh·kw shifted copies of the padded
  input, each scaled by one kernel tap, accumulated in float32:

    y[n, h, w, c] = b[c] + Σ_{i,j} pad(x)[n, s·h + d·i, s·w + d·j, c] · K[i, j, 0, c]

  with stride s and kernel dilation d.

  XLA:CPU runs grouped convolutions through a slow generic loop; measured
  on 2 cores, ConvNeXt's 7x7 at (16, 56, 56, 96): 301 ms forward with
  `lax.conv_general_dilated` against 10 ms this way, and 917 against 315 ms
  for the gradient; the ConvNeXt-T train step (batch 8, 224 px) takes
  3.4 s instead of 6.5 s, but XLA's peak-memory account of it grows from
  2.0 to 5.1 GiB (`jax.checkpoint` around the sum did not change that).
  GPUs and TPUs have fast depthwise kernels, so there the module's own
  convolution runs. Same parameters either way.
  """
  groups = conv.feature_group_count
  if jax.default_backend() != "cpu" or groups == 1:
    return conv(x)
  kernel = conv.kernel[...]
  kh, kw, one, channels = kernel.shape
  if one != 1 or groups != channels or conv.in_features != channels:
    return conv(x)  # grouped but not depthwise: the library conv
  dtype = conv.dtype or jnp.result_type(x, kernel)
  pad = conv.padding
  pad = (pad, pad) if isinstance(pad, int) else pad
  if not (isinstance(pad, tuple) and all(isinstance(p, int) for p in pad)):
    return conv(x)  # "SAME"/"VALID" strings: the library conv
  sh, sw = (
    (conv.strides,) * 2
    if isinstance(conv.strides, int)
    else tuple(conv.strides)
  )
  dh, dw = (
    (conv.kernel_dilation,) * 2
    if isinstance(conv.kernel_dilation, int)
    else tuple(conv.kernel_dilation or (1, 1))
  )
  padded = jnp.pad(x, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1]), (0, 0)))
  out_h = (padded.shape[1] - dh * (kh - 1) - 1) // sh + 1
  out_w = (padded.shape[2] - dw * (kw - 1) - 1) // sw + 1
  taps = kernel[:, :, 0, :].astype(jnp.float32)
  y = jnp.zeros(x.shape[:1] + (out_h, out_w, channels), jnp.float32)
  for i in range(kh):
    for j in range(kw):
      window = padded[
        :,
        dh * i : dh * i + sh * (out_h - 1) + 1 : sh,
        dw * j : dw * j + sw * (out_w - 1) + 1 : sw,
        :,
      ]
      y = y + window.astype(jnp.float32) * taps[i, j]
  if conv.bias is not None:
    y = y + conv.bias[...].astype(jnp.float32)
  return y.astype(dtype)


# `nnx.Conv` with the CPU gradient of `conv_general_dilated`; same parameters and state.
Conv = functools.partial(nnx.Conv, conv_general_dilated=conv_general_dilated)
