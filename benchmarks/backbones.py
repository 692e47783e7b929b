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


class JaxStep:
  """A jitted SGD step (state donated), as the trainer builds it; calling
  the object runs one step on `batch` and waits for it."""

  def __init__(self, model, num_classes, batch, loss_cfg=None):
    optimizer = nnx.Optimizer(model, optax.sgd(1e-3, momentum=0.9),
                              wrt=nnx.Param)
    graphdef, self.state = nnx.split((model, optimizer))
    cfg = loss_cfg or train.LossConfig(labels="ce")
    similarity = jnp.eye(num_classes)  # read only by GLS/BCL, off here
    self.step = jax.jit(lambda state, batch: train.train_step(
        graphdef, state, batch, 0.0, similarity, loss_cfg=cfg),
                        donate_argnums=0)
    self.batch = batch

  def __call__(self):
    self.state, metrics = self.step(self.state, self.batch)
    jax.block_until_ready(metrics)


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


def interleaved_medians(a, b, repeats):
  """Median seconds of a() and b(), after one warm-up call each (compile,
  allocation), alternating a, b, a, b..."""
  a()
  b()
  times_a, times_b = [], []
  for _ in range(repeats):
    for fn, times in ((a, times_a), (b, times_b)):
      start = time.perf_counter()
      fn()
      times.append(time.perf_counter() - start)
  return statistics.median(times_a), statistics.median(times_b)


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
    ours = JaxStep(model, args.classes, batch)
    theirs = torch_step(hf)
    a, b = interleaved_medians(ours, lambda: theirs(x_torch, y_torch),
                               args.repeats)
    print(f"| {name} | {a:.3f} | {b:.3f} | {b / a:.2f}x |", flush=True)

  print()
  print("| backbone | PCL step (s) | plain step (s) | PCL / plain |")
  print("|---|---|---|---|")
  for name in args.models.split(","):
    plain = JaxStep(models.create(name, args.classes, rngs=nnx.Rngs(0)),
                    args.classes, batch)
    backbone = models.create(name, args.classes, rngs=nnx.Rngs(0))
    with_pcl = JaxStep(pcl.PCLModel(backbone, args.classes,
                                    rngs=nnx.Rngs(1)),
                       args.classes, batch,
                       train.LossConfig(labels="ce", pcl=True))
    a, b = interleaved_medians(with_pcl, plain, args.repeats)
    print(f"| {name} | {a:.3f} | {b:.3f} | {a / b:.2f}x |", flush=True)

if __name__ == "__main__":
  main()
