"""Deployable inference parameters from a training workdir, and prediction.

  python -m scenejax.export --workdir=/tmp/run --out=/tmp/run_export
  python -m scenejax.export --predict=/tmp/run_export img1.jpg img2.png

Export restores the workdir's best checkpoint by Top-1 (or the latest if
none has metrics), drops the optimizer and, for PCL models, the CAM module
and the erased-image classifier ([PCL] §4: deployment uses the backbone
alone), and writes:

  OUT/params/       the model's parameters and batch statistics (orbax)
  OUT/model.json    model name, class names, input size, pixel statistics

Predict rebuilds that model, preprocesses each image as evaluation does
(resize the shorter side, centre crop) and prints its top-5 scene names.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import flags
from flax import nnx

from scenejax import checkpoints, cli, fileio, input_pipeline, models
from scenejax.models import pcl


def export(workdir: str, out: str) -> dict:
  """Writes OUT/params and OUT/model.json; returns the model.json dict."""
  with open(os.path.join(workdir, "results.json")) as f:
    class_names = json.load(f)["class_names"]
  config, graphdef, state, step = checkpoints.restore_workdir(
    workdir, len(class_names)
  )
  model, _ = nnx.merge(graphdef, state)
  model = pcl.export(model)
  image_size = config.data.image_size
  # The synthetic scenes are rendered at their final size: no resize.
  resize_size = (
    image_size
    if config.dataset == "synthetic_scenes"
    else config.data.resize_size
  )
  description = dict(
    model=config.model,
    num_classes=len(class_names),
    class_names=class_names,
    checkpoint_step=step,
    image_size=image_size,
    resize_size=resize_size,
    pixel_mean=list(model.pixel_mean),
    pixel_std=list(model.pixel_std),
  )
  os.makedirs(out, exist_ok=True)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(
      os.path.abspath(os.path.join(out, "params")), nnx.state(model), force=True
    )
  fileio.write_json(os.path.join(out, "model.json"), description)
  return description


def load_export(directory: str) -> tuple[nnx.Module, dict]:
  """(model in inference mode, model.json dict) of an export directory."""
  with open(os.path.join(directory, "model.json")) as f:
    description = json.load(f)
  options = {}
  if description["model"].startswith("vit"):
    options["image_size"] = description["image_size"]
  model = nnx.eval_shape(
    lambda: models.create(
      description["model"], description["num_classes"], **options
    )
  )
  graphdef, abstract = nnx.split(model)
  with ocp.StandardCheckpointer() as checkpointer:
    state = checkpointer.restore(
      os.path.abspath(os.path.join(directory, "params")), abstract
    )
  model = nnx.merge(graphdef, state)
  model.eval()
  return model, description


def predict(
  directory: str, image_files: list[str], top: int = 5
) -> list[tuple[str, list[tuple[str, float]]]]:
  """[(file, [(class name, probability), ...top])] for each image file."""
  model, description = load_export(directory)
  preprocess = input_pipeline.Preprocess(
    train=False,
    image_size=description["image_size"],
    resize_size=description["resize_size"],
    on_corrupt="raise",
  )
  results = []
  for path in image_files:
    with open(path, "rb") as f:
      image = preprocess({"image": f.read(), "label": 0, "name": path})["image"]
    x = input_pipeline.normalize(
      jnp.asarray(image[None]),
      description["pixel_mean"],
      description["pixel_std"],
    )
    probs = np.asarray(jax.nn.softmax(model(x)[0]))
    order = np.argsort(-probs)[:top]
    results.append(
      (path, [(description["class_names"][i], float(probs[i])) for i in order])
    )
  return results


def main(argv: list[str]) -> None:
  flag = flags.FLAGS
  if flag.predict:
    for path, ranked in predict(flag.predict, argv[1:]):
      print(path + ": " + ", ".join(f"{name} {p:.3f}" for name, p in ranked))
    return
  if not (flag.workdir and flag.out):
    cli.fail("give --workdir and --out (or --predict=EXPORT files...)")
  description = export(flag.workdir, flag.out)
  print(
    f"exported {description['model']} (step "
    f"{description['checkpoint_step']}) to {flag.out}"
  )


if __name__ == "__main__":
  # Flags live here so that importing this module (tests, notebooks)
  # defines none.
  flags.DEFINE_string("workdir", None, "training workdir to export")
  flags.DEFINE_string("out", None, "directory to write the export to")
  flags.DEFINE_string(
    "predict",
    None,
    "an export directory: classify the image files given as arguments",
  )
  cli.run(main)
