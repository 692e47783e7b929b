"""Segmenting images with a scenejax segmenter: label maps, SAS-Net's top-3
files, streaming prototypes and mIoU.

The command is `python -m scenejax.segment` (`scenejax/segment/__main__.py`).

Inference (`Predictor`): the shorter side is resized to `size` (PIL
bilinear; the longer side capped at `max_size`), the image padded bottom/
right to a multiple of 32 with the checkpoint's mean colour (0 after
normalisation), and batches of equal padded shape run through one jitted
function, data-parallel over this process's devices (a `Mesh` of the local
devices: inference needs no cross-host collective, so each process of a
multi-host job segments its own shard and only the final sums are merged).
A shape compiles once; images of one dataset fall into a few shapes.
With `window` > 0 (sliding-window inference, mmsegmentation's "slide" test
mode, which the UperNet-ConvNeXt model cards use with 512 / 341) the padded
image (and at least `window` on each side) is cut into window x window
crops at `stride` (the last crop flush with the border), every crop
segmented, and the logits of overlapping crops averaged. mmsegmentation
does not pad first, and runs a smaller crop on an image smaller than the
window; `Resize(multiple=1)` removes the first difference at the price of
one compile per image size.

Test-time augmentation, mmsegmentation's convention (its aug_test /
SegTTAModel average the softmax probabilities): `flip` adds the mirrored
image, `scales` (e.g. 0.5, 0.75, ..., 1.75, its ADE20K ratios) run the
model on the image resized by each factor - on device, bilinear,
antialiased when shrinking as PIL's resize, from the resized and padded
image, so one compile covers every scale (mmsegmentation resizes the
original file with cv2, not antialiased: they differ where an upscale
could have used the original's extra pixels, and in the filter when
shrinking) - each scaled image padded again to the multiple (and the
window), its probabilities cropped and resized bilinearly back
(F.interpolate's rule, no antialiasing, as mmsegmentation), and the
probabilities of all scales and flips averaged.
The top-k classes are taken at the processed resolution, cropped to the
image and resized to its original size by nearest neighbour - the maps
written, evaluated and used for presence vectors are the same arrays.

Output ids: channel k of a 150-class ADE20K segmenter is ADE20K id k + 1
(0 = unlabeled is never predicted). SAS-Net's files store the top-3
channels 0-based (its loaders add 1) and the scores as round(255 p).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import os
from collections.abc import Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from scenejax import fileio, models, tasks
from scenejax.datasets import common
from scenejax.errors import ConfigError, DatasetError
from scenejax.models import pretrained
from scenejax.training import checkpoints

ADE20K_NUM_CLASSES = 150
IMAGE_SUFFIXES = common.IMAGE_SUFFIXES
# SAS-Net's file layout (its loaders read these folders): the top-3 ids and
# their scores, one RGB PNG each per image.
TOP3_IDS_DIR, TOP3_SCORES_DIR = "noisy_annotations_RGB", "noisy_scores_RGB"


def load_segmenter(
  name: str,
  init_from: str | None,
  *,
  num_classes: int | None = None,
  dtype: str = "float32",
) -> nnx.Module:
  """Segmenter `name` in inference mode, from a checkpoint or (no
  `init_from`, tests only) randomly initialised with seed 0.

  The class count is the checkpoint's (`num_labels` / `id2label` in its
  config.json), else `num_classes`, else 150.
  """
  if name not in models.SEGMENTERS:
    raise ConfigError(
      f"--segmenter={name!r} is not a segmenter; known: "
      + ", ".join(models.SEGMENTERS)
    )
  if dtype not in models.DTYPES:
    raise ConfigError(
      f"--dtype={dtype!r}; expected one of {list(models.DTYPES)}"
    )
  if init_from and checkpoints.is_training_workdir(init_from):
    return _from_workdir(name, init_from, dtype)
  if init_from:
    config = pretrained.read_hf_config(pretrained.local_path(init_from))
    found = len(config.get("id2label") or {}) or config.get("num_labels")
    num_classes = found or num_classes
  else:
    logging.warning("%s: no --init_from, random weights (tests only)", name)
  model = models.create(
    name,
    num_classes or ADE20K_NUM_CLASSES,
    init_from=init_from,
    dtype=models.DTYPES[dtype],
  )
  model.eval()
  return model


def _from_workdir(name: str, workdir: str, dtype: str) -> nnx.Module:
  """The best checkpoint (by mIoU) of a segmentation training run."""

  config = checkpoints.read_workdir_config(workdir)
  if tasks.name_for(config) != "segmentation" or config.model != name:
    raise ConfigError(
      f"--init_from={workdir} is a training run of {config.model!r} "
      f"(task {tasks.name_for(config)!r}), not a "
      f"segmentation run of --segmenter={name}"
    )
  _, graphdef, state, _ = checkpoints.restore_workdir(workdir)
  model = nnx.merge(graphdef, state)[0]
  model.eval()
  return model


def checkpoint_label_names(init_from: str | None) -> list[str] | None:
  """The class names of a segmentation checkpoint: a Hugging Face one's
  (`id2label` in its config.json, in id order), a training workdir's (its
  best checkpoint's), or None without them."""
  if not init_from:
    return None
  if checkpoints.is_training_workdir(init_from):
    best = checkpoints.best_step(checkpoints.directory(init_from))
    return list(checkpoints.class_names(init_from, best))
  config = pretrained.read_hf_config(pretrained.local_path(init_from))
  id2label = config.get("id2label") or {}
  try:
    names = [str(id2label[k]) for k in sorted(id2label, key=int)]
  except (TypeError, ValueError):
    return None
  # transformers writes "LABEL_0", "LABEL_1", ... when none were given.
  if not names or all(n == f"LABEL_{i}" for i, n in enumerate(names)):
    return None
  return names


