"""Deployable inference parameters from a training workdir, and prediction.

  python -m scenejax.export --workdir=/tmp/run --out=/tmp/run_export [--step=N]
  python -m scenejax.export --predict=/tmp/run_export img1.jpg photos/

Export restores the workdir's best checkpoint by Top-1 (or `--step`; the
latest if none has metrics); any complete checkpoint will do, so a
preempted run, or the last good checkpoint of a run stopped by a NaN, can
be exported. It drops the optimizer and, for PCL models, the CAM module and
the erased-image classifier ([PCL] §4: deployment uses the backbone alone),
and writes:

  OUT/params/       the model's parameters and batch statistics (orbax)
  OUT/model.json    model name and options, class names, input size, pixel
                    statistics, the task (and a multi-label model's SARL head)

Predict rebuilds that model, preprocesses each image as evaluation does
(resize the shorter side, centre crop) and prints its top-5 scene names
(a multi-label model's: its 5 most probable labels, each probability a
sigmoid of its own).
Arguments may be image files or directories of them. A file that cannot be
read or decoded is named on stderr and the others are still classified;
the command then exits with status 2.
"""

from __future__ import annotations

import json
import os
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import flags
from flax import nnx

from scenejax import checkpoints, cli, fileio, input_pipeline, models
from scenejax.errors import UserError
from scenejax.models import pcl, sadcl


