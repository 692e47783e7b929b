"""What every model family shares once it has `forward_features`."""

import jax
from flax import nnx

from scenejax.models.conv import Conv, depthwise_conv


class ConvBN(nnx.Module):
  """Conv (no bias) -> BatchNorm -> optional activation, padded by
  (kernel - 1) // 2; a depthwise conv goes through `depthwise_conv`.
  PyTorch's BatchNorm defaults unless given (its momentum 0.1 on the new
  value is 0.9 here; eps 1e-5)."""

  def __init__(
    self,
    in_features,
    out,
    kernel,
    *,
    stride=1,
    groups=1,
    activation=None,
    epsilon=1e-5,
    momentum=0.9,
    kernel_init=None,
    dtype,
    rngs,
  ):
    init = {} if kernel_init is None else {"kernel_init": kernel_init}
    self.conv = Conv(
      in_features,
      out,
      (kernel, kernel),
      strides=stride,
      padding=(kernel - 1) // 2,
      feature_group_count=groups,
      use_bias=False,
      dtype=dtype,
      rngs=rngs,
      **init,
    )
    self.bn = nnx.BatchNorm(
      out, momentum=momentum, epsilon=epsilon, dtype=dtype, rngs=rngs
    )
    self.activation = activation

  def __call__(self, x):
    x = self.bn(depthwise_conv(self.conv, x))
    return x if self.activation is None else self.activation(x)


class Classifier(nnx.Module):
  """A family defines `forward_features(x) -> (embedding, [feature maps])`
  and a `head`; the rest of the zoo's interface follows from those."""

  def embed(self, x) -> jax.Array:
    """The penultimate embedding (what the head classifies)."""
    return self.forward_features(x)[0]

  def features(self, x) -> list[jax.Array]:
    """The intermediate NHWC feature maps (per stage, or per ViT block)."""
    return self.forward_features(x)[1]

  def __call__(self, x):
    return self.head(self.embed(x))
