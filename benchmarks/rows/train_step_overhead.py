"""Rows 1 and 2: what the paper's training additions cost over a plain
train step. Row 1: CE + GLS + BCL vs CE only (C = 397), and the loss
kernels alone as a share of the step; row 2: the PCL train step vs the
plain step on the same backbone.

Imported by benchmarks/run.py, which puts benchmarks/ and the repository
root on sys.path.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import backbones
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from harness import NUM_CLASSES, batch_of, row

from scenejax import models, prototype
from scenejax.models import pcl
from scenejax.tasks import classification


def random_prototype(num_classes=NUM_CLASSES):
  reps = np.random.default_rng(1).uniform(0, 1, (num_classes, 150)) ** 4
  return prototype.similarity_prototype(reps, "cosine")


def create(name, s, seed=0):
  options = {"image_size": s["size"]} if name.startswith("vit") else {}
  return models.create(name, NUM_CLASSES, rngs=nnx.Rngs(seed), **options)


GLS_BCL = classification.LossConfig.with_defaults(
  labels="gls", bcl_weight=1.0, bcl_reduction="nonzero_inter_intra"
)
CE = classification.LossConfig.with_defaults(labels="ce", bcl_weight=0.0)


def loss_kernel_seconds(cfg, batch, repeats=200):
  """Median time of the loss terms and their gradient w.r.t. the logits
  alone (B, C = 397), jitted, with epoch and prototype as arguments."""
  rng = np.random.default_rng(2)
  logits = jnp.asarray(rng.normal(size=(batch, NUM_CLASSES)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, NUM_CLASSES, batch), jnp.int32)
  similarity = jnp.asarray(random_prototype(), jnp.float32)
  fn = jax.jit(
    jax.grad(
      lambda z, e, s: sum(
        classification.loss_terms(z, labels, s, e, cfg).values()
      )
    )
  )
  epoch = np.float32(0.5)
  jax.block_until_ready(fn(logits, epoch, similarity))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(logits, epoch, similarity))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def rows_aux_loss(s):
  out = []
  batch = batch_of(s)
  similarity = random_prototype()
  setting = f"batch {s['batch']}, {s['size']} px, C = {NUM_CLASSES}, fp32"
  for name in s["backbones"]:
    ce = backbones.JaxStep(create(name, s), NUM_CLASSES, batch)
    aux = backbones.JaxStep(
      create(name, s), NUM_CLASSES, batch, GLS_BCL, similarity
    )
    t_aux, t_ce = backbones.interleaved_medians(aux, ce, repeats=s["repeats"])
    ratio = t_aux / t_ce
    out.append(
      row(
        1,
        f"{name} train step: CE+GLS+BCL vs CE",
        f"{t_aux:.3f} s",
        f"{t_ce:.3f} s",
        ratio,
        "<= 1.01x",
        ratio <= 1.01,
        setting,
      )
    )
    extra = loss_kernel_seconds(GLS_BCL, s["batch"]) - loss_kernel_seconds(
      CE, s["batch"]
    )
    out.append(
      row(
        1,
        f"{name}: GLS+BCL kernels alone, extra time per step",
        f"{extra * 1e6:.0f} µs",
        f"{t_ce:.3f} s step",
        1 + extra / t_ce,
        "<= 1.01x",
        1 + extra / t_ce <= 1.01,
        setting + "; loss + gradient w.r.t. logits, median of 200",
      )
    )
  return out


def rows_pcl(s):
  out = []
  batch = batch_of(s)
  for name in s["backbones"]:
    plain = backbones.JaxStep(create(name, s), NUM_CLASSES, batch)
    with_pcl = backbones.JaxStep(
      pcl.PCLModel(create(name, s), NUM_CLASSES, rngs=nnx.Rngs(1)),
      NUM_CLASSES,
      batch,
      dataclasses.replace(CE, pcl=True),
    )
    t_pcl, t_plain = backbones.interleaved_medians(
      with_pcl, plain, repeats=s["repeats"]
    )
    ratio = t_pcl / t_plain
    out.append(
      row(
        2,
        f"{name}: PCL train step vs plain",
        f"{t_pcl:.3f} s",
        f"{t_plain:.3f} s",
        ratio,
        "<= 2.1x",
        ratio <= 2.1,
        f"batch {s['batch']}, {s['size']} px, fp32",
      )
    )
  return out
