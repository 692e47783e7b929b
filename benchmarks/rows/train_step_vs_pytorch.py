"""Row 3: the train step vs the same architecture in PyTorch eager (same
weights, fp32 on CPU); the bf16 ViT-B/16 step and its model FLOPs
utilisation on an accelerator.

Imported by benchmarks/run.py, which puts benchmarks/ and the repository
root on sys.path.
"""

from __future__ import annotations

import statistics
import time

import backbones
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from harness import NUM_CLASSES, SETTINGS, batch_of, row

from scenejax import input_pipeline, models

# Dense bf16 peak FLOP/s by device kind (vendor data sheets), for MFU.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12}
VIT_B16_FORWARD_FLOPS = 2 * 17.6e9  # per 224-px image (17.6 GMACs)


def rows_pytorch(s):
  import torch

  out = []
  batch = batch_of(s)
  images = torch.from_numpy(
    np.asarray(input_pipeline.normalize(batch["image"]))
    .transpose(0, 3, 1, 2)
    .copy()
  )
  labels = torch.from_numpy(batch["label"].astype(np.int64))
  setting = (
    f"batch {s['batch']}, {s['size']} px, fp32, torch "
    f"{torch.__version__} ({torch.get_num_threads()} threads), "
    "same weights"
  )
  for name in (*s["backbones"], *s.get("compared_backbones", ())):
    model, hf = backbones.same_model_pair(name, NUM_CLASSES, s["size"])
    ours = backbones.JaxStep(model, NUM_CLASSES, batch)
    theirs = backbones.torch_step(hf)
    t_ours, t_theirs = backbones.interleaved_medians(
      ours, lambda: theirs(images, labels), repeats=s["repeats"]
    )
    ratio = t_theirs / t_ours  # > 1: scenejax faster
    out.append(
      row(
        3,
        f"{name} train step vs PyTorch eager (CPU)",
        f"{t_ours:.3f} s",
        f"{t_theirs:.3f} s",
        ratio,
        ">= 1.0x (PyTorch time / scenejax time)",
        ratio >= 1.0,
        setting,
      )
    )
  out.extend(rows_accelerator(s))
  return out


def rows_accelerator(s):
  """bf16 ViT-B/16 step time and MFU where JAX sees a GPU/TPU; rows marked
  unmeasured otherwise (never estimated)."""
  device = jax.devices()[0]
  if device.platform == "cpu":
    return [
      row(
        3,
        f"{name} bf16 train step and MFU on an accelerator",
        "unmeasured: no accelerator in this run",
        "—",
        None,
        ">= 40% MFU on an H200",
        None,
        "JAX sees only the CPU",
      )
      for name in ("resnet50", "vit_b16")
    ]
  batch_size = 256 if s is not SETTINGS["tiny"] else 8
  rng = np.random.default_rng(0)
  batch = {
    "image": rng.integers(0, 256, (batch_size, 224, 224, 3), dtype=np.uint8),
    "label": rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32),
  }
  step = backbones.JaxStep(
    models.create("vit_b16", NUM_CLASSES, rngs=nnx.Rngs(0), dtype=jnp.bfloat16),
    NUM_CLASSES,
    batch,
  )
  step()
  times = []
  for _ in range(max(5, s["repeats"])):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  seconds = statistics.median(times)
  images_per_s = batch_size / seconds
  peak = next(
    (v for k, v in PEAK_BF16_FLOPS.items() if k in device.device_kind), None
  )
  mfu = (
    images_per_s * 3 * VIT_B16_FORWARD_FLOPS / peak / jax.device_count()
    if peak
    else None
  )
  return [
    row(
      3,
      "vit_b16 bf16 train step on the accelerator",
      f"{images_per_s / jax.device_count():,.0f} images/s per device"
      + (f", MFU {mfu:.1%}" if mfu is not None else ""),
      "JAX-Toolbox ViT-B/16: 1,459 images/s per H100 (16% MFU)",
      mfu,
      ">= 40% MFU on an H200",
      None if mfu is None else mfu >= 0.40,
      f"batch {batch_size}, 224 px, bf16 compute, fp32 params",
    )
  ]
