"""Model zoo: `create(name, num_classes)` returns a Flax NNX classifier.

Every model takes NHWC float images and returns logits; `embed(x)` gives the
penultimate embedding.
"""

from __future__ import annotations

from flax import nnx

from scenejax.models import resnet

_MODELS = {
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "resnet50": resnet.resnet50,
    "resnet_tiny": resnet.resnet_tiny,
}
NAMES = tuple(sorted(_MODELS))


def create(name: str, num_classes: int, *, rngs: nnx.Rngs | None = None):
  """Builds model `name` with a `num_classes`-way head (random init)."""
  if name not in _MODELS:
    raise ValueError(f"unknown model {name!r}; known: {', '.join(NAMES)}")
  return _MODELS[name](num_classes, rngs=rngs or nnx.Rngs(0))
