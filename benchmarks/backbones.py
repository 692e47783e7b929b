"""Train steps of scenejax backbones and their transformers/PyTorch twins,
for the suite (benchmarks/run.py rows 1-4).

`same_model_pair` gives a scenejax model and a transformers model holding
the same weights (saved as safetensors, loaded through `init_from`);
`JaxStep` is the trainer's jitted, donated train step with an SGD
optimizer; `torch_step` is the same step in PyTorch eager; and
`interleaved_medians` times callables alternately after a warm-up.
Needs the test extra (torch, transformers); scenejax itself does not.
"""

import functools
import os
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from scenejax import input_pipeline, models
from scenejax.tasks import classification

# The torch.nn references of the tests are the PyTorch comparison for the
# backbones transformers lacks.
sys.path.append(
  os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests")
)
from scenejax.models import shufflenet, swin, vgg

# PyTorch's OpenMP threads spin after each parallel region by default; on a
# 2-core machine the spinning steals the cores from the JAX step that runs
# next in the interleaving (measured: JAX's ResNet-50 step 4.5 s instead of
# 2.8 s). Passive waiting costs PyTorch nothing measurable.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def hf_model(name, num_classes, image_size=224):
  """The transformers model with scenejax `name`'s architecture, random
  init; None where transformers has no counterpart (VGG, DenseNet,
  ShuffleNetV2, MobileNetV3: see `torch_reference`)."""
  import transformers

  if name in ("swin_t", "swin_b"):
    embed, depths, heads = swin.VARIANTS[
      {"swin_t": "tiny", "swin_b": "base"}[name]
    ]
    return transformers.SwinForImageClassification(
      transformers.SwinConfig(
        embed_dim=embed,
        depths=list(depths),
        num_heads=list(heads),
        image_size=image_size,
        num_labels=num_classes,
      )
    )
  if name == "mobilevit_s":
    return transformers.MobileViTForImageClassification(
      transformers.MobileViTConfig(
        image_size=image_size, num_labels=num_classes
      )
    )

  resnets = {
    "resnet18": ("basic", [2, 2, 2, 2], [64, 128, 256, 512]),
    "resnet34": ("basic", [3, 4, 6, 3], [64, 128, 256, 512]),
    "resnet50": ("bottleneck", [3, 4, 6, 3], [256, 512, 1024, 2048]),
  }
  vits = {
    "vit_ti16": (192, 12, 3),
    "vit_s16": (384, 12, 6),
    "vit_b16": (768, 12, 12),
    "vit_l16": (1024, 24, 16),
  }
  convnexts = {
    "convnext_tiny": ([3, 3, 9, 3], [96, 192, 384, 768]),
    "convnext_small": ([3, 3, 27, 3], [96, 192, 384, 768]),
    "convnext_base": ([3, 3, 27, 3], [128, 256, 512, 1024]),
  }
  if name in resnets:
    layer_type, depths, widths = resnets[name]
    return transformers.ResNetForImageClassification(
      transformers.ResNetConfig(
        layer_type=layer_type,
        depths=depths,
        hidden_sizes=widths,
        num_labels=num_classes,
      )
    )
  if name in vits:
    width, depth, heads = vits[name]
    return transformers.ViTForImageClassification(
      transformers.ViTConfig(
        hidden_size=width,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        intermediate_size=4 * width,
        image_size=image_size,
        num_labels=num_classes,
      )
    )
  if name in convnexts:
    depths, widths = convnexts[name]
    return transformers.ConvNextForImageClassification(
      transformers.ConvNextConfig(
        depths=depths, hidden_sizes=widths, num_labels=num_classes
      )
    )
  return None


def torch_reference(name, num_classes):
  """The test suite's torch.nn network (torchvision's / timm's names) for
  the backbones without a transformers twin; None for others."""
  import torch_backbones as tb  # tests/, on the path (top of the file)

  shufflenets = {
    f"shufflenet_v2_{w}": widths for w, widths in shufflenet.WIDTHS.items()
  }
  if name in ("vgg16", "vgg16_bn"):
    return tb.TimmVGG(vgg.VGG16, name == "vgg16_bn", num_classes=num_classes)
  if name == "densenet121":
    return tb.TorchvisionDenseNet(classes=num_classes)
  if name in shufflenets:
    return tb.TorchvisionShuffleNetV2(shufflenets[name], classes=num_classes)
  if name == "mobilenetv3_large":
    return tb.TorchvisionMobileNetV3(classes=num_classes)
  return None


