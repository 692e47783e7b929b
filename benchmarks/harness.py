"""What every row of the suite (benchmarks/run.py) shares: the settings of
each mode, one table row as a dict, the machine it ran on, a random train
batch, and the demo run's config.

Imported by run.py after it puts benchmarks/ and the repository root on
sys.path (`demo_config` imports configs/demo.py).
"""

from __future__ import annotations

import os
import platform

import jax
import numpy as np

SETTINGS = {
  "tiny": dict(
    backbones=("vit_ti16",),
    eval_backbones=("vit_ti16", "shufflenet_v2_x0_5"),
    size=32,
    batch=4,
    repeats=1,
    eval_batch=4,
    images=40,
    maps=20,
    map_size=64,
    demo_per_class=8,
    segmenters=("upernet_convnext_atto",),
    segmenter_size=64,
    seg_train=("deeplabv3plus_resnet_tiny", 32, 4),  # model, crop, batch
    # plain backbone, SAS-Net, its segmenter, image size
    deployment=(
      "resnet_tiny",
      "sasnet_resnet_tiny",
      "deeplabv3plus_resnet_tiny",
      32,
    ),
    export_backbone="resnet18",
    export_demo_epochs=0,
    photo_short_side=96,
    deployment_segmenter=dict(  # the harness check: small and quick
      aspp_rates=(1, 2, 3), aspp_width=8, low_level_width=4, decoder_width=8
    ),
    startup_commands=("evaluate, demo workdir",),
  ),
  "quick": dict(
    backbones=("resnet50", "vit_b16"),
    eval_backbones=(
      "resnet18",
      "resnet50",
      "vit_ti16",
      "vit_b16",
      "convnext_tiny",
      "mobilenetv3_large",
      "swin_b",
      "mobilevit_s",
      "vgg16",
      "densenet121",
      "shufflenet_v2_x2_0",
    ),
    # Row 3 (train step vs PyTorch eager, same weights): these besides
    # `backbones`.
    compared_backbones=(
      "swin_b",
      "mobilevit_s",
      "vgg16",
      "densenet121",
      "shufflenet_v2_x2_0",
      "mobilenetv3_large",
    ),
    size=224,
    batch=8,
    repeats=3,
    eval_batch=16,
    images=200,
    maps=200,
    map_size=256,
    demo_per_class=150,
    segmenters=("segformer_b0", "upernet_convnext_tiny"),
    segmenter_size=512,
    seg_train=("deeplabv3plus_resnet50", 256, 2),
    deployment=("resnet18", "sasnet_resnet18", "upernet_convnext_small", 224),
    export_backbone="resnet50",
    export_demo_epochs=12,
    photo_short_side=768,
  ),
  "full": dict(
    backbones=("resnet50", "vit_b16"),
    eval_backbones=(
      "resnet18",
      "resnet34",
      "resnet50",
      "vit_ti16",
      "vit_s16",
      "vit_b16",
      "convnext_tiny",
      "convnext_base",
      "mobilenetv3_large",
      "swin_b",
      "mobilevit_s",
      "vgg16",
      "densenet121",
      "shufflenet_v2_x2_0",
    ),
    compared_backbones=(
      "swin_b",
      "mobilevit_s",
      "vgg16",
      "vgg16_bn",
      "densenet121",
      "shufflenet_v2_x1_5",
      "shufflenet_v2_x2_0",
      "mobilenetv3_large",
    ),
    size=224,
    batch=32,
    repeats=7,
    eval_batch=32,
    images=400,
    maps=400,
    map_size=256,
    demo_per_class=150,
    segmenters=("segformer_b0", "segformer_b2", "upernet_convnext_tiny"),
    segmenter_size=512,
    seg_train=("deeplabv3plus_resnet50", 512, 8),
    deployment=("resnet18", "sasnet_resnet18", "upernet_convnext_small", 224),
    export_backbone="resnet50",
    export_demo_epochs=12,
    photo_short_side=768,
  ),
}
NUM_CLASSES = 397  # SUN397


def machine() -> str:
  device = jax.devices()[0]
  return (
    f"{platform.machine()} {os.cpu_count()} cores, "
    f"{jax.device_count()}x {device.device_kind} ({device.platform}), "
    f"JAX {jax.__version__}"
  )


def row(number, what, ours, theirs, ratio, target, met, setting, **extra):
  return dict(
    row=number,
    what=what,
    scenejax=ours,
    comparison=theirs,
    ratio=None if ratio is None else round(float(ratio), 4),
    target=target,
    met=met,
    setting=setting,
    machine=machine(),
    **extra,
  )


def batch_of(s):
  rng = np.random.default_rng(0)
  return {
    "image": rng.integers(
      0, 256, (s["batch"], s["size"], s["size"], 3), dtype=np.uint8
    ),
    "label": rng.integers(0, NUM_CLASSES, s["batch"]).astype(np.int32),
  }


def demo_config(s, num_epochs=2):
  from configs import demo

  config = demo.get_config()
  config.data.train_per_class = s["demo_per_class"]
  config.data.test_per_class = max(4, s["demo_per_class"] // 3)
  config.num_epochs = num_epochs
  config.batch_size = min(config.batch_size, 8 * s["demo_per_class"])
  config.progress_bar = False
  return config
