"""What every segmenter shares: the output contract and two resampling ops.

A segmenter maps NHWC float images (B, H, W, 3) to per-pixel logits
(B, H, W, num_classes) at the input resolution. Each family defines
`decode(x)`, its logits at the decoder's own stride (4 for UperNet and
SegFormer); `__call__` upsamples them bilinearly with half-pixel centres,
as transformers' UperNet does and as SegFormer users are told to.

For ADE20K-150 checkpoints channel k is ADE20K id k + 1 (scenejax's label
convention: 1..150, 0 = unlabeled; see `scenejax.datasets.label_maps`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from scenejax.models.conv import Conv


def resize_bilinear(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Bilinear resize of NHWC `x` to `size`, half-pixel centres, no
  anti-aliasing: PyTorch's `interpolate(mode="bilinear",
  align_corners=False)`. Samples left of the first pixel centre take the
  edge pixel (both clamp)."""
  if tuple(x.shape[1:3]) == tuple(size):
    return x
  shape = (x.shape[0], *size, x.shape[3])
  return jax.image.resize(x, shape, "bilinear", antialias=False)


@functools.lru_cache(maxsize=64)
def _adaptive_pool_matrix(size: int, bins: int) -> np.ndarray:
  """(bins, size) averaging weights of PyTorch's adaptive average pooling:
  bin i covers [floor(i·size/bins), ceil((i+1)·size/bins))."""
  matrix = np.zeros((bins, size), np.float32)
  for i in range(bins):
    start = (i * size) // bins
    end = -((-(i + 1) * size) // bins)
    matrix[i, start:end] = 1.0 / (end - start)
  return matrix


def adaptive_avg_pool(x: jax.Array, bins: int | tuple[int, int]) -> jax.Array:
  """`torch.nn.AdaptiveAvgPool2d(bins)` on NHWC `x`: (B, bh, bw, C), with
  bins = bh = bw or (bh, bw). The bins overlap when the map is not a
  multiple of them, and repeat rows when the map is smaller (as in
  PyTorch); two small matrix products, exact in float32."""
  bh, bw = (bins, bins) if isinstance(bins, int) else bins
  rows = jnp.asarray(_adaptive_pool_matrix(x.shape[1], bh), x.dtype)
  cols = jnp.asarray(_adaptive_pool_matrix(x.shape[2], bw), x.dtype)
  return jnp.einsum("ih,bhwc,jw->bijc", rows, x, cols)


class ConvBNReLU(nnx.Module):
  """Conv (no bias) -> BatchNorm -> ReLU, mmsegmentation's ConvModule."""

  def __init__(
    self, in_features, out_features, kernel, *, dilation=1, dtype, rngs
  ):
    self.conv = Conv(
      in_features,
      out_features,
      (kernel, kernel),
      padding=dilation * (kernel // 2),
      kernel_dilation=dilation,
      use_bias=False,
      dtype=dtype,
      rngs=rngs,
    )
    # PyTorch's BatchNorm2d defaults (eps 1e-5, momentum 0.1 = 0.9 here).
    self.batch_norm = nnx.BatchNorm(
      out_features, momentum=0.9, epsilon=1e-5, dtype=dtype, rngs=rngs
    )

  def __call__(self, x):
    return jax.nn.relu(self.batch_norm(self.conv(x)))


class Segmenter(nnx.Module):
  """A family defines `decode(x)` (logits at the decoder's stride) and
  sets `num_classes`, `pixel_mean`, `pixel_std`; the rest follows."""

  def __call__(self, x) -> jax.Array:
    """(B, H, W, 3) images -> (B, H, W, num_classes) logits."""
    return resize_bilinear(self.decode(x), x.shape[1:3])
