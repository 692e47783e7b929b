"""DeepLabV3+ (Chen et al. 2018) with a pixel-embedding head, Flax NNX, NHWC:
the segmenter of [SEG] (Jia et al. 2025, "Scene recognition based on deep
metric learning and semantic segmentation").

[SEG]'s abstract names the parts, not their sizes; this is the standard
reading, DeepLabV3+ as published:

  * backbone: a dilated ResNet (`resnet.ResNet(output_stride=16)`: the
    last stage keeps stride 16 and dilates by 2); its stage-1 output is the
    stride-4 "shallow high-resolution" map. Or ConvNeXt's four stages
    (`deeplabv3plus_convnext_*`): at output stride 16 the last stage's
    2x2/2 down-sampling conv runs at stride 1 and its 7x7 convolutions
    dilate by 2 (`convnext.Stage`), the same a-trous rule, so the ASPP
    rates stay 6/12/18 and ImageNet weights still load; `output_stride=32`
    gives the undilated network (halve the rates then);
  * ASPP on the last map: a 1x1 ConvBNReLU, three 3x3 ConvBNReLU with
    dilation `aspp_rates` (6, 12, 18 at output stride 16; DeepLab doubles
    them at 8), and image pooling (global mean -> 1x1 ConvBNReLU ->
    broadcast); concatenated -> 1x1 ConvBNReLU. No dropout (torchvision's
    0.5 / mmsegmentation's 0.1 are a regulariser the abstract does not
    mention; `dropout` adds it);
  * decoder: the stride-4 map -> 1x1 ConvBNReLU to 48 channels; the ASPP
    output upsampled bilinearly to stride 4 and concatenated; two 3x3
    ConvBNReLU (256) "recover details and boundaries"; a 1x1 classifier
    (`head`) over the classes;
  * embedding head ([SEG]'s deep-metric-learning module): on the same
    refined stride-4 features, 1x1 ConvBNReLU -> 1x1 conv to
    `embedding_dim` (D = 64) channels, a projection head as in Wang et al.
    2021's pixel contrast; used by the training loss only.

Output convention as every segmenter (`scenejax.models.segmenter`): logits
at the input resolution, channel k = ADE20K id k + 1.

Pretrained weights: a Hugging Face ResNet checkpoint (microsoft/resnet-50,
-101) initialises the backbone (`init_from`); a scenejax training workdir
holds the whole segmenter (`scenejax.segment --init_from=WORKDIR`).

References:
  L.-C. Chen, Y. Zhu, G. Papandreou, F. Schroff, H. Adam. Encoder-Decoder
  with Atrous Separable Convolution for Semantic Image Segmentation. ECCV
  2018. doi:10.1007/978-3-030-01234-2_49.
  W. Wang, T. Zhou, F. Yu, J. Dai, E. Konukoglu, L. Van Gool. Exploring
  Cross-Image Pixel Contrast for Semantic Segmentation. ICCV 2021.
  doi:10.1109/ICCV48922.2021.00721.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from scenejax.models import convnext, pretrained, resnet
from scenejax.models.conv import Conv
from scenejax.models.segmenter import ConvBNReLU, Segmenter, resize_bilinear
from scenejax.models.vit import IMAGENET_MEAN, IMAGENET_STD

LICENCE = "the backbone checkpoint's (microsoft/resnet-*: Apache-2.0)"


class ASPP(nnx.Module):
  """Atrous spatial pyramid pooling (DeepLabV3 §3.3)."""

  def __init__(self, in_features, width, rates, *, dtype, rngs):
    block = functools.partial(ConvBNReLU, dtype=dtype, rngs=rngs)
    self.branches = nnx.List(
      [block(in_features, width, 1)]
      + [block(in_features, width, 3, dilation=r) for r in rates]
    )
    self.pool = block(in_features, width, 1)
    self.project = block(width * (len(rates) + 2), width, 1)

  def __call__(self, x):
    outs = [branch(x) for branch in self.branches]
    pooled = self.pool(jnp.mean(x, axis=(1, 2), keepdims=True))
    outs.append(jnp.broadcast_to(pooled, outs[0].shape))
    return self.project(jnp.concatenate(outs, axis=-1))


class DeepLabV3Plus(Segmenter):
  """DeepLabV3+ on a ResNet or ConvNeXt; `__call__(x)` -> logits at the input size,
  `decode_with_embeddings(x)` -> (logits, embeddings) at stride 4."""

  head_prefixes = ("head/",)

  def __init__(
    self,
    depth: str,
    num_classes: int,
    *,
    output_stride: int = 16,
    aspp_rates=(6, 12, 18),
    aspp_width: int = 256,
    low_level_width: int = 48,
    decoder_width: int = 256,
    embedding_dim: int = 64,
    dropout: float = 0.0,
    pixel_mean=IMAGENET_MEAN,
    pixel_std=IMAGENET_STD,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.depth, self.num_classes = depth, num_classes
    self.pixel_mean, self.pixel_std = tuple(pixel_mean), tuple(pixel_std)
    if depth.startswith("convnext_"):
      self.backbone = convnext.Trunk(
        depth.removeprefix("convnext_"),
        layer_scale_init=1e-6,
        output_stride=output_stride,
        dtype=dtype,
        rngs=rngs,
      )
      widths = self.backbone.widths
    else:
      self.backbone = getattr(resnet, depth)(
        0, output_stride=output_stride, dtype=dtype, rngs=rngs
      )
      widths = self.backbone.feature_widths
    self.low_level_stride = self.backbone.stage_strides[0]
    block = functools.partial(ConvBNReLU, dtype=dtype, rngs=rngs)
    self.aspp = ASPP(
      widths[-1], aspp_width, tuple(aspp_rates), dtype=dtype, rngs=rngs
    )
    self.low_level = block(widths[0], low_level_width, 1)
    self.refine = nnx.Sequential(
      block(aspp_width + low_level_width, decoder_width, 3),
      block(decoder_width, decoder_width, 3),
    )
    # Only with a rate: a Dropout holds an RNG stream in the model's state.
    self.dropout = nnx.data(
      nnx.Dropout(dropout, rngs=rngs) if dropout else None
    )
    self.head = Conv(decoder_width, num_classes, (1, 1), dtype=dtype, rngs=rngs)
    self.embedding = nnx.Sequential(
      block(decoder_width, decoder_width, 1),
      Conv(decoder_width, embedding_dim, (1, 1), dtype=dtype, rngs=rngs),
    )
    self.embedding_dim = embedding_dim

  def _features(self, x) -> jax.Array:
    """The decoder's refined features at the low-level map's stride."""
    if isinstance(self.backbone, convnext.Trunk):
      maps = self.backbone.stage_maps(x)
    else:
      maps = self.backbone.forward_features(x)[1]
    return self.decoder_features(maps[0], maps[-1])

  def decoder_features(self, low, high) -> jax.Array:
    """ASPP on the deep map `high`, upsampled to the shallow map `low`,
    fused and refined."""
    high = self.aspp(high)
    low = self.low_level(low)
    high = resize_bilinear(high, low.shape[1:3])
    return self.refine(jnp.concatenate([high, low], axis=-1))

  def decode(self, x) -> jax.Array:
    """Logits at stride 4: (B, H/4, W/4, num_classes)."""
    return self.decode_with_embeddings(x, embeddings=False)[0]

  def decode_with_embeddings(
    self, x, embeddings: bool = True
  ) -> tuple[jax.Array, jax.Array | None]:
    """(logits, pixel embeddings), both at stride 4, from one pass."""
    features = self._features(x)
    dropped = features if self.dropout is None else self.dropout(features)
    return self.head(dropped), (
      self.embedding(features) if embeddings else None
    )


def _builder(depth):
  def build(num_classes, **kw) -> DeepLabV3Plus:
    return DeepLabV3Plus(depth, num_classes, **kw)

  build.__name__ = f"deeplabv3plus_{depth}"
  build.__module__ = __name__
  return build


deeplabv3plus_convnext_tiny = _builder("convnext_tiny")
deeplabv3plus_convnext_small = _builder("convnext_small")
deeplabv3plus_resnet50 = _builder("resnet50")
deeplabv3plus_resnet101 = _builder("resnet101")
# The demo's: resnet_tiny's three stages at strides 1, 2, 4 on 32 px
# scenes (low-level map at stride 1, ASPP at 4; rates 1, 2, 3 fit 8x8).
deeplabv3plus_resnet_tiny = _builder("resnet_tiny")


def checkpoint_options(path: str) -> dict:
  """Pixel statistics of the backbone's Hugging Face checkpoint."""
  if not pretrained.is_hf(path):
    raise pretrained.CheckpointError(
      f"{path}: DeepLabV3+ initialises its backbone from a Hugging Face "
      "checkpoint (a directory with config.json and model.safetensors)"
    )
  mean, std = pretrained.hf_pixel_stats(path, (IMAGENET_MEAN, IMAGENET_STD))
  return dict(pixel_mean=mean, pixel_std=std)