def check_ade20k_output(
  model, class_names, *, field: str = "--class_names"
) -> None:
  """Label maps in ADE20K ids need 150 classes, or the user's names (a
  file or a list, given as `field`)."""
  if model.num_classes != ADE20K_NUM_CLASSES and not class_names:
    raise ConfigError(
      f"the segmenter has {model.num_classes} classes, not ADE20K's 150: "
      f"its ids 1..N would be read as ADE20K objects. Give {field} "
      "(a file of its N class names) to use its own ids"
    )


@dataclasses.dataclass(frozen=True)
class Resize:
  """Shorter side -> `size` (longer side at most `max_size`), padded to a
  multiple of `multiple`."""

  size: int = 512
  max_size: int = 2048
  multiple: int = 32

  def shape(self, height: int, width: int) -> tuple[int, int]:
    scale = min(
      self.size / min(height, width), self.max_size / max(height, width)
    )
    return max(1, round(height * scale)), max(1, round(width * scale))

  def padded(self, height: int, width: int) -> tuple[int, int]:
    m = self.multiple
    return -(-height // m) * m, -(-width // m) * m


def window_stride(window: int, stride: int = 0) -> int:
  """The sliding-window stride: `stride`, or 0 -> 2/3 of the window
  (mmsegmentation's 341 for 512); 0 without a window."""
  return (stride or max(1, window * 2 // 3)) if window else 0


def window_starts(length: int, window: int, stride: int) -> list[int]:
  """Offsets of the crops covering `length` pixels (mmsegmentation's slide
  inference: a crop every `stride`, the last moved back to end at the
  border); `length` >= `window`."""
  count = max(length - window + stride - 1, 0) // stride + 1
  return [min(i * stride, length - window) for i in range(count)]


class Predictor:
  """Top-k classes and softmax scores per pixel, one jitted function over
  this process's devices."""

  def __init__(
    self,
    model: nnx.Module,
    *,
    batch_size: int = 8,
    top_k: int = 1,
    resize: Resize = Resize(),
    window: int = 0,
    stride: int = 0,
    flip: bool = False,
    scales: tuple[float, ...] = (1.0,),
    threads: int = 4,
  ):
    """`window` > 0: sliding-window inference with window x window crops
    every `stride` pixels (0: 2/3 of the window, mmsegmentation's 341 for
    512); all crops of a batch go through the model at once. `flip` and
    `scales`: the softmax probabilities averaged over the mirrored image
    and the image rescaled by each factor (module docstring)."""
    devices = jax.local_devices()
    if batch_size % len(devices):
      raise ConfigError(
        f"--batch_size={batch_size} must be a multiple of the "
        f"{len(devices)} local devices"
      )
    if window < 0 or not 0 <= stride <= window:
      raise ConfigError(
        f"--window={window}, --stride={stride}: need window >= 0 and "
        "0 <= stride <= window (stride 0 = 2/3 of the window; a stride "
        "needs a window)"
      )
    scales = tuple(float(r) for r in scales)
    if not scales or not all(0.1 <= r <= 8 for r in scales):
      raise ConfigError(
        f"--scales={','.join(map(str, scales))}: need one or more factors "
        "in [0.1, 8] (1 = the --size image; mmsegmentation's ADE20K "
        "ratios are 0.5,0.75,1.0,1.25,1.5,1.75)"
      )
    self.window, self.stride = window, window_stride(window, stride)
    self.batch_size, self.top_k, self.resize = batch_size, top_k, resize
    self.num_classes = model.num_classes
    self.mesh = Mesh(np.array(devices), ("data",))
    self._data = NamedSharding(self.mesh, P("data"))
    graphdef, state = nnx.split(model)
    self._state = jax.device_put(state, NamedSharding(self.mesh, P()))
    mean = np.asarray(model.pixel_mean, np.float32)
    std = np.asarray(model.pixel_std, np.float32)
    self._fill = np.round(mean * 255).astype(np.uint8)

    def probabilities(model, x):
      logits = self._slide(model, x) if self.window else model(x)
      return jax.nn.softmax(logits.astype(jnp.float32))

    def at_scale(model, x, scale):
      """Probabilities of `x` rescaled by `scale`, at x's size."""
      b, height, width, _ = x.shape
      h, w = max(1, round(height * scale)), max(1, round(width * scale))
      if (h, w) != (height, width):  # bilinear, antialiased when shrinking
        x = jax.image.resize(x, (b, h, w, 3), "linear")
      ph, pw = resize.padded(h, w)
      ph, pw = max(ph, self.window), max(pw, self.window)
      # 0 is the mean colour after normalisation, as in `_prepare`.
      x = jnp.pad(x, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)))
      probs = probabilities(model, x)
      if flip:
        mirrored = probabilities(model, x[:, :, ::-1])[:, :, ::-1]
        probs = (probs + mirrored) / 2
      probs = probs[:, :h, :w]
      if (h, w) != (height, width):  # as mmsegmentation: no antialiasing
        probs = jax.image.resize(
          probs, (b, height, width, probs.shape[-1]), "linear", antialias=False
        )
      return probs

    def predict(state, images):
      x = (images.astype(jnp.float32) / 255.0 - mean) / std
      model = nnx.merge(graphdef, state)
      probs = sum(at_scale(model, x, r) for r in scales) / len(scales)
      scores, ids = jax.lax.top_k(probs, top_k)
      return ids.astype(
        jnp.uint8 if self.num_classes < 256 else jnp.int32
      ), scores

    self._predict = jax.jit(
      predict, in_shardings=(None, self._data), out_shardings=self._data
    )
    self.pool = concurrent.futures.ThreadPoolExecutor(threads)

  def _slide(self, model, x):
    """Logits of (B, H, W, 3) from window x window crops, averaged where
    crops overlap (shapes are static: the crops are Python slices)."""
    b, height, width, _ = x.shape
    win = self.window
    corners = [
      (y, x0)
      for y in window_starts(height, win, self.stride)
      for x0 in window_starts(width, win, self.stride)
    ]
    # Image-major (B, n, ...) -> (B * n, ...): each device keeps the crops
    # of its own images, so the batch stays sharded over "data".
    crops = jnp.stack(
      [x[:, y : y + win, x0 : x0 + win] for y, x0 in corners], axis=1
    )
    logits = model(crops.reshape(-1, win, win, 3)).astype(jnp.float32)
    logits = logits.reshape(b, len(corners), win, win, -1)
    total = jnp.zeros((b, height, width, logits.shape[-1]), jnp.float32)
    count = np.zeros((height, width, 1), np.float32)
    for i, (y, x0) in enumerate(corners):
      total = total.at[:, y : y + win, x0 : x0 + win].add(logits[:, i])
      count[y : y + win, x0 : x0 + win] += 1
    return total / count

  def _prepare(self, image):
    """Resized and padded uint8 image, and its size before padding."""
    from PIL import Image

    h, w = self.resize.shape(*image.shape[:2])
    if (h, w) != image.shape[:2]:
      image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    ph, pw = self.resize.padded(h, w)  # few shapes: one compile each
    if self.window:  # and at least one window
      ph, pw = max(ph, self.window), max(pw, self.window)
    canvas = np.empty((ph, pw, 3), np.uint8)
    canvas[...] = self._fill
    canvas[:h, :w] = image
    return canvas, (h, w)

  def __call__(
    self, images: list[np.ndarray | None]
  ) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """(ids (H, W, k), scores (H, W, k) float32) per image at its own size,
    ids 0-based channels; None for a None image."""
    prepared = list(
      self.pool.map(
        lambda im: None if im is None else self._prepare(im), images
      )
    )
    results: list = [None] * len(images)
    groups: dict[tuple, list[int]] = {}
    for i, item in enumerate(prepared):
      if item is not None:
        groups.setdefault(item[0].shape, []).append(i)
    for shape, members in groups.items():
      for start in range(0, len(members), self.batch_size):
        batch = members[start : start + self.batch_size]
        x = np.zeros((self.batch_size, *shape), np.uint8)
        for j, i in enumerate(batch):
          x[j] = prepared[i][0]
        ids, scores = jax.device_get(
          self._predict(self._state, jax.device_put(x, self._data))
        )
        for j, i in enumerate(batch):
          h, w = prepared[i][1]
          height, width = images[i].shape[:2]
          results[i] = (
            _nearest(ids[j, :h, :w], height, width),
            _nearest(scores[j, :h, :w], height, width),
          )
    return results


def _nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
  """(h, w, k) -> (height, width, k) by nearest neighbour (PIL's rule:
  source index floor((i + 0.5) * h / height))."""
  h, w = array.shape[:2]
  if (h, w) == (height, width):
    return array
  rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(int), h - 1)
  cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(int), w - 1)
  return array[rows[:, None], cols[None, :]]


