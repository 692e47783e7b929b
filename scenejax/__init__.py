"""scenejax: scene recognition with semantic priors, in JAX/Flax."""

__version__ = "0.1.0"
