"""Deployable models from a training workdir, and prediction (the command:
`python -m scenejax.export`, `scenejax/export/__main__.py`).

Export restores the workdir's best checkpoint by Top-1 (or `--step`; the
latest if none has metrics); any complete checkpoint will do, so a
preempted run, or the last good checkpoint of a run stopped by a NaN, can
be exported. It drops the optimizer and, for PCL models, the CAM module and
the erased-image classifier ([PCL] §4: deployment uses the backbone alone),
and writes, by `--formats` (default orbax,stablehlo):

  OUT/model.json       model name and options, class names, input size, pixel
                       statistics, the task (and a multi-label model's SARL
                       head), the artefacts written
  OUT/params/          orbax: the parameters and batch statistics, for
                       scenejax (`load_export`) and fine-tuning
  OUT/model.stablehlo  `jax.export`: serialized StableHLO of uint8 images
                       (B, H, W, 3) -> class probabilities (B, C), weights
                       inside, any batch size; runs with JAX alone (no
                       scenejax, no Flax) on CPU and CUDA
  OUT/model.tflite     TFLite / LiteRT (through jax2tf), one image per
                       call: (1, H, W, 3) -> (1, C); with
                       `--quantize`, int8 post-training quantization:
                       `dynamic` (weights only, no data) or `int8` (weights
                       and activations, calibrated on the images in
                       `--calibration`). Needs tensorflow-cpu to write and
                       ai-edge-litert (or TensorFlow) to run.

Both artefacts take the image after the evaluation crop (resize the shorter
side, centre crop: `input_pipeline.Preprocess`); normalization and the
softmax (a multi-label model: per-label sigmoids) are inside.

Predict preprocesses each image that way and prints its top-5 scene names
(a multi-label model's: its 5 most probable labels), computed by
`--runtime`: stablehlo, tflite or orbax (default: the first of those the
export has).
Arguments may be image files or directories of them. A file that cannot be
read or decoded is named on stderr and the others are still classified;
the command then exits with status 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from scenejax import fileio, input_pipeline, models, tasks
from scenejax.datasets import common
from scenejax.errors import UserError
from scenejax.models import pcl, sadcl
from scenejax.training import checkpoints

# Each format's file or directory inside an export.
ARTEFACTS = {
  "orbax": "params",
  "stablehlo": "model.stablehlo",
  "tflite": "model.tflite",
}
FORMATS = tuple(ARTEFACTS)
QUANTIZATIONS = ("dynamic", "int8")


def export(
  workdir: str,
  out: str,
  step: int | None = None,
  formats: tuple[str, ...] = ("orbax", "stablehlo"),
  quantize: str | None = None,
  calibration: str | None = None,
) -> dict:
  """Writes OUT/model.json and the `formats` from checkpoint `step`
  (default: the best by its task's metric); returns the model.json dict.
  Works on any complete checkpoint: a finished run, a preempted one, the
  last good one of a run stopped by a NaN."""
  unknown = sorted(set(formats) - set(FORMATS))
  if unknown or not formats:
    raise UserError(
      f"--formats: {', '.join(unknown) or 'nothing'} is not a format; "
      f"give some of {', '.join(FORMATS)}"
    )
  if quantize is not None and quantize not in QUANTIZATIONS:
    raise UserError(
      f"--quantize={quantize}: give one of {', '.join(QUANTIZATIONS)}"
    )
  if quantize and "tflite" not in formats:
    raise UserError(
      "--quantize applies to the tflite format: add it to --formats"
    )
  if (quantize == "int8") != bool(calibration):
    raise UserError(
      "--quantize=int8 calibrates activations on images: give "
      "--calibration=DIR (and only with int8)"
    )
  config, graphdef, state, step = checkpoints.restore_workdir(
    workdir, step=step
  )
  class_names = checkpoints.class_names(workdir, step)
  model, _ = nnx.merge(graphdef, state)
  task = tasks.for_config(config)
  extra_fields = (
    task.export_fields(config) if hasattr(task, "export_fields") else {}
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
    task=tasks.name_for(config),
    **extra_fields,
  )
  try:
    os.makedirs(out, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot create the export directory {out}: {e}") from e
  model.eval()
  if "orbax" in formats:
    with ocp.StandardCheckpointer() as checkpointer:
      checkpointer.save(
        os.path.abspath(os.path.join(out, ARTEFACTS["orbax"])),
        nnx.state(model),
        force=True,
      )
  if "stablehlo" in formats:
    data = stablehlo_bytes(model, description)
    fileio.atomic_write(
      os.path.join(out, ARTEFACTS["stablehlo"]), lambda f: f.write(data)
    )
  if "tflite" in formats:
    calibration_images = None
    if calibration:
      calibration_images = _calibration_images(calibration, description)
    data = tflite_bytes(model, description, quantize, calibration_images)
    fileio.atomic_write(
      os.path.join(out, ARTEFACTS["tflite"]), lambda f: f.write(data)
    )
    description["tflite_quantization"] = quantize or "none"
  description["artefacts"] = {f: ARTEFACTS[f] for f in FORMATS if f in formats}
  fileio.write_json(os.path.join(out, "model.json"), description)
  return description


def probabilities_function(model: nnx.Module, description: dict):
  """uint8 images (B, H, W, 3), already cropped -> float32 probabilities
  (B, C): what the exported artefacts compute. Softmax over scene classes;
  a multi-label model's labels are independent (a sigmoid each)."""
  graphdef, state = nnx.split(model)
  mean, std = description["pixel_mean"], description["pixel_std"]
  multilabel = "multilabel" in description  # its SARL head: sigmoids

  def probabilities(images):
    logits = nnx.merge(graphdef, state)(
      input_pipeline.normalize(images, mean, std)
    ).astype(jnp.float32)
    return jax.nn.sigmoid(logits) if multilabel else jax.nn.softmax(logits)

  return probabilities


def stablehlo_bytes(model: nnx.Module, description: dict) -> bytearray:
  """`jax.export` of `probabilities_function`, batch size symbolic, lowered
  for CPU and CUDA; the weights are constants inside."""
  (batch,) = jax.export.symbolic_shape("b")
  size = description["image_size"]
  exported = jax.export.export(
    jax.jit(probabilities_function(model, description)),
    platforms=("cpu", "cuda"),
  )(jax.ShapeDtypeStruct((batch, size, size, 3), jnp.uint8))
  return exported.serialize()


def tflite_bytes(
  model: nnx.Module,
  description: dict,
  quantize: str | None = None,
  calibration_images: np.ndarray | None = None,
) -> bytes:
  """A TFLite flatbuffer of `probabilities_function` for one image at a
  time, (1, H, W, 3): jax2tf wraps the function's StableHLO (for CPU) in
  a TF graph, and the TFLite converter legalizes it to TFLite ops.
  `quantize`: None (float32), "dynamic" (int8 weights) or "int8" (int8
  weights and activations, ranges from `calibration_images`, uint8 (N, H,
  W, 3)).

  The batch is fixed because a symbolic one leaves the shapes to runtime:
  every BatchNorm's broadcast becomes SHAPE/CONCATENATION/BROADCAST_TO ops
  that XNNPACK does not take and the converter cannot fold into the
  convolutions. ResNet-50, batch 16 through `tflite_runner`, 2 cores:
  7.6 images/s with a symbolic batch, 25.9 with batch 1 (2026-11-24)."""
  with _native_stderr_captured():
    return _convert_tflite(model, description, quantize, calibration_images)


@contextlib.contextmanager
def _native_stderr_captured():
  """TensorFlow's and the converter's C++ logs (oneDNN notices, "Ignored
  output_format", ...) go to file descriptor 2 whatever
  TF_CPP_MIN_LOG_LEVEL says; they are captured, and shown only if the
  conversion fails."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode="w+b") as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    except BaseException:
      os.dup2(saved, 2)
      captured.seek(0)
      sys.stderr.write(captured.read().decode(errors="replace"))
      raise
    finally:
      os.dup2(saved, 2)
      os.close(saved)


def _convert_tflite(model, description, quantize, calibration_images):
  try:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    from jax.experimental import jax2tf
  except ImportError:
    raise UserError(
      "the tflite format needs TensorFlow to convert: pip install "
      "tensorflow-cpu (or pip install -e '.[deploy]')"
    ) from None
  size = description["image_size"]
  function = tf.function(
    jax2tf.convert(
      probabilities_function(model, description),
      native_serialization_platforms=("cpu",),
    ),
    autograph=False,
    input_signature=[tf.TensorSpec([1, size, size, 3], tf.uint8)],
  )
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
    [function.get_concrete_function()], function
  )
  if quantize:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantize == "int8":
    converter.representative_dataset = lambda: (
      [image[None]] for image in calibration_images
    )
  return converter.convert()


def _eval_preprocess(description: dict) -> input_pipeline.Preprocess:
  """The export's input: evaluation's resize and centre crop."""
  return input_pipeline.Preprocess(
    train=False,
    image_size=description["image_size"],
    resize_size=description["resize_size"],
    on_corrupt="raise",
  )


def _calibration_images(directory: str, description: dict) -> np.ndarray:
  """The images in `directory`, preprocessed as evaluation does."""
  preprocess = _eval_preprocess(description)
  images = []
  for path in image_paths([directory]):
    try:
      with open(path, "rb") as f:
        images.append(preprocess({"image": f.read(), "label": 0})["image"])
    except OSError as e:
      raise UserError(f"--calibration: cannot read {path}: {e}") from e
  return np.stack(images)


def _description(directory: str) -> dict:
  path = os.path.join(directory, "model.json")
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    raise UserError(
      f"{path} not found: {directory} is not an export; make one with "
      "python -m scenejax.export --workdir=WORKDIR --out=DIR"
    ) from None
  except ValueError as e:
    raise UserError(f"{path}: not valid JSON ({e})") from e


def load_export(directory: str) -> tuple[nnx.Module, dict]:
  """(model in inference mode, model.json dict) of an export directory."""
  path = os.path.join(directory, "model.json")
  description = _description(directory)
  if not os.path.isdir(os.path.join(directory, ARTEFACTS["orbax"])):
    raise UserError(
      f"{directory} has no orbax parameters (params/): it was exported "
      "without the orbax format; export again with --formats=orbax,..."
    )
  options = {
    k: tuple(v) if isinstance(v, list) else v
    for k, v in description.get("options", {}).items()
  }
  num_classes = description["num_classes"]

  def build():
    model = models.create(description["model"], num_classes, **options)
    if "multilabel" not in description:  # no SARL head
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
      os.path.abspath(os.path.join(directory, ARTEFACTS["orbax"])), abstract
    )
  model = nnx.merge(graphdef, state)
  model.eval()
  return model, description


RUNTIMES = ("stablehlo", "tflite", "orbax")


def load_runtime(directory: str, runtime: str | None = None):
  """(probabilities, model.json dict): `probabilities(images)` maps uint8
  images (B, H, W, 3), cropped as evaluation does, to (B, C) float32 class
  probabilities with the export's `runtime` (default: the first of
  RUNTIMES the export has)."""
  description = _description(directory)
  have = [
    r for r in RUNTIMES if os.path.exists(os.path.join(directory, ARTEFACTS[r]))
  ]
  if runtime is None:
    runtime = (have or ["orbax"])[0]
  if runtime not in RUNTIMES:
    raise UserError(f"--runtime={runtime}: give one of {', '.join(RUNTIMES)}")
  if runtime not in have:
    raise UserError(
      f"{directory} has no {ARTEFACTS[runtime]}: export it with "
      f"--formats={runtime} (it has: {', '.join(have) or 'no artefact'})"
    )
  path = os.path.join(directory, ARTEFACTS[runtime])
  if runtime == "orbax":
    model, description = load_export(directory)
    function = jax.jit(probabilities_function(model, description))
    return (lambda images: np.asarray(function(images))), description
  if runtime == "stablehlo":
    with open(path, "rb") as f:
      try:
        exported = jax.export.deserialize(bytearray(f.read()))
      except Exception as e:  # flatbuffer errors have no common type
        raise UserError(f"{path}: not a serialized jax.export ({e})") from e
    return (lambda images: np.asarray(exported.call(images))), description
  return tflite_runner(path), description


def tflite_runner(path: str):
  """A LiteRT interpreter over `path`, resized to each batch's shape."""
  try:
    from ai_edge_litert.interpreter import Interpreter
  except ImportError:
    try:
      os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
      from tensorflow.lite import Interpreter
    except ImportError:
      raise UserError(
        f"{path}: running a TFLite model needs ai-edge-litert (pip install "
        "ai-edge-litert) or TensorFlow"
      ) from None
  try:
    # The interpreter's default is one thread.
    interpreter = Interpreter(model_path=path, num_threads=os.cpu_count())
  except ValueError as e:
    raise UserError(f"{path}: not a TFLite model ({e})") from e
  (source,) = interpreter.get_input_details()
  (result,) = interpreter.get_output_details()
  with _native_stderr_captured():  # "Created TensorFlow Lite XNNPACK ..."
    interpreter.allocate_tensors()
  # `tflite_bytes` fixes the batch (1); earlier exports left it symbolic
  # (-1) and take whole batches.
  fixed = int(source["shape_signature"][0])
  shape = None

  def run(images):
    nonlocal shape
    if images.shape != shape:
      interpreter.resize_tensor_input(source["index"], images.shape)
      with _native_stderr_captured():
        interpreter.allocate_tensors()
      shape = images.shape
    interpreter.set_tensor(source["index"], images)
    interpreter.invoke()
    return interpreter.get_tensor(result["index"]).copy()

  def probabilities(images):
    images = np.ascontiguousarray(images, np.uint8)
    if fixed < 1:
      return run(images)
    # A fixed batch: chunks of it, the last padded with zeros.
    pad = -len(images) % fixed
    padded = np.concatenate(
      [images, np.zeros((pad,) + images.shape[1:], np.uint8)]
    )
    chunks = [run(padded[i : i + fixed]) for i in range(0, len(padded), fixed)]
    if not chunks:
      return np.zeros((0,) + tuple(result["shape"][1:]), result["dtype"])
    return np.concatenate(chunks)[: len(images)]

  return probabilities


IMAGE_SUFFIXES = common.IMAGE_SUFFIXES


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
  directory: str,
  image_files: list[str],
  top: int = 5,
  runtime: str | None = None,
) -> list[Prediction]:
  """A Prediction for each image file, by the export's `runtime` (see
  `load_runtime`); a file that cannot be read or decoded gets its
  `error`, and the others are classified all the same."""
  probabilities, description = load_runtime(directory, runtime)
  preprocess = _eval_preprocess(description)
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
    probs = probabilities(np.asarray(image, np.uint8)[None])[0]
    order = np.argsort(-probs)[:top]
    names = description["class_names"]
    results.append(
      Prediction(path, [(names[i], float(probs[i])) for i in order])
    )
  return results