def label_map(ids: np.ndarray) -> np.ndarray:
  """Top-1 channels (H, W, k) -> ADE20K-convention ids (H, W): channel + 1."""
  return ids[..., 0].astype(np.int32) + 1


def segment_records(
  predictor: Predictor,
  records: Iterable[dict],
  *,
  chunk: int | None = None,
) -> Iterator[tuple[dict, tuple[np.ndarray, np.ndarray] | None]]:
  """Records {"image": bytes / path / uint8 array, "name": str, ...} ->
  (the record without its image, (ids, scores) or None when the image
  cannot be decoded), in order, `chunk` images at a time (default 4
  batches: enough to fill batches of equal shape). Images are decoded in
  the predictor's threads."""
  chunk = chunk or 4 * predictor.batch_size
  it = iter(records)
  while items := list(itertools.islice(it, chunk)):
    images = list(
      predictor.pool.map(
        lambda r: _decode(r.get("name", "?"), r["image"]), items
      )
    )
    for record, result in zip(items, predictor(images)):
      yield {k: v for k, v in record.items() if k != "image"}, result


def _decode(name, data) -> np.ndarray | None:
  if isinstance(data, np.ndarray):
    return data
  return common.decode_image(data, name)


# --------------------------------------------------------------------------
# Writing files.


