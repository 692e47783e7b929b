"""What every model family shares once it has `forward_features`."""

from flax import nnx


class Classifier(nnx.Module):
  """A family defines `forward_features(x) -> (embedding, [feature maps])`
  and a `head`; the rest of the zoo's interface follows from those."""

  def embed(self, x):
    """The penultimate embedding (what the head classifies)."""
    return self.forward_features(x)[0]

  def features(self, x):
    """The intermediate NHWC feature maps (per stage, or per ViT block)."""
    return self.forward_features(x)[1]

  def __call__(self, x):
    return self.head(self.embed(x))
