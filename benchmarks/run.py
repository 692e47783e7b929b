"""The benchmark suite: one table of side-by-side ratios, measured in one run.

  python benchmarks/run.py [--full] [--rows 1,3] [--out benchmarks/results]

Each row times scenejax and a comparison on the same machine in the same
process. Where both are timed, they alternate (A, B, A, B, ... after one
warm-up call each) and the figure is the ratio of the medians: these machines
are shared and noisy, and a ratio survives noise that absolute times don't.

  1  train step CE + GLS + BCL vs CE only, C = 397          target <= 1.01x
     (and the loss kernels alone, as a share of the step)
  2  PCL train step vs plain step, same backbone            target <= 2.1x
  3  train step vs the same architecture in PyTorch eager,
     same weights, fp32 on CPU                              target >= 1.0x
     bf16 step and model FLOPs utilisation on an accelerator
     (ViT-B/16: 17.6 GMACs per image forward, a step = 3x forward)
                                                            target >= 40% (H200)
  4  eval images/s vs PyTorch eager; train-step peak memory (XLA's account)
  5  input pipeline images/s per core vs PyTorch DataLoader; device idle
     time waiting for data in the demo run                  target < 5%
  6  prototype building: maps/s vs the literal Algorithm 1  (target 50x)
  7  async checkpoint: time the loop is blocked per save, as a fraction of
     the save interval (one epoch of the demo)              target < 2%;
     train-step compilations per run                        target 1
  8  segmenter inference at 512 px: images/s vs transformers eager, same
     weights, fp32 on CPU; and `segment.Predictor` end to end (resize, pad,
     top-1, crop, resize back) on 512 x 683 images            report
  9  [SEG] loss (fwd + grad) as a share of the segmentation step
                                                            target <= 5%
 10  [SP] Table 5 on our models: deployment cost (parameters, XLA FLOPs,
     images/s) of ResNet-18 (+ GLS + BCL, which cost nothing there) vs
     SAS-Net ResNet-18 (segmenter + two branches)           report
 11  deployable artefacts (`scenejax.export`) on CPU: images/s of
     StableHLO and TFLite (float, int8 weights) vs PyTorch eager, same
     weights                                                target >= 1.0x;
     their Top-1 on the demo's eval split vs the in-process model's
                                                            equal / 0.01

Quick (default): batch 8 at 224 px, 3 repeats, ResNet-50 and ViT-B/16
(~10 minutes on 2 CPU cores). --full: batch 32 (the issue's setting), 7
repeats. --tiny: the harness on 32-px toy models (what the test runs).
Writes OUT.md (the table) and OUT.json (one object per row). Needs the test
extra (torch, transformers, tensorflow-cpu) for the comparisons.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_HERE, os.path.dirname(_HERE)]  # benchmarks/, configs/
import backbones  # noqa: E402  (sets OMP_WAIT_POLICY before torch loads)
import input_pipeline as pipeline_bench  # noqa: E402
import prototype_build  # noqa: E402

from scenejax import (  # noqa: E402
  checkpoints,
  datasets,
  fileio,
  input_pipeline,
  models,
  optim,
  prototype,
  train,
)
from scenejax.models import pcl  # noqa: E402

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
# Dense bf16 peak FLOP/s by device kind (vendor data sheets), for MFU.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12}
VIT_B16_FORWARD_FLOPS = 2 * 17.6e9  # per 224-px image (17.6 GMACs)


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


def random_prototype(num_classes=NUM_CLASSES):
  reps = np.random.default_rng(1).uniform(0, 1, (num_classes, 150)) ** 4
  return prototype.similarity_prototype(reps, "cosine")


def create(name, s, seed=0):
  options = {"image_size": s["size"]} if name.startswith("vit") else {}
  return models.create(name, NUM_CLASSES, rngs=nnx.Rngs(seed), **options)


GLS_BCL = train.LossConfig.with_defaults(
  labels="gls", bcl_weight=1.0, bcl_reduction="nonzero_inter_intra"
)
CE = train.LossConfig.with_defaults(labels="ce", bcl_weight=0.0)


def loss_kernel_seconds(cfg, batch, repeats=200):
  """Median time of the loss terms and their gradient w.r.t. the logits
  alone (B, C = 397), jitted, with epoch and prototype as arguments."""
  rng = np.random.default_rng(2)
  logits = jnp.asarray(rng.normal(size=(batch, NUM_CLASSES)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, NUM_CLASSES, batch), jnp.int32)
  similarity = jnp.asarray(random_prototype(), jnp.float32)
  fn = jax.jit(
    jax.grad(
      lambda z, e, s: sum(train.loss_terms(z, labels, s, e, cfg).values())
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


def demo_config(s, num_epochs=2):
  from configs import demo

  config = demo.get_config()
  config.data.train_per_class = s["demo_per_class"]
  config.data.test_per_class = max(4, s["demo_per_class"] // 3)
  config.num_epochs = num_epochs
  config.batch_size = min(config.batch_size, 8 * s["demo_per_class"])
  config.progress_bar = False
  return config


def data_wait_fraction(s):
  """(fraction, fraction without the prefetch buffers, epoch seconds with
  the pipeline, from memory): the demo's train loop over one epoch reading
  batches through the input pipeline (`device_batches`, as the trainer),
  against the same loop over the same batches already on the devices.
  What the pipeline adds to the epoch is time the device waits for
  data."""
  config = demo_config(s)
  data = datasets.from_config(config)
  similarity = jnp.asarray(train.prototype_for(config, data).similarity)
  mesh = train.data_parallel_mesh()
  sharding = jax.sharding.NamedSharding(
    mesh, jax.sharding.PartitionSpec("data")
  )
  graphdef, state = optim.create_train_state(
    config, data.num_classes, len(data.train) // config.batch_size
  )
  model = nnx.merge(graphdef, state)[0]
  step_fn = train.jit_train_step(
    graphdef,
    train.LossConfig.from_config(config.loss),
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
        sharding,
        host_buffer=config.data.host_prefetch if buffered else 0,
        device_buffer=config.data.device_prefetch if buffered else 0,
      )
    )

  in_memory = [  # already on the devices
    input_pipeline.shard_batch(batch, sharding)
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


def rows_prototype(s):
  rng = np.random.default_rng(0)
  maps, labels = prototype_build.make_maps(s["maps"], s["map_size"], 10, rng)
  labels[:10] = np.arange(10)
  t_ours, t_literal = backbones.interleaved_medians(
    lambda: prototype.class_representation(maps, labels, 10, 150),
    lambda: prototype_build.literal_algorithm1(maps, labels, 10, 150),
    repeats=s["repeats"],
  )
  ratio = t_literal / t_ours
  return [
    row(
      6,
      "prototype building (Algorithm 1), label maps/s",
      f"{len(maps) / t_ours:,.0f} maps/s",
      f"{len(maps) / t_literal:,.0f} maps/s (literal loop)",
      ratio,
      ">= 50x",
      ratio >= 50,
      f"{len(maps)} maps of {s['map_size']}², L = 150",
    )
  ]


def rows_checkpoint(s):
  """Blocking time of each async save in a real demo run (the trainer's own
  manager and `checkpoints.save`), against the epoch it interrupts."""
  config = demo_config(s, num_epochs=3)
  blocked, epochs = [], []
  real_save = checkpoints.save

  def timed_save(*args, **kwargs):
    start = time.perf_counter()
    real_save(*args, **kwargs)
    blocked.append(time.perf_counter() - start)

  checkpoints.save = timed_save
  try:
    with (
      tempfile.TemporaryDirectory() as workdir,
      open(os.devnull, "w") as quiet,
      contextlib.redirect_stdout(quiet),
    ):
      result = train.train_and_evaluate(config, workdir)
      with open(os.path.join(workdir, "metrics.jsonl")) as f:
        epochs = [json.loads(line)["seconds"] for line in f]
  finally:
    checkpoints.save = real_save
  # The first save also creates the directory tree; the steady state is the
  # median.
  fraction = statistics.median(b / e for b, e in zip(blocked, epochs))
  return [
    row(
      7,
      "async checkpoint save: loop blocked per save",
      f"{statistics.median(blocked) * 1e3:.1f} ms "
      f"({fraction:.2%} of the interval)",
      f"save interval = 1 epoch = {statistics.median(epochs):.2f} s",
      fraction,
      "< 2% of the interval",
      fraction < 0.02,
      f"configs/demo.py, {len(blocked)} saves",
    ),
    row(
      7,
      "train-step compilations in the demo run",
      str(result["compiles"]),
      "—",
      None,
      "1",
      result["compiles"] == 1,
      f"configs/demo.py, {config.num_epochs} epochs",
    ),
  ]


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


def rows_segmentation_loss(s):
  """[SEG]'s fused loss (focal on the upsampled logits + the sampled pixel
  contrastive term) inside the segmentation train step: its time (forward
  and gradient w.r.t. the decoder outputs, jitted alone) as a fraction of
  the whole step's, and XLA's temporary-memory account of each."""
  import functools

  from scenejax import config_lib, optim, segmentation

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
  graphdef, state = optim.create_train_state(config, num_classes, 100)
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


def _param_count(model) -> int:
  return sum(
    int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, nnx.Param))
  )


def _compiled(fn, *args):
  """(jitted fn, XLA's FLOP count of one call)."""
  jitted = jax.jit(fn)
  analysis = jitted.lower(*args).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jax: one dict per device
    analysis = analysis[0]
  return jitted, float((analysis or {}).get("flops", float("nan")))


def rows_deployment(s):
  """[SP] Table 5 on our own models: what one image costs at deployment.

  [SP]'s point: its segmenter runs only in training (the prototype is
  built once), so a backbone trained with GLS + BCL deploys as the plain
  backbone; SAS-Net needs a segmenter and two branches for every image.
  Each model is one jitted forward of a batch of uint8 images
  (normalisation inside); SAS-Net's is the trainer's semantic input (the
  segmenter's top-3 at the image's size, `semantic_aware.semantic_input`)
  and both branches. Parameters are counted from the models; FLOPs are
  XLA's cost analysis of each compiled forward, per image."""
  from scenejax import semantic_aware

  plain_name, sas_name, seg_name, size = s["deployment"]
  batch, classes = s["eval_batch"], 365
  rng = np.random.default_rng(6)
  images = jnp.asarray(rng.integers(0, 256, (batch, size, size, 3), np.uint8))
  plain = models.create(plain_name, classes, rngs=nnx.Rngs(0))
  sas = models.create(sas_name, classes, rngs=nnx.Rngs(1))
  seg = models.create(
    seg_name, 150, rngs=nnx.Rngs(2), **s.get("deployment_segmenter", {})
  )
  for model in (plain, sas, seg):
    model.eval()

  def norm(model, x):
    return input_pipeline.normalize(x, model.pixel_mean, model.pixel_std)

  g_plain, st_plain = nnx.split(plain)
  g_sas, st_sas = nnx.split(sas)
  g_seg, st_seg = nnx.split(seg)

  def plain_forward(st, x):
    model = nnx.merge(g_plain, st)
    return model(norm(model, x))

  def segmenter_forward(st, x):
    return semantic_aware.semantic_input(nnx.merge(g_seg, st), x)

  def sasnet_forward(st, st_s, x):
    model = nnx.merge(g_sas, st)
    semantic = segmenter_forward(st_s, x)
    return model(norm(model, x), semantic)["logits"]

  def branches_forward(st, x, semantic):
    model = nnx.merge(g_sas, st)
    return model(norm(model, x), semantic)["logits"]

  semantic = jax.block_until_ready(jax.jit(segmenter_forward)(st_seg, images))
  calls = {
    "plain": (plain_forward, (st_plain, images)),
    "segmenter": (segmenter_forward, (st_seg, images)),
    "branches": (branches_forward, (st_sas, images, semantic)),
    "sasnet": (sasnet_forward, (st_sas, st_seg, images)),
  }
  jitted, flops = {}, {}
  for key, (fn, args) in calls.items():
    jitted[key], flops[key] = _compiled(fn, *args)
    jax.block_until_ready(jitted[key](*args))  # warm-up

  def timer(key):
    fn, args = jitted[key], calls[key][1]
    return lambda: jax.block_until_ready(fn(*args))

  repeats = max(3, s["repeats"])
  t_plain, t_sas = backbones.interleaved_medians(
    timer("plain"), timer("sasnet"), repeats=repeats
  )
  t_seg, t_branches = backbones.interleaved_medians(
    timer("segmenter"), timer("branches"), repeats=repeats
  )
  params = {
    "plain": _param_count(plain),
    "segmenter": _param_count(seg),
    "branches": _param_count(sas),
  }
  params["sasnet"] = params["segmenter"] + params["branches"]
  seconds = {
    "plain": t_plain,
    "segmenter": t_seg,
    "branches": t_branches,
    "sasnet": t_sas,
  }

  def cost(key):
    return (
      f"{params[key] / 1e6:,.2f} M parameters, "
      f"{flops[key] / batch / 1e9:,.3f} GFLOPs/image, "
      f"{batch / seconds[key]:,.1f} images/s"
    )

  setting = (
    f"batch {batch}, {size}² px, fp32, {classes} classes, "
    f"{jax.devices()[0].device_kind}"
  )
  what = {
    "segmenter": f"SAS-Net's segmenter ({seg_name}, top-3 → 152 channels)",
    "branches": f"SAS-Net's two branches ({sas_name}, semantic input given)",
  }
  out = [
    row(
      10,
      f"[SP] Table 5: deployment, {plain_name} (+ GLS + BCL: no cost) "
      f"vs SAS-Net ({seg_name} + {sas_name})",
      cost("plain"),
      cost("sasnet"),
      t_sas / t_plain,
      "report (ratio = SAS-Net / plain time per image)",
      None,
      setting,
      flops_per_image=dict((k, v / batch) for k, v in flops.items()),
      parameters=params,
      images_per_s={k: batch / v for k, v in seconds.items()},
    )
  ]
  for key in ("segmenter", "branches"):
    out.append(
      row(
        10,
        what[key],
        cost(key),
        cost("plain") + f" ({plain_name})",
        seconds[key] / t_plain,
        "report (ratio = this part / plain time per image)",
        None,
        setting,
      )
    )
  return out


def rows_export(s):
  """Row 11: the deployable artefacts (`scenejax.export`) on CPU.

  Speed: images/s of each runtime, uint8 images in, probabilities out
  (normalisation and softmax inside), against PyTorch eager (no_grad) with
  the same weights on the same batch, interleaved. Agreement: the demo run
  (synthetic scenes), exported in every format, classifies its own eval
  split; each artefact's Top-1 against the in-process model's."""
  import torch

  from scenejax import export

  name, batch, size = s["export_backbone"], s["eval_batch"], s["size"]
  model, reference = backbones.same_model_pair(name, NUM_CLASSES, size)
  model.eval()
  reference.eval()
  description = dict(
    image_size=size,
    pixel_mean=list(model.pixel_mean),
    pixel_std=list(model.pixel_std),
    task="classification",
  )
  images = np.random.default_rng(11).integers(
    0, 256, (batch, size, size, 3), np.uint8
  )
  torch_images = torch.from_numpy(
    np.asarray(
      input_pipeline.normalize(images, model.pixel_mean, model.pixel_std)
    )
    .transpose(0, 3, 1, 2)
    .copy()
  )

  def torch_forward():
    with torch.no_grad():
      out = reference(torch_images)
      torch.softmax(getattr(out, "logits", out), -1)

  out = []
  setting = (
    f"{name}, batch {batch}, {size} px, CPU, torch {torch.__version__} "
    f"({torch.get_num_threads()} threads) eager, same weights"
  )
  with tempfile.TemporaryDirectory() as d:
    runtimes = {"in-process (jit)": jax.jit(
      export.probabilities_function(model, description)
    )}  # fmt: skip
    exported = jax.export.deserialize(
      export.stablehlo_bytes(model, description)
    )
    runtimes["model.stablehlo"] = exported.call
    for quantize in (None, "dynamic"):
      path = os.path.join(d, f"{quantize or 'float'}.tflite")
      data = export.tflite_bytes(model, description, quantize)
      fileio.atomic_write(path, lambda f, data=data: f.write(data))
      label = "model.tflite" + (" (int8 weights)" if quantize else "")
      runtimes[label] = export.tflite_runner(path)
    for label, run in runtimes.items():
      ours = lambda run=run: np.asarray(run(images))  # noqa: E731
      t_ours, t_theirs = backbones.interleaved_medians(
        ours, torch_forward, repeats=s["repeats"]
      )
      ratio = t_theirs / t_ours
      out.append(
        row(
          11,
          f"{name} {label}: images/s vs PyTorch eager",
          f"{batch / t_ours:.1f} images/s",
          f"{batch / t_theirs:.1f} images/s",
          ratio,
          ">= 1.0x",
          ratio >= 1.0,
          setting,
        )
      )
    if s["export_demo_epochs"]:  # tiny mode: the tests check this
      out.extend(_rows_export_agreement(s, d))
  return out


def _rows_export_agreement(s, d):
  """Row 11's Top-1 agreement on the demo's eval split."""
  from PIL import Image

  from scenejax import export, synthetic

  config = demo_config(s, num_epochs=s["export_demo_epochs"])
  workdir = os.path.join(d, "demo")
  train.train_and_evaluate(config, workdir)
  _, train_split, test = synthetic.load(
    train_per_class=config.data.train_per_class,
    test_per_class=config.data.test_per_class,
    image_size=config.data.image_size,
  )
  calibration = os.path.join(d, "calibration")
  os.makedirs(calibration)
  every = max(1, len(train_split.images) // 64)
  for i, image in enumerate(train_split.images[::every]):
    Image.fromarray(image).save(f"{calibration}/{i}.png")
  images, labels = test.images, test.labels
  exports = {
    "float": dict(formats=export.FORMATS),
    "dynamic": dict(formats=("tflite",), quantize="dynamic"),
    "int8": dict(formats=("tflite",), quantize="int8", calibration=calibration),
  }
  top1 = {}
  for key, options in exports.items():
    out = os.path.join(d, key)
    export.export(workdir, out, **options)
    for runtime in options["formats"]:
      label = {
        "float": runtime,
        "dynamic": f"{runtime} (int8 weights)",
        "int8": f"{runtime} (int8 weights and activations)",
      }[key]
      probabilities, _ = export.load_runtime(out, runtime)
      predicted = np.concatenate(
        [probabilities(images[i : i + 64]) for i in range(0, len(images), 64)]
      ).argmax(1)
      top1[label] = float(np.mean(predicted == labels))
  reference = top1.pop("orbax")
  return [
    row(
      11,
      f"demo {config.model} {label}: Top-1 on the synthetic eval split "
      "vs the in-process model",
      f"{value:.4f}",
      f"{reference:.4f}",
      value / reference,
      "equal (float); within 0.01 (int8)",
      abs(value - reference) <= (0.01 if "int8" in label else 1e-9),
      f"{len(images)} images, {config.num_epochs} epochs",
    )
    for label, value in top1.items()
  ]


ROWS = {
  1: rows_aux_loss,
  2: rows_pcl,
  3: rows_pytorch,
  4: rows_eval_memory,
  5: rows_input,
  6: rows_prototype,
  7: rows_checkpoint,
  8: rows_segmenter,
  9: rows_segmentation_loss,
  10: rows_deployment,
  11: rows_export,
}


def markdown(rows, mode) -> str:
  lines = [
    f"Measured {datetime.date.today().isoformat()} on "
    f"{rows[0]['machine'] if rows else machine()}; mode {mode}.",
    "",
    "| # | what | scenejax | comparison | ratio | target | met | setting |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    ratio = "—" if r["ratio"] is None else f"{r['ratio']:.3f}x"
    met = {True: "yes", False: "**no**", None: "—"}[r["met"]]
    lines.append(
      f"| {r['row']} | {r['what']} | {r['scenejax']} | "
      f"{r['comparison']} | {ratio} | {r['target']} | {met} | "
      f"{r['setting']} |"
    )
  return "\n".join(lines) + "\n"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--full", action="store_true")
  mode.add_argument(
    "--tiny",
    action="store_true",
    help="toy sizes: checks the harness, not the speed",
  )
  parser.add_argument("--rows", default="1,2,3,4,5,6,7,8,9,10,11")
  parser.add_argument(
    "--out", default="benchmarks/results", help="writes OUT.md and OUT.json"
  )
  args = parser.parse_args(argv)
  name = "full" if args.full else "tiny" if args.tiny else "quick"
  s = SETTINGS[name]
  rows = []
  for number in (int(r) for r in args.rows.split(",")):
    new = ROWS[number](s)
    for r in new:
      print(markdown([r], name).splitlines()[-1], flush=True)
    rows.extend(new)
  text = markdown(rows, name)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  fileio.write_text(args.out + ".md", text)
  fileio.atomic_write(
    args.out + ".json",
    lambda f: f.write(
      json.dumps(
        dict(
          mode=name,
          date=datetime.date.today().isoformat(),
          machine=machine(),
          rows=rows,
        ),
        indent=1,
      )
    ),
    mode="w",
  )
  print()
  print(text)
  return rows


if __name__ == "__main__":
  main()