def write_png(path: str, array: np.ndarray) -> None:
  """uint8 (H, W) or (H, W, 3) array as a PNG, atomically."""
  from PIL import Image

  image = Image.fromarray(np.ascontiguousarray(array.astype(np.uint8)))
  fileio.atomic_write(path, lambda f: image.save(f, format="PNG"))


def write_outputs(out: str, rel: str, result, *, top3: bool) -> None:
  """The label map `out/rel` (ADE20K ids) and, with `top3`, SAS-Net's
  `out/noisy_annotations_RGB/rel` (top-3 channels, 0-based) and
  `out/noisy_scores_RGB/rel` (round(255 p))."""
  ids, scores = result
  write_png(os.path.join(out, rel), label_map(ids))
  if top3:
    write_png(os.path.join(out, TOP3_IDS_DIR, rel), ids[..., :3])
    write_png(
      os.path.join(out, TOP3_SCORES_DIR, rel),
      np.round(scores[..., :3] * 255),
    )


def image_files(directory: str) -> list[str]:
  """Image files under `directory`, relative paths, sorted."""
  if not os.path.isdir(directory):
    raise DatasetError(f"--images={directory}: not a directory")
  found = sorted(
    os.path.relpath(os.path.join(root, f), directory)
    for root, _, files in os.walk(directory)
    for f in files
    if f.lower().endswith(IMAGE_SUFFIXES)
  )
  if not found:
    raise DatasetError(
      f"--images={directory}: no image files ({', '.join(IMAGE_SUFFIXES)})"
    )
  return found