def export(workdir: str, out: str, step: int | None = None) -> dict:
  """Writes OUT/params and OUT/model.json from checkpoint `step` (default:
  the best by its task's metric); returns the model.json dict. Works on any complete
  checkpoint: a finished run, a preempted one, the last good one of a run
  stopped by a NaN."""
  config, graphdef, state, step = checkpoints.restore_workdir(
    workdir, step=step
  )
  class_names = checkpoints.class_names(workdir, step)
  model, _ = nnx.merge(graphdef, state)
  if config.model in models.SEMANTIC_AWARE:
    raise UserError(
      f"{workdir}: config.model = {config.model!r} takes a semantic input "
      "besides the image; export does not support it yet"
    )
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
    # models.create's options (tuples become lists in JSON).
    options=dict(
      getattr(getattr(model, "backbone", model), "create_options", ())
    ),
    task=config.get("task", "classification"),
  )
  if description["task"] == "multilabel":  # the SARL head's architecture
    description["multilabel"] = {
      k: config.multilabel[k]
      for k in ("dim", "num_heads", "encoder_layers", "prototypes", "threshold")
    }
  try:
    os.makedirs(out, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot create the export directory {out}: {e}") from e
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(
      os.path.abspath(os.path.join(out, "params")), nnx.state(model), force=True
    )
  fileio.write_json(os.path.join(out, "model.json"), description)
  return description


def load_export(directory: str) -> tuple[nnx.Module, dict]:
  """(model in inference mode, model.json dict) of an export directory."""
  path = os.path.join(directory, "model.json")
  try:
    with open(path) as f:
      description = json.load(f)
  except FileNotFoundError:
    raise UserError(
      f"{path} not found: {directory} is not an export; make one with "
      "python -m scenejax.export --workdir=WORKDIR --out=DIR"
    ) from None
  except ValueError as e:
    raise UserError(f"{path}: not valid JSON ({e})") from e
  options = {
    k: tuple(v) if isinstance(v, list) else v
    for k, v in description.get("options", {}).items()
  }
  if description["model"].startswith("vit"):  # exports before 2026-11-24
    options.setdefault("image_size", description["image_size"])
  num_classes = description["num_classes"]

  def build():
    model = models.create(description["model"], num_classes, **options)
    if description.get("task") != "multilabel":
      return model
    try:
      head = dict(description["multilabel"])
      del head["threshold"]
    except (KeyError, TypeError):
      raise UserError(
        f"{path}: a multi-label export needs its SARL head's settings under "
        '"multilabel" (dim, num_heads, encoder_layers, prototypes, '
        "threshold); export the workdir again"
      ) from None
    return sadcl.SADCLModel(model, num_classes, rngs=nnx.Rngs(0), **head)

  model = nnx.eval_shape(build)
  graphdef, abstract = nnx.split(model)
  with ocp.StandardCheckpointer() as checkpointer:
    state = checkpointer.restore(
      os.path.abspath(os.path.join(directory, "params")), abstract
    )
  model = nnx.merge(graphdef, state)
  model.eval()
  return model, description


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff")


def image_paths(paths: list[str]) -> list[str]:
  """`paths` with each directory replaced by the image files in it
  (sorted; not recursive)."""
  found = []
  for path in paths:
    if os.path.isdir(path):
      names = sorted(
        n for n in os.listdir(path) if n.lower().endswith(IMAGE_SUFFIXES)
      )
      if not names:
        raise UserError(
          f"{path} is a directory with no image files ({', '.join(IMAGE_SUFFIXES)})"
        )
      found += [os.path.join(path, n) for n in names]
    else:
      found.append(path)
  return found


class Prediction(NamedTuple):
  path: str
  ranked: list[tuple[str, float]]  # (class name, probability), best first
  error: str | None = None  # why the file could not be classified


def predict(
  directory: str, image_files: list[str], top: int = 5
) -> list[Prediction]:
  """A Prediction for each image file; a file that cannot be read or
  decoded gets its `error`, and the others are classified all the same."""
  model, description = load_export(directory)
  preprocess = input_pipeline.Preprocess(
    train=False,
    image_size=description["image_size"],
    resize_size=description["resize_size"],
    on_corrupt="raise",
  )
  results = []
  for path in image_files:
    try:
      with open(path, "rb") as f:
        example = {"image": f.read(), "label": 0, "name": path}
      image = preprocess(example)["image"]
    except (OSError, UserError) as e:
      if isinstance(e, UserError):
        message = str(e)
      else:  # an OSError's str repeats the path
        message = f"{path}: {e.strerror or e}"
      results.append(Prediction(path, [], message))
      continue
    x = input_pipeline.normalize(
      jnp.asarray(image[None]),
      description["pixel_mean"],
      description["pixel_std"],
    )
    if description.get("task") == "multilabel":  # independent labels
      probs = np.asarray(jax.nn.sigmoid(model(x)[0].astype(jnp.float32)))
    else:
      probs = np.asarray(jax.nn.softmax(model(x)[0]))
    order = np.argsort(-probs)[:top]
    names = description["class_names"]
    results.append(
      Prediction(path, [(names[i], float(probs[i])) for i in order])
    )
  return results


def main(argv: list[str]) -> None:
  flag = flags.FLAGS
  if flag.predict:
    if len(argv) < 2:
      cli.fail("give image files or directories after --predict=EXPORT_DIR")
    results = predict(flag.predict, image_paths(argv[1:]))
    for result in results:
      if result.error is None:
        print(
          result.path
          + ": "
          + ", ".join(f"{name} {p:.3f}" for name, p in result.ranked),
          flush=True,
        )
      else:
        print(f"cannot classify {result.error}", file=sys.stderr, flush=True)
    failed = sum(result.error is not None for result in results)
    if failed:
      cli.fail(
        f"{failed} of {len(results)} files could not be classified "
        "(named above); the others' predictions are printed"
      )
    return
  if not (flag.workdir and flag.out):
    cli.fail("give --workdir and --out (or --predict=EXPORT files...)")
  description = export(flag.workdir, flag.out, step=flag.step)
  print(
    f"exported {description['model']} (step "
    f"{description['checkpoint_step']}) to {flag.out}"
  )


if __name__ == "__main__":
  # Flags live here so that importing this module (tests, notebooks)
  # defines none.
  flags.DEFINE_string("workdir", None, "training workdir to export")
  flags.DEFINE_string("out", None, "directory to write the export to")
  flags.DEFINE_integer(
    "step", None, "checkpoint step (default: the best by the task's metric)"
  )
  flags.DEFINE_string(
    "predict",
    None,
    "an export directory: classify the image files given as arguments",
  )
  cli.run(main)
