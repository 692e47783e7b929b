"""Row 9: [SEG]'s loss (forward + gradient) as a share of the segmentation
train step, in time and in XLA's temporary memory.

Imported by benchmarks/run.py, which puts benchmarks/ and the repository
root on sys.path.
"""

from __future__ import annotations

import backbones
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from harness import row


def rows_segmentation_loss(s):
  """[SEG]'s fused loss (focal on the upsampled logits + the sampled pixel
  contrastive term) inside the segmentation train step: its time (forward
  and gradient w.r.t. the decoder outputs, jitted alone) as a fraction of
  the whole step's, and XLA's temporary-memory account of each."""
  import functools

  from scenejax import config_lib, tasks
  from scenejax.tasks import segmentation
  from scenejax.training import optim

  name, crop, batch = s["seg_train"]
  config = config_lib.base()
  config.update(task="segmentation", model=name, num_epochs=1)
  if name.endswith("tiny"):  # the harness check: small and quick
    config.segmentation.update(
      aspp_rates=(1, 2, 3),
      num_samples=256,
      aspp_width=8,
      low_level_width=4,
      decoder_width=8,
    )
  num_classes = 150
  graphdef, state = optim.create_train_state(
    tasks.build_model(config, num_classes), config, 100
  )
  cfg = segmentation.SegmentationLoss.from_config(config, num_classes)
  rng = np.random.default_rng(0)
  batch_data = {
    "image": rng.integers(0, 256, (batch, crop, crop, 3), dtype=np.uint8),
    "label": rng.integers(0, num_classes + 1, (batch, crop, crop)).astype(
      np.uint8
    ),
  }
  weights = jnp.ones(num_classes, jnp.float32)
  step = jax.jit(
    functools.partial(
      segmentation.train_step,
      graphdef,
      cfg=cfg,
      mean=(0.5,) * 3,
      std=(0.25,) * 3,
    )
  )
  model = nnx.merge(graphdef, state)[0]
  side = -(-crop // model.backbone.stage_strides[0])  # the decoder's grid
  z = jnp.asarray(
    rng.normal(size=(batch, side, side, num_classes)), jnp.float32
  )
  e = jnp.asarray(
    rng.normal(size=(batch, side, side, model.embedding_dim)), jnp.float32
  )
  labels = jnp.asarray(batch_data["label"], jnp.int32)
  key = jax.random.key(0)

  def loss(z, e, which):
    terms = segmentation.loss_terms(z, e, labels, weights, key, cfg)
    return sum(terms.values()) if which == "both" else terms[which]

  loss_grad = {
    which: jax.jit(jax.grad(functools.partial(loss, which=which), (0, 1)))
    for which in ("both", "contrastive")
  }
  epoch = np.float32(0)

  def run_step():
    nonlocal state
    state, metrics = step(state, batch_data, epoch, weights)
    jax.block_until_ready(metrics["loss"])

  def run_loss():
    jax.block_until_ready(loss_grad["both"](z, e))

  t_step, t_loss = backbones.interleaved_medians(
    run_step, run_loss, repeats=s["repeats"]
  )

  def temp_bytes(fn, *args):
    analysis = fn.lower(*args).compile().memory_analysis()
    return getattr(analysis, "temp_size_in_bytes", None)

  step_bytes = temp_bytes(step, state, batch_data, epoch, weights)
  con_bytes = temp_bytes(loss_grad["contrastive"], z, e)
  setting = (
    f"{name}, batch {batch}, {crop}² crops, 150 classes, "
    f"{cfg.num_samples} sampled pixels/image, fp32"
  )
  out = [
    row(
      9,
      "[SEG] focal + contrastive loss (fwd + grad) / segmentation train step",
      f"{1e3 * t_loss:,.1f} ms",
      f"{1e3 * t_step:,.1f} ms (the whole step)",
      t_loss / t_step,
      "<= 0.05 (ratio = loss / step time)",
      t_loss / t_step <= 0.05,
      setting,
    )
  ]
  if step_bytes and con_bytes:
    out.append(
      row(
        9,
        "[SEG] contrastive term (fwd + grad): XLA temporary memory / step's",
        f"{con_bytes / 2**20:,.1f} MiB",
        f"{step_bytes / 2**20:,.1f} MiB (the whole step)",
        con_bytes / step_bytes,
        "report (ratio = contrastive / step temporaries)",
        None,
        setting,
      )
    )
  return out