def png_name(rel: str) -> str:
  return os.path.splitext(rel)[0] + ".png"


# --------------------------------------------------------------------------
# Evaluation: exact confusion counts over ids 1..K (0 ignored).


def progress(total: int, desc: str):
  from scenejax import progress as progress_lib

  return progress_lib.bar(
    total=total,
    desc=desc,
    unit="img",
    disable=jax.process_index() != 0,
    smoothing=0.1,
  )


# --------------------------------------------------------------------------
# Command line.


def write_files(predictor, records, total: int, out: str, *, top3: bool):
  """Segments `records` ({"image", "name", "rel"}) and writes each one's
  label map `out/rel` (and, with `top3`, SAS-Net's files); returns
  (written, skipped undecodable). Finished images are skipped: a rerun
  after an interruption resumes (every file is written by rename, so one
  that exists is complete)."""

  def outputs(rel):
    rel = png_name(rel)
    paths = [os.path.join(out, rel)]
    if top3:
      paths += [
        os.path.join(out, TOP3_IDS_DIR, rel),
        os.path.join(out, TOP3_SCORES_DIR, rel),
      ]
    return paths

  bar = progress(total, "segmenting")

  def todo():
    for record in records:
      if all(map(os.path.exists, outputs(record["rel"]))):
        bar.update(1)
      else:
        yield record

  written = skipped = 0
  try:
    for record, result in segment_records(predictor, todo()):
      if result is None:
        skipped += 1
      else:
        write_outputs(out, png_name(record["rel"]), result, top3=top3)
        written += 1
      bar.update(1)
  finally:
    bar.close()
  return written, skipped


def write_split_files(
  predictor, data, split: str, out: str, *, top3: bool = True
):
  """`write_files` for record i of `data`'s split ("train" or "test")
  as `split/{i:08d}.png`, then `out/split.txt` (one "file label" line per
  record, in order: `semantic_aware.SemanticFiles` checks a run's dataset
  against it) and `out/class_names.txt`. Returns (written, skipped)."""
  source = data.train if split == "train" else data.test
  fileio.write_text(
    os.path.join(out, "class_names.txt"), "\n".join(data.class_names) + "\n"
  )
  lines = []

  def records():
    for i in range(len(source)):
      record = dict(source[i], rel=f"{split}/{i:08d}.png")
      lines.append(f"{record['rel']} {int(record['label'])}")
      yield record

  counts = write_files(predictor, records(), len(source), out, top3=top3)
  # The list, once every record has been seen.
  fileio.write_text(os.path.join(out, f"{split}.txt"), "\n".join(lines) + "\n")
  return counts