def load_checkpoint(model: DeepLabV3Plus, path: str) -> None:
  """ImageNet weights of a Hugging Face ResNet or ConvNeXt into the
  backbone (its classifier head and head norm are not used); the ASPP,
  decoder and heads keep their initialisation."""
  config = pretrained.read_hf_config(path)
  wanted = (
    "convnext" if isinstance(model.backbone, convnext.Trunk) else "resnet"
  )
  if config.get("model_type") != wanted:
    raise pretrained.CheckpointError(
      f"{path}: deeplabv3plus_{model.depth} initialises its backbone from a "
      f"Hugging Face {wanted} checkpoint, not model_type "
      f"{config.get('model_type')!r}; a trained scenejax segmenter is "
      "loaded from its workdir (scenejax.segment --init_from=WORKDIR)"
    )
  if wanted == "resnet":
    resnet.load_checkpoint(model.backbone, path)
    return
  _, tensors, source = pretrained.read_hf(path)
  pretrained.check_hf_config(
    config,
    source,
    "convnext",
    {
      "depths": list(model.backbone.depths),
      "hidden_sizes": list(model.backbone.widths),
    },
  )
  params = {
    k: v
    for k, v in convnext.from_hf(tensors).items()
    if not k.startswith(("head/", "head_norm/"))
  }
  pretrained.assign(model.backbone, params, source=source)
