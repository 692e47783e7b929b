"""Train-step time of scenejax backbones vs transformers/PyTorch eager.

  python benchmarks/backbones.py [--models resnet50,vit_b16] [--batch 8]
                                 [--repeats 8] [--size 224]

One train step = forward, cross-entropy, backward and an SGD update, fp32,
batch 8 at 224 px, on whatever CPU (or device) JAX and PyTorch see. Both
frameworks get the same architecture (transformers' ResNet-50 / ViT-B/16
with the same weights, loaded through `init_from`) and the same batch, and
run interleaved: A, B, A, B... after warm-up; the figure is the ratio of
the medians. A second table times the PCL step (two backbone passes: the
image and its CAM-erased copy, [PCL] §4) against the plain step.

Needs the test extra (torch, transformers); scenejax itself does not.
"""

import argparse
import os
import platform
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from scenejax import models, train
from scenejax.models import pcl

# PyTorch's OpenMP threads spin after each parallel region by default; on a
# 2-core machine the spinning steals the cores from the JAX step that runs
# next in the interleaving (measured: JAX's ResNet-50 step 4.5 s instead of
# 2.8 s). Passive waiting costs PyTorch nothing measurable.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def hf_model(name, num_classes):
  import transformers
  if name == "resnet50":
    return transformers.ResNetForImageClassification(
        transformers.ResNetConfig(num_labels=num_classes))
  if name == "vit_b16":
    return transformers.ViTForImageClassification(
        transformers.ViTConfig(num_labels=num_classes))
  raise ValueError(f"no transformers counterpart for {name!r}")


def jax_step(model, num_classes, loss_cfg=None):
  """A jitted SGD step (state donated), as the trainer builds it."""
  optimizer = nnx.Optimizer(model, optax.sgd(1e-3, momentum=0.9),
                            wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  cfg = loss_cfg or train.LossConfig(labels="ce")
  similarity = jnp.eye(num_classes)  # read only by GLS/BCL, off here
  step = jax.jit(lambda state, batch: train.train_step(
      graphdef, state, batch, 0.0, similarity, loss_cfg=cfg),
                 donate_argnums=0)
  return step, state


def torch_step(hf):
  import torch
  opt = torch.optim.SGD(hf.parameters(), lr=1e-3, momentum=0.9)
  hf.train()

  def step(images, labels):
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(hf(images).logits, labels)
    loss.backward()
    opt.step()
    return loss

  return step


def timed(fn):
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--models", default="resnet50,vit_b16")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--repeats", type=int, default=8)
  parser.add_argument("--classes", type=int, default=397)
  args = parser.parse_args()
  import torch

  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (args.batch, args.size, args.size, 3),
                        dtype=np.uint8)
  labels = rng.integers(0, args.classes, args.batch).astype(np.int32)
  batch = {"image": images, "label": labels}
  # The torch side sees the same normalised pixels, NCHW.
  from scenejax import input_pipeline
  x_torch = torch.from_numpy(np.asarray(
      input_pipeline.normalize(images)).transpose(0, 3, 1, 2).copy())
  y_torch = torch.from_numpy(labels.astype(np.int64))

  print(f"machine: {platform.processor() or platform.machine()}, "
        f"{jax.device_count()} JAX device(s) ({jax.devices()[0].platform}), "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads; "
        f"batch {args.batch}, {args.size} px, fp32, median of "
        f"{args.repeats}, interleaved")
  print()
  print("| model | scenejax step (s) | PyTorch eager step (s) | "
        "PyTorch / scenejax |")
  print("|---|---|---|---|")
  for name in args.models.split(","):
    hf = hf_model(name, args.classes)
    with tempfile.TemporaryDirectory() as d:
      hf.save_pretrained(d)
      model = models.create(name, args.classes, init_from=d)
    step, state = jax_step(model, args.classes)
    t_step = torch_step(hf)
    # Warm-up: compile, and let PyTorch allocate.
    state, _ = step(state, batch)
    jax.block_until_ready(state)
    t_step(x_torch, y_torch)
    ours, theirs = [], []
    for _ in range(args.repeats):
      def run_ours():
        nonlocal state
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
      ours.append(timed(run_ours))
      theirs.append(timed(lambda: t_step(x_torch, y_torch)))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"| {name} | {a:.3f} | {b:.3f} | {b / a:.2f}x |", flush=True)

  print()
  print("| backbone | PCL step (s) | plain step (s) | PCL / plain |")
  print("|---|---|---|---|")
  for name in args.models.split(","):
    plain_step, plain_state = jax_step(
        models.create(name, args.classes, rngs=nnx.Rngs(0)), args.classes)
    backbone = models.create(name, args.classes, rngs=nnx.Rngs(0))
    pcl_step, pcl_state = jax_step(
        pcl.PCLModel(backbone, args.classes, rngs=nnx.Rngs(1)), args.classes,
        train.LossConfig(labels="ce", pcl=True))
    plain_state, _ = plain_step(plain_state, batch)
    pcl_state, _ = pcl_step(pcl_state, batch)
    jax.block_until_ready((plain_state, pcl_state))
    t_pcl, t_plain = [], []
    for _ in range(args.repeats):
      def run_pcl():
        nonlocal pcl_state
        pcl_state, m = pcl_step(pcl_state, batch)
        jax.block_until_ready(m)

      def run_plain():
        nonlocal plain_state
        plain_state, m = plain_step(plain_state, batch)
        jax.block_until_ready(m)
      t_pcl.append(timed(run_pcl))
      t_plain.append(timed(run_plain))
    a, b = statistics.median(t_pcl), statistics.median(t_plain)
    print(f"| {name} | {a:.3f} | {b:.3f} | {a / b:.2f}x |", flush=True)


if __name__ == "__main__":
  main()
