"""Row 11: the deployable artefacts (`scenejax.export`) on CPU, images/s vs
PyTorch eager and Top-1 vs the in-process model.

Imported by benchmarks/run.py, which puts benchmarks/ and the repository
root on sys.path.
"""

from __future__ import annotations

import os
import tempfile

import backbones
import jax
import numpy as np
from harness import NUM_CLASSES, demo_config, row

from scenejax import fileio, input_pipeline
from scenejax.training import loop


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

  from scenejax import export
  from scenejax.datasets import synthetic

  config = demo_config(s, num_epochs=s["export_demo_epochs"])
  workdir = os.path.join(d, "demo")
  loop.train_and_evaluate(config, workdir)
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
