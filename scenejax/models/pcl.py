"""Pairwise consistency learning model ([PCL] §4, Eq. 1-2).

A backbone with two training-only additions:
  * a CAM module (1x1 conv -> global average pool -> linear classifier)
    attached to an intermediate feature map, by default the input of the
    last down-sampling stage (ResNet/ConvNeXt stage 3, 14x14 at 224 px; a
    ViT's patch grid after 3/4 of its blocks). Its logits are r.
  * a linear classifier for the erased image I* (logits q), sharing the
    backbone with the original image (logits p).

`export(model)` returns the plain backbone: the deployed network has the
baseline's parameters and FLOPs exactly.

References:
  [PCL] G. Chen, X. Song, B. Wang, S. Jiang. See More for Scene: Pairwise
  Consistency Learning for Scene Classification. Advances in Neural
  Information Processing Systems 34 (NeurIPS), 2021.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from scenejax.models.conv import Conv


def class_activation_map(features, weights, classes) -> jax.Array:
  """CAM of each image for its class, min-max normalised. [PCL] Eq. 1.

    M_n = Σ_c W[c, t_n] · A_n[..., c],   M_n <- (M_n - min M_n) /
                                                (max M_n - min M_n)

  Args:
    features: A, (N, h, w, C) output of the CAM module's 1x1 conv.
    weights: W, (C, K) kernel of the CAM module's classifier (bias unused:
      it shifts M by a constant that the normalisation removes).
    classes: t, (N,) int class per image.

  Returns:
    (N, h, w) float32 in [0, 1]; a constant map becomes all zeros.
  """
  w = jnp.take(weights.astype(jnp.float32), classes, axis=1)  # (C, N)
  cam = jnp.einsum("nhwc,cn->nhw", features.astype(jnp.float32), w)
  low = cam.min(axis=(1, 2), keepdims=True)
  span = cam.max(axis=(1, 2), keepdims=True) - low
  return (cam - low) / jnp.where(span > 0, span, 1.0)


def erase_mask(cam, size, gamma: float = 0.7) -> jax.Array:
  """Binary keep-mask M_B = T(M, γ) at image size. [PCL] Eq. 2.

  The normalised CAM is resized to `size` = (H, W) bilinearly (half-pixel
  centres) and thresholded: 1 where M < γ (kept), 0 where M ≥ γ (the
  regions the model already uses, erased). No gradient flows through it.

  Returns:
    (N, H, W) float32 of 0s and 1s.
  """
  n = cam.shape[0]
  resized = jax.image.resize(cam, (n,) + tuple(size), method="bilinear")
  return jax.lax.stop_gradient((resized < gamma).astype(jnp.float32))


class PCLModel(nnx.Module):
  """Backbone + CAM module + erased-image classifier ([PCL] §4).

  `__call__(x)` is the backbone's own prediction (what evaluation and
  deployment use); `pcl_outputs(x)` is the training forward: main, side and
  mod logits for `losses.pcl_loss`, plus the keep-mask.
  """

  def __init__(
    self,
    backbone: nnx.Module,
    num_classes: int,
    *,
    cam_stage: int | None = None,
    gamma: float = 0.7,
    rngs: nnx.Rngs,
  ):
    self.backbone = backbone
    stage = backbone.default_cam_stage if cam_stage is None else cam_stage
    widths = backbone.feature_widths
    if not -len(widths) <= stage < len(widths):
      raise ValueError(
        f"cam_stage {stage} out of range: the backbone has "
        f"{len(widths)} feature maps"
      )
    self.cam_stage = stage
    self.gamma = gamma
    width = widths[stage]
    self.cam_conv = Conv(width, width, (1, 1), rngs=rngs)
    self.cam_head = nnx.Linear(width, num_classes, rngs=rngs)
    self.mod_head = nnx.Linear(backbone.num_features, num_classes, rngs=rngs)
    self.pixel_mean = backbone.pixel_mean
    self.pixel_std = backbone.pixel_std

  def __call__(self, x):
    return self.backbone(x)

  def pcl_outputs(self, x) -> dict:
    """{"main": p, "side": r, "mod": q logits, "mask": (N, H, W)} of `x`."""
    embedding, maps = self.backbone.forward_features(x)
    main = self.backbone.head(embedding)
    cam_features = self.cam_conv(maps[self.cam_stage])
    side = self.cam_head(jnp.mean(cam_features, axis=(1, 2)))
    # t is the main classifier's prediction, not the label ([PCL] §4).
    predicted = jnp.argmax(main, axis=-1)
    cam = class_activation_map(
      cam_features, self.cam_head.kernel[...], predicted
    )
    mask = erase_mask(cam, x.shape[1:3], self.gamma)
    erased = x * mask[..., None].astype(x.dtype)
    mod = self.mod_head(self.backbone.embed(erased))
    return dict(main=main, side=side, mod=mod, mask=mask)


def export(model: nnx.Module) -> nnx.Module:
  """The deployable network: a PCL model's backbone, anything else as is."""
  return model.backbone if isinstance(model, PCLModel) else model
