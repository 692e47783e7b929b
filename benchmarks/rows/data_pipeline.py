"""Row 5: input pipeline images/s per core vs the PyTorch DataLoader, its
overhead over a bare loop, and the device's idle time waiting for data
in the demo run.

Imported by benchmarks/run.py, which puts benchmarks/ and the repository
root on sys.path.
"""

from __future__ import annotations

import os

import backbones
import input_pipeline as pipeline_bench
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from harness import demo_config, row

from scenejax import datasets, input_pipeline, sharding, tasks
from scenejax.tasks import classification
from scenejax.training import optim


def data_wait_fraction(s):
  """(fraction, fraction without the prefetch buffers, epoch seconds with
  the pipeline, from memory): the demo's train loop over one epoch reading
  batches through the input pipeline (`device_batches`, as the trainer),
  against the same loop over the same batches already on the devices.
  What the pipeline adds to the epoch is time the device waits for
  data."""
  config = demo_config(s)
  data = datasets.from_config(config)
  similarity = jnp.asarray(
    classification.prototype_for(config, data).similarity
  )
  mesh = sharding.data_parallel_mesh()
  data_sharding = jax.sharding.NamedSharding(
    mesh, jax.sharding.PartitionSpec("data")
  )
  graphdef, state = optim.create_train_state(
    tasks.build_model(config, data.num_classes),
    config,
    len(data.train) // config.batch_size,
  )
  model = nnx.merge(graphdef, state)[0]
  step_fn = classification.jit_train_step(
    graphdef,
    classification.LossConfig.from_config(config.loss),
    mesh,
    (model.pixel_mean, model.pixel_std),
  )
  holder = {"state": state}

  def epoch(batches):  # the trainer's loop, less tqdm and checkpoints
    pending = []
    for step, batch in enumerate(batches):
      holder["state"], metrics = step_fn(
        holder["state"], batch, np.float32(0), similarity
      )
      pending.append(metrics)
      if (step + 1) % config.log_every_steps == 0 and len(pending) > 1:
        float(pending[-2]["loss"])
    jax.device_get(pending)

  def through_pipeline(buffered):
    epoch(
      input_pipeline.device_batches(
        input_pipeline.train_batches(
          data.train, config.batch_size, seed=0, epoch=0
        ),
        data_sharding,
        host_buffer=config.data.host_prefetch if buffered else 0,
        device_buffer=config.data.device_prefetch if buffered else 0,
      )
    )

  in_memory = [  # already on the devices
    input_pipeline.shard_batch(batch, data_sharding)
    for batch in input_pipeline.train_batches(
      data.train, config.batch_size, seed=0, epoch=0
    )
  ]
  t_pipe, t_unbuffered, t_memory = backbones.interleaved_medians(
    lambda: through_pipeline(True),
    lambda: through_pipeline(False),
    lambda: epoch(in_memory),
    repeats=max(3, s["repeats"]),
  )
  return (
    max(0.0, 1 - t_memory / t_pipe),
    max(0.0, 1 - t_memory / t_unbuffered),
    t_pipe,
    t_memory,
  )


def rows_input(s):
  import torch

  torch.set_num_threads(1)
  source = pipeline_bench.make_jpegs(s["images"], np.random.default_rng(0))
  t_ours, t_torch, t_bare = backbones.interleaved_medians(
    lambda: pipeline_bench.run_scenejax(source),
    lambda: pipeline_bench.run_torch(source),
    lambda: pipeline_bench.run_bare(source),
    repeats=s["repeats"],
  )
  torch.set_num_threads(os.cpu_count() or 1)
  n = (len(source) // 32) * 32
  out = [
    row(
      5,
      "input pipeline overhead per image (grain, shuffle, batching)",
      f"{(t_ours - t_bare) / n * 1e6:+.0f} us per image",
      f"bare loop of the same Preprocess: {n / t_bare:,.0f} images/s",
      t_ours / t_bare,
      "report (ratio = pipeline / bare loop seconds)",
      None,
      f"{len(source)} JPEGs, shorter side 256, one core",
    ),
    row(
      5,
      "input pipeline, decode + resize + crop + flip, per core",
      f"{n / t_ours:,.0f} images/s",
      f"{n / t_torch:,.0f} images/s (PyTorch DataLoader + PIL)",
      t_torch / t_ours,
      ">= 1.0x (scenejax / DataLoader images/s)",
      t_torch / t_ours >= 1.0,
      f"{len(source)} JPEGs, shorter side 256, one core each",
    ),
  ]
  # Full-size photos: decoding dominates, and the DCT-scaled decode
  # (`config.data.jpeg_draft`) skips most of it.
  torch.set_num_threads(1)
  photos = pipeline_bench.make_jpegs(
    max(64, s["images"] // 2),
    np.random.default_rng(1),
    short=s["photo_short_side"],
  )
  n = (len(photos) // 32) * 32
  for draft in (False, True):
    t_ours, t_torch = backbones.interleaved_medians(
      lambda draft=draft: pipeline_bench.run_scenejax(photos, draft),
      lambda: pipeline_bench.run_torch(photos),
      repeats=s["repeats"],
    )
    out.append(
      row(
        5,
        "input pipeline on full-size JPEGs, per core"
        + (", jpeg_draft" if draft else ""),
        f"{n / t_ours:,.0f} images/s",
        f"{n / t_torch:,.0f} images/s (PyTorch DataLoader + PIL)",
        t_torch / t_ours,
        ">= 1.0x (scenejax / DataLoader images/s)",
        t_torch / t_ours >= 1.0,
        f"{len(photos)} JPEGs, shorter side {s['photo_short_side']}, "
        "one core each",
      )
    )
  torch.set_num_threads(os.cpu_count() or 1)
  fraction, unbuffered, t_pipe, t_memory = data_wait_fraction(s)
  out.append(
    row(
      5,
      "demo run: device idle waiting for data",
      f"{fraction:.1%} of the epoch ({unbuffered:.1%} without the "
      "prefetch buffers)",
      f"epoch {t_pipe:.2f} s via the pipeline, {t_memory:.2f} s from memory",
      t_pipe / t_memory,
      "< 5% idle",
      fraction < 0.05,
      "configs/demo.py, one epoch, interleaved",
    )
  )
  return out
