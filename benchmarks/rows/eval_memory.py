"""Row 4: eval images/s vs PyTorch eager; the train step's peak memory
(XLA's account).

Imported by benchmarks/run.py, which puts benchmarks/ and the repository
root on sys.path.
"""

from __future__ import annotations

import statistics
import time

import backbones
import jax
import numpy as np
from flax import nnx
from harness import NUM_CLASSES, batch_of, row

from scenejax import input_pipeline


def rows_eval_memory(s):
  import torch

  out = []
  rng = np.random.default_rng(3)
  images = rng.integers(
    0, 256, (s["eval_batch"], s["size"], s["size"], 3), dtype=np.uint8
  )
  x_torch = torch.from_numpy(
    np.asarray(input_pipeline.normalize(images)).transpose(0, 3, 1, 2).copy()
  )
  for name in s["eval_backbones"]:
    model, hf = backbones.same_model_pair(name, NUM_CLASSES, s["size"])
    model.eval()
    graphdef, state = nnx.split(model)
    forward = jax.jit(
      lambda st, im: nnx.merge(graphdef, st)(input_pipeline.normalize(im))
    )
    x = jax.device_put(images)

    def ours():
      jax.block_until_ready(forward(state, x))

    if hf is not None:
      hf.eval()

      def theirs():
        with torch.no_grad():
          hf(x_torch)

      t_ours, t_theirs = backbones.interleaved_medians(
        ours, theirs, repeats=s["repeats"]
      )
      comparison = f"{s['eval_batch'] / t_theirs:,.1f} images/s"
      ratio = t_theirs / t_ours
    else:
      ours()
      t_ours = statistics.median(_times(ours, s["repeats"]))
      comparison, ratio = "— (no transformers model)", None
    model.train()
    memory = backbones.JaxStep(model, NUM_CLASSES, batch_of(s)).memory_bytes()
    out.append(
      row(
        4,
        f"{name}: eval throughput; train-step peak memory",
        f"{s['eval_batch'] / t_ours:,.1f} images/s; {memory / 2**20:,.0f} MiB",
        comparison,
        ratio,
        "report (ratio = scenejax / PyTorch images/s)",
        None,
        f"eval batch {s['eval_batch']}, train batch {s['batch']}, "
        f"{s['size']} px, fp32",
        peak_memory_bytes=memory,
      )
    )
  return out


def _times(fn, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times