def same_model_pair(name, num_classes, image_size=224):
  """(scenejax model, PyTorch model) with the same weights: the
  transformers twin saved with save_pretrained, or the torch.nn reference's
  state dict as safetensors, loaded with `init_from`. Without either:
  (random-init scenejax model, None)."""
  options = {"image_size": image_size} if name.startswith("vit") else {}
  reference = torch_reference(name, num_classes)
  if reference is not None:
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as d:
      file = os.path.join(d, "model.safetensors")
      save_file(
        {k: v.contiguous() for k, v in reference.state_dict().items()}, file
      )
      return models.create(name, num_classes, init_from=file), reference
  hf = hf_model(name, num_classes, image_size)
  if hf is None:
    return models.create(name, num_classes, rngs=nnx.Rngs(0), **options), None
  with tempfile.TemporaryDirectory() as d:
    hf.save_pretrained(d)
    model = models.create(name, num_classes, init_from=d, **options)
  return model, hf


def same_segmenter_pair(name, num_classes=150):
  """(scenejax segmenter, transformers segmenter), same random weights,
  in inference mode."""
  import transformers

  if name.startswith("segformer"):
    from scenejax.models import segformer

    depths, widths, heads, decoder = segformer.VARIANTS[name.split("_")[1]]
    hf = transformers.SegformerForSemanticSegmentation(
      transformers.SegformerConfig(
        depths=list(depths),
        hidden_sizes=list(widths),
        num_attention_heads=list(heads),
        decoder_hidden_size=decoder,
        num_labels=num_classes,
      )
    )
  else:
    from scenejax.models import convnext

    depths, widths = convnext.VARIANTS[name.rsplit("_", 1)[1]]
    hf = transformers.UperNetForSemanticSegmentation(
      transformers.UperNetConfig(
        backbone_config=transformers.ConvNextConfig(
          depths=list(depths),
          hidden_sizes=list(widths),
          out_features=["stage1", "stage2", "stage3", "stage4"],
        ),
        auxiliary_in_channels=widths[2],
        num_labels=num_classes,
      )
    )
  hf.eval()
  with tempfile.TemporaryDirectory() as d:
    hf.save_pretrained(d)
    model = models.create(name, num_classes, init_from=d)
  model.eval()
  return model, hf


class JaxStep:
  """A jitted SGD step (state donated), as the trainer builds it: epoch
  and prototype are arguments, not constants XLA could fold. Calling the
  object runs one step on `batch` and waits for it."""

  def __init__(self, model, num_classes, batch, loss_cfg=None, similarity=None):
    optimizer = nnx.Optimizer(
      model, optax.sgd(1e-3, momentum=0.9), wrt=nnx.Param
    )
    graphdef, self.state = nnx.split((model, optimizer))
    cfg = loss_cfg or classification.LossConfig.with_defaults(
      labels="ce", bcl_weight=0.0
    )
    self.similarity = jnp.asarray(
      np.eye(num_classes) if similarity is None else similarity, jnp.float32
    )  # read only by GLS/BCL
    self.step = jax.jit(
      functools.partial(
        classification.train_step,
        graphdef,
        loss_cfg=cfg,
        mean=input_pipeline.IMAGENET_MEAN,
        std=input_pipeline.IMAGENET_STD,
      ),
      donate_argnums=0,
    )
    self.batch = jax.device_put(batch)
    self.epoch = np.float32(0.5)

  def __call__(self):
    self.state, metrics = self.step(
      self.state, self.batch, self.epoch, self.similarity
    )
    jax.block_until_ready(metrics)

  def memory_bytes(self) -> int:
    """XLA's own account of the step's peak: arguments + outputs + temps,
    less what donation lets outputs reuse."""
    stats = (
      self.step.lower(self.state, self.batch, self.epoch, self.similarity)
      .compile()
      .memory_analysis()
    )
    return int(
      stats.argument_size_in_bytes
      + stats.output_size_in_bytes
      + stats.temp_size_in_bytes
      - stats.alias_size_in_bytes
    )


def torch_step(hf):
  import torch

  opt = torch.optim.SGD(hf.parameters(), lr=1e-3, momentum=0.9)
  hf.train()

  def step(images, labels):
    opt.zero_grad(set_to_none=True)
    out = hf(images)  # transformers: an output object; torch.nn: logits
    logits = getattr(out, "logits", out)
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    opt.step()
    return loss

  return step


def interleaved_medians(*fns, repeats):
  """Median seconds of each of `fns`, after one warm-up call each
  (compile, allocation), alternating a, b, a, b..."""
  for fn in fns:
    fn()
  times = [[] for _ in fns]
  for _ in range(repeats):
    for fn, fn_times in zip(fns, times, strict=True):
      start = time.perf_counter()
      fn()
      fn_times.append(time.perf_counter() - start)
  return tuple(statistics.median(t) for t in times)
