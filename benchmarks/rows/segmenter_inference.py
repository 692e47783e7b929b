"""Row 8: segmenter inference vs transformers eager (same weights, fp32 on
CPU), `segment.Predictor` end to end, the prototype build from images,
and bf16 segmenters on an accelerator.

Imported by benchmarks/run.py, which puts benchmarks/ and the repository
root on sys.path.
"""

from __future__ import annotations

import os
import statistics
import time

import backbones
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from harness import SETTINGS, row

from scenejax import models


def rows_segmenter(s):
  import torch

  from scenejax import segment

  out, size = [], s["segmenter_size"]
  rng = np.random.default_rng(4)
  images = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
  x_torch = torch.from_numpy(
    ((images / 255.0 - 0.45) / 0.225).astype(np.float32).transpose(0, 3, 1, 2)
  )
  for name in s["segmenters"]:
    model, hf = backbones.same_segmenter_pair(name)
    graphdef, state = nnx.split(model)
    forward = jax.jit(
      lambda st, im: jnp.argmax(
        nnx.merge(graphdef, st)((im / 255.0 - 0.45) / 0.225), -1
      )
    )
    x = jax.device_put(images)

    def ours():
      jax.block_until_ready(forward(state, x))

    def theirs():
      with torch.no_grad():
        logits = hf(x_torch).logits
        torch.nn.functional.interpolate(
          logits, size=(size, size), mode="bilinear", align_corners=False
        ).argmax(1)

    t_ours, t_theirs = backbones.interleaved_medians(
      ours, theirs, repeats=s["repeats"]
    )
    predictor = segment.Predictor(
      model, batch_size=1, resize=segment.Resize(size)
    )
    photos = [
      rng.integers(0, 256, (size, size * 4 // 3, 3), dtype=np.uint8)
      for _ in range(2 * s["repeats"])
    ]
    predictor(photos[:1])  # compile
    start = time.perf_counter()
    predictor(photos)
    end_to_end = len(photos) / (time.perf_counter() - start)
    out.append(
      row(
        8,
        f"{name}: segmenter images/s, {size} px",
        f"{1 / t_ours:,.2f} images/s (end to end at {size}x"
        f"{size * 4 // 3}: {end_to_end:,.2f})",
        f"{1 / t_theirs:,.2f} images/s (transformers eager)",
        t_theirs / t_ours,
        "report (ratio = scenejax / PyTorch images/s)",
        None,
        f"batch 1, {size}² px, fp32, 150 classes, logits upsampled + argmax",
      )
    )
    if name == s["segmenters"][0]:
      out.append(_row_prototype_build(name, model, photos, s))
  out.extend(_rows_segmenter_accelerator(s))
  return out


def _row_prototype_build(name, model, photos, s):
  """`prototype build --segmenter`'s loop (JPEG decode, resize, segment,
  presence vectors, partial sums saved) vs the Predictor alone on the same
  images already decoded: what streaming Algorithm 1 costs on top."""
  import io
  import tempfile

  from PIL import Image

  from scenejax import segment
  from scenejax.prototype import segmented

  def jpeg(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()

  records = [
    dict(image=jpeg(p), label=i % 2, name=f"{i}.jpg")
    for i, p in enumerate(photos)
  ]
  predictor = segment.Predictor(
    model, batch_size=2, resize=segment.Resize(s["segmenter_size"])
  )
  predictor(photos[:2])  # compile
  builds, alone = [], []
  for _ in range(2):  # interleaved
    with tempfile.TemporaryDirectory() as tmp:
      start = time.perf_counter()
      segmented.build_from_segmenter(
        predictor,
        records,
        ["a", "b"],
        metric="cosine",
        state_dir=os.path.join(tmp, "state"),
        fingerprint={},
        progress=False,
      )
      builds.append(len(records) / (time.perf_counter() - start))
    start = time.perf_counter()
    predictor(photos)
    alone.append(len(photos) / (time.perf_counter() - start))
  build, predict = max(builds), max(alone)
  return row(
    8,
    f"{name}: prototype build from images, end to end",
    f"{build:,.2f} images/s",
    f"{predict:,.2f} images/s (Predictor alone, decoded images)",
    build / predict,
    "report (ratio = build / Predictor images/s)",
    None,
    f"{len(photos)} JPEGs {photos[0].shape[0]}x{photos[0].shape[1]}, "
    f"batch 2, fp32, best of 2",
  )


def _rows_segmenter_accelerator(s):
  """bf16 segmenter images/s at 512 px where JAX sees a GPU/TPU."""
  from scenejax import segment

  device = jax.devices()[0]
  names = ("segformer_b0", "upernet_convnext_tiny")
  if device.platform == "cpu":
    return [
      row(
        8,
        f"{name}: bf16 segmenter images/s on an accelerator",
        "unmeasured: no accelerator in this run",
        "—",
        None,
        "report",
        None,
        "JAX sees only the CPU",
      )
      for name in names
    ]
  out, batch = [], 32 if s is not SETTINGS["tiny"] else 2
  rng = np.random.default_rng(5)
  photos = [
    rng.integers(0, 256, (512, 683, 3), dtype=np.uint8) for _ in range(batch)
  ]
  for name in names:
    rates = {}
    for dtype in ("float32", "bfloat16"):
      model = models.create(
        name, 150, rngs=nnx.Rngs(0), dtype=models.DTYPES[dtype]
      )
      model.eval()
      predictor = segment.Predictor(model, batch_size=batch)
      predictor(photos)  # compile
      times = []
      for _ in range(max(3, s["repeats"])):
        start = time.perf_counter()
        predictor(photos)
        times.append(time.perf_counter() - start)
      rates[dtype] = batch / statistics.median(times)
    out.append(
      row(
        8,
        f"{name}: bf16 segmenter images/s on the accelerator",
        f"{rates['bfloat16']:,.1f} images/s",
        f"{rates['float32']:,.1f} images/s in fp32",
        rates["bfloat16"] / rates["float32"],
        "report (ratio = bf16 / fp32 images/s)",
        None,
        f"Predictor end to end, batch {batch}, 512x683 photos, "
        f"{device.device_kind}",
      )
    )
  return out
