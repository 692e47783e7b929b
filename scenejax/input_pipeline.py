"""Input pipeline: grain datasets over random-access sources, batched.

A source is anything with `__len__` and `__getitem__(i) -> {"image": uint8
(H, W, 3), "label": int}` (the synthetic dataset's splits; TFDS ArrayRecord
data sources have the same shape). Images stay uint8 on the way to the
device (4x less to transfer); `normalize` runs inside the jitted step.
"""

from __future__ import annotations

from collections.abc import Iterator

import grain
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from scenejax.datasets import common

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# SAS-Net's precomputed semantic input: uint8 (H, W, 3) top-3 ids (0-based
# segmenter channels) and scores (round(255 p)), aligned with "image".
SEMANTIC_KEYS = ("semantic_ids", "semantic_scores")


def train_batches(
  source,
  batch_size: int,
  *,
  seed: int,
  epoch: int,
  preprocess: Preprocess | None = None,
  process_index: int | None = None,
  process_count: int | None = None,
  num_threads: int = 16,
) -> grain.MapDataset | grain.IterDataset:
  """This process's part of the training batches of one epoch.

  The order is an endless repetition of the source, each epoch a
  permutation of the whole source that depends only on (seed, epoch).
  `batch_size` is the global batch; each global batch is split into
  `process_count` contiguous parts and this process reads part
  `process_index` (defaults: JAX's). Crops and
  flips draw from a generator seeded by (seed, global position), so the
  global batches, and hence the numbers, are the same whatever the number
  of processes or devices. Iterating gives a grain iterator whose
  `get_state()`/`set_state()` resume an epoch exactly.

  The last partial batch is dropped (BCL wants full batches). A corrupt
  image (`preprocess` returns None) is replaced by the next readable one in
  the epoch's order, so batches stay full and aligned across processes.
  `num_threads` grain threads decode ahead (PIL releases the GIL); 0
  decodes in the calling thread.
  """
  process_index = (
    jax.process_index() if process_index is None else process_index
  )
  process_count = (
    jax.process_count() if process_count is None else process_count
  )
  if batch_size % process_count:
    raise ValueError(
      f"batch size {batch_size} is not a multiple of the "
      f"process count {process_count}"
    )
  local = batch_size // process_count
  num = len(source)

  def permutation(e):
    # One NumPy permutation per epoch: grain's per-index shuffle costs
    # ~50 us an element, 5-10% of a 256-px image's decode.
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(e,)))
    return rng.permutation(num)

  # Epoch -> its order. The next epoch's is made only if a corrupt image
  # near the end needs a replacement (by whichever grain thread gets there;
  # a race computes the same array twice).
  permutations = {epoch: permutation(epoch)}

  def shuffled(pos):
    """The example at `pos` of the endless sequence of epochs."""
    e, k = divmod(pos, num)
    if e not in permutations:
      permutations[e] = permutation(e)
    return source[int(permutations[e][k])]

  def position(i):
    step, offset = divmod(i, local)
    return epoch * num + step * batch_size + process_index * local + offset

  def example(i):
    pos = position(i)
    if preprocess is None:
      return shuffled(pos)
    for attempt in range(16):
      out = preprocess(
        shuffled(pos + attempt), np.random.default_rng([seed, pos + attempt])
      )
      if out is not None:
        return out
    raise common.DatasetError(
      f"16 unreadable images in a row at position "
      f"{pos} of the shuffled training order"
    )

  indices = grain.MapDataset.range((num // batch_size) * local)
  if preprocess is None:
    return indices.map(example).batch(local, drop_remainder=True)
  read = grain.ReadOptions(
    num_threads=num_threads, prefetch_buffer_size=max(2 * num_threads, 1)
  )
  return (
    indices.map(example).to_iter_dataset(read).batch(local, drop_remainder=True)
  )


def eval_batches(
  source,
  batch_size: int,
  *,
  preprocess: Preprocess | None = None,
  process_index: int | None = None,
  process_count: int | None = None,
) -> Iterator[dict]:
  """Every example once, in order; the last batch is padded and masked.

  Yields dicts with "image", "label" (and SAS-Net's `SEMANTIC_KEYS` where
  the examples have them) and a bool "mask" (False on padding),
  all of leading size `batch_size` (this process's part of the global
  batch), so the eval step compiles once and no example is dropped.
  Multi-host: each process covers its own strided shard and pads to the
  same number of batches as the largest shard, so every process takes part
  in every step. A corrupt image is skipped and counted by `preprocess`.
  """
  process_index = (
    jax.process_index() if process_index is None else process_index
  )
  process_count = (
    jax.process_count() if process_count is None else process_count
  )
  ds = grain.MapDataset.source(source)[process_index::process_count]
  if preprocess is not None:
    ds = ds.map(preprocess).to_iter_dataset()
  largest_shard = -(-len(source) // process_count)
  num_batches = -(-largest_shard // batch_size)
  count = 0
  template = None
  for batch in ds.batch(batch_size):
    real = batch["label"].shape[0]
    pad = batch_size - real
    batch = {
      k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)])
      for k, v in batch.items()
      if k in ("image", "label") + SEMANTIC_KEYS
    }
    batch["mask"] = np.arange(batch_size) < real
    template = batch
    count += 1
    yield batch
  while template is not None and count < num_batches:  # all padding
    count += 1
    yield {k: np.zeros_like(v) for k, v in template.items()}


class Preprocess:
  """Decode + the papers' augmentation, one example at a time.

  Train ([SP] §4.1, [PCL] §5): resize the shorter side to `resize_size`
  (256), random `image_size` (224) crop, random horizontal flip; or, with
  `random_resized_crop`, Inception-style crops of 8-100% area and 3/4-4/3
  aspect ratio. Eval: resize the shorter side, centre crop. Images may
  arrive encoded (bytes, from TFDS) or decoded (uint8 arrays, synthetic);
  arrays already `image_size` square pass through untouched. With
  `ten_crop` (eval only; SAS-Net reports it) the image becomes
  (10, size, size, 3): the four corner crops and the centre crop of the
  resized image, then the same five flipped; `eval_step` averages the
  softmax over them. An example's SAS-Net top-3 maps (`SEMANTIC_KEYS`)
  get the image's resize, crops and flip, ids by nearest neighbour and
  scores bilinearly (SAS-Net's loaders).

  With `jpeg_draft`, a JPEG is decoded straight at reduced size where the
  crop allows it (`common.open_image`'s `draft_size`: shorter side >=
  `resize_size`; not with `random_resized_crop`, whose small boxes need
  the full resolution, nor with SAS-Net's maps).

  An image that cannot be decoded returns None (the pipeline drops it),
  is logged with its name and counted in `self.skipped`; with
  `on_corrupt="raise"` it raises instead. Randomness comes from the
  per-example generator grain passes (`random_map`), so the output depends
  only on (seed, example position), not on worker count or timing.
  """

  def __init__(
    self,
    *,
    train: bool,
    image_size: int = 224,
    resize_size: int = 256,
    random_resized_crop: bool = False,
    ten_crop: bool = False,
    on_corrupt: str = "skip",
    jpeg_draft: bool = False,
  ):
    if on_corrupt not in ("skip", "raise"):
      raise ValueError(
        f"on_corrupt = {on_corrupt!r}; expected 'skip' or 'raise'"
      )
    self.train, self.image_size, self.resize_size = (
      train,
      image_size,
      (resize_size),
    )
    self.random_resized_crop = random_resized_crop
    if ten_crop and train:
      raise ValueError("ten_crop is an evaluation transform (train=False)")
    self.ten_crop = ten_crop
    self.on_corrupt = on_corrupt
    self.draft_size = (
      resize_size if jpeg_draft and not random_resized_crop else None
    )
    self.skipped = 0

  def __call__(self, example: dict, rng: np.random.Generator | None = None):
    from PIL import Image

    image = example["image"]
    name = example.get("name", "?")
    if isinstance(image, (bytes, np.bytes_)):
      # Stay in PIL from decode to crop: one array copy, of the crop only.
      semantic = any(k in example for k in SEMANTIC_KEYS)
      image = common.open_image(
        bytes(image),
        name,
        strict=self.on_corrupt == "raise",
        draft_size=None if semantic else self.draft_size,
      )
      if image is None:
        self.skipped += 1
        return None
    # SAS-Net's top-3 maps (`semantic_aware.SemanticFiles`) take the
    # image's resize, crops and flip: ids by nearest neighbour, scores
    # bilinearly, as its official loaders do.
    extra = [k for k in SEMANTIC_KEYS if k in example]
    resample = {
      "semantic_ids": Image.NEAREST,
      "semantic_scores": Image.BILINEAR,
    }
    size = self.image_size
    if (
      isinstance(image, np.ndarray)
      and image.shape[:2] == (size, size)
      and not self.random_resized_crop
    ):
      crops = [image] + [example[k] for k in extra]  # already final
    else:
      if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
      images = [(image, Image.BILINEAR)] + [
        (Image.fromarray(np.asarray(example[k])), resample[k]) for k in extra
      ]
      if self.ten_crop:
        crops = [self._ten_crops(*pair) for pair in images]
      else:
        crops = self._crop(images, rng)
    flip = self.train and rng.random() < 0.5
    # A scene label, or a multi-label (K,) presence vector.
    out = {"label": np.asarray(example["label"], np.int32)}
    for key, crop in zip(["image"] + extra, crops, strict=True):
      out[key] = _copy(np.asarray(crop, np.uint8), flip)
    return out

  def _ten_crops(self, image, resample):
    size = self.image_size
    resized = np.asarray(self._resize(image, resample))
    h, w = resized.shape[:2]
    corners = [
      (0, 0),
      (0, w - size),
      (h - size, 0),
      (h - size, w - size),
      ((h - size) // 2, (w - size) // 2),
    ]
    crops = [resized[t : t + size, l : l + size] for t, l in corners]
    return np.stack(crops + [c[:, ::-1] for c in crops])

  def _resize(self, image, resample):
    """Shorter side to `resize_size` (never below `image_size`)."""
    size = self.image_size
    scale = self.resize_size / min(image.size)
    target = (
      max(size, round(image.size[0] * scale)),
      max(size, round(image.size[1] * scale)),
    )
    # PIL copies on a resize to the same size; pre-resized data skips it.
    return image if target == image.size else image.resize(target, resample)

  def _crop(self, images, rng):
    """[(PIL image, resample)] of one size -> their (size, size, ...) uint8
    crops by the train/eval rule, one random draw for all."""
    size = self.image_size
    if self.train and self.random_resized_crop:
      box = _random_resized_box(*images[0][0].size, rng)
      return [
        np.asarray(image.resize((size, size), resample, box=box))
        for image, resample in images
      ]
    resized = [self._resize(image, resample) for image, resample in images]
    w, h = resized[0].size
    if self.train:
      top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    else:
      top, left = (h - size) // 2, (w - size) // 2
    # Windows of each resized image's array; `__call__` copies them (PIL's
    # crop + asarray costs twice a whole-image asarray and a sliced copy).
    return [
      np.asarray(image)[top : top + size, left : left + size]
      for image in resized
    ]


class SegmentationPreprocess:
  """Decode an image and its label map and keep them aligned, one example
  at a time (records of `datasets.LabelMapSource`; a record's "label_lut"
  maps the stored ids to scenejax's, e.g. Cityscapes labelIds).

  Train, mmsegmentation's ADE20K recipe ([SEG] names none): scale both so
  the shorter side is `base_size` · r, r ~ U(`scale_range`) (0.5-2.0;
  image bilinear, map nearest); a random `crop_size` square crop, padded
  where the scaled image is smaller (image with 0, map with 0 =
  unlabeled, so padding is ignored by the losses); a horizontal flip with
  probability 1/2; with `jitter`, mmsegmentation's photometric distortion
  without its hue shift: brightness ±32, contrast and saturation x[0.5,
  1.5], each with probability 1/2, in random order of contrast before or
  after saturation.

  Eval (the trainer's per-epoch monitoring): the whole image scaled to fit
  `crop_size` x `crop_size` (no upscaling), padded to it; exact full-size
  sliding-window evaluation is `scenejax.segment --evaluate`.

  Returns {"image": uint8 (crop, crop, 3), "label": uint8 (crop, crop)};
  None for an undecodable record (counted in `self.skipped`).
  """

  def __init__(
    self,
    *,
    train: bool,
    crop_size: int = 512,
    base_size: int = 512,
    scale_range: tuple[float, float] = (0.5, 2.0),
    jitter: bool = True,
    on_corrupt: str = "skip",
  ):
    self.train, self.crop_size, self.base_size = train, crop_size, base_size
    self.scale_range, self.jitter = tuple(scale_range), jitter
    self.on_corrupt = on_corrupt
    self.skipped = 0

  def _decode(self, example):
    from PIL import Image

    image, label = example["image"], example["label"]
    name = example.get("name", "?")
    if isinstance(image, (bytes, np.bytes_)):
      image = common.open_image(
        bytes(image), name, strict=self.on_corrupt == "raise"
      )
      if image is None:
        return None
    else:
      image = Image.fromarray(np.asarray(image, np.uint8))
    if isinstance(label, (bytes, np.bytes_)):
      import io

      try:
        with Image.open(io.BytesIO(bytes(label))) as png:
          if png.mode not in ("L", "P", "I", "I;16", "1"):
            raise ValueError(f"a {png.mode} image, not a map of ids")
          label = np.asarray(png).reshape(png.size[1], png.size[0])
      except (OSError, ValueError) as e:
        if self.on_corrupt == "raise":
          raise common.DatasetError(
            f"{name}: label map unreadable ({e})"
          ) from e
        logging.warning("%s: label map unreadable (%s), skipped", name, e)
        return None
    label = np.asarray(label)
    if example.get("label_lut") is not None:  # e.g. Cityscapes labelIds
      label = np.asarray(example["label_lut"])[label]
    if label.size and int(label.max()) > 255:
      raise common.DatasetError(
        f"{name}: label map ids up to {int(label.max())}; segmentation maps "
        "travel as uint8 (ids <= 255)"
      )
    label = Image.fromarray(label.astype(np.uint8))
    if label.size != image.size:
      raise common.DatasetError(
        f"{name}: label map {label.size} and image {image.size} differ in "
        "size (width, height)"
      )
    return image, label

  def __call__(self, example: dict, rng: np.random.Generator | None = None):
    from PIL import Image

    decoded = self._decode(example)
    if decoded is None:
      self.skipped += 1
      return None
    image, label = decoded
    w, h = image.size
    crop = self.crop_size
    if self.train:
      scale = self.base_size * rng.uniform(*self.scale_range) / min(w, h)
    else:
      scale = min(1.0, crop / max(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size != (w, h):
      image = image.resize(size, Image.BILINEAR)
      label = label.resize(size, Image.NEAREST)
    image, label = np.asarray(image), np.asarray(label)
    h, w = label.shape
    top = rng.integers(0, max(h - crop, 0) + 1) if self.train else 0
    left = rng.integers(0, max(w - crop, 0) + 1) if self.train else 0
    out_image = np.zeros((crop, crop, 3), np.uint8)
    out_label = np.zeros((crop, crop), np.uint8)
    part_image = image[top : top + crop, left : left + crop]
    ph, pw = part_image.shape[:2]
    out_image[:ph, :pw] = part_image
    out_label[:ph, :pw] = label[top : top + crop, left : left + crop]
    if self.train:
      if rng.random() < 0.5:
        out_image, out_label = out_image[:, ::-1], out_label[:, ::-1]
      if self.jitter:
        out_image = _photometric(out_image, rng)
    return {
      "image": np.ascontiguousarray(out_image),
      "label": np.ascontiguousarray(out_label),
    }


def _copy(array: np.ndarray, flip: bool) -> np.ndarray:
  """A C-contiguous copy of (H, W, ...) `array`, mirrored left-right if
  `flip`. Each pixel's channels move as one void item: numpy's copy of a
  reversed uint8 (H, W, 3) view goes byte by byte, 4x slower (200 against
  50 us at 224 px)."""
  if not flip:
    return np.array(array, order="C", copy=True)
  if array.ndim != 3 or array.strides[-1] != array.itemsize:
    return np.array(array[:, ::-1], order="C", copy=True)
  pixel = np.dtype((np.void, array.shape[-1] * array.itemsize))
  mirrored = array.view(pixel)[:, ::-1, 0].copy()
  return mirrored.view(array.dtype).reshape(array.shape)


def _photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """mmsegmentation's PhotoMetricDistortion without the hue shift."""
  x = image.astype(np.float32)
  if rng.random() < 0.5:
    x = x + rng.uniform(-32, 32)
  contrast_first = rng.random() < 0.5
  contrast = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else 1.0
  saturation = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else 1.0
  if contrast_first:
    x = x * contrast
  if saturation != 1.0:  # blend with the grey image (ITU-R 601 luma)
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = grey[..., None] + saturation * (np.clip(x, 0, 255) - grey[..., None])
  if not contrast_first:
    x = x * contrast
  return np.clip(x, 0, 255).astype(np.uint8)


def _random_resized_box(w, h, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
  """An Inception-style crop box of a w x h image (10 tries, then the
  centre square)."""
  area = w * h
  for _ in range(10):
    target = area * rng.uniform(*scale)
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
    cw, ch = round(np.sqrt(target * aspect)), round(np.sqrt(target / aspect))
    if 0 < cw <= w and 0 < ch <= h:
      left, top = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
      break
  else:
    cw = ch = min(w, h)
    left, top = (w - cw) // 2, (h - ch) // 2
  return (left, top, left + cw, top + ch)


def normalize(images, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> jax.Array:
  """uint8 NHWC -> float32, (x / 255 - mean) / std."""
  x = images.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def shard_batch(batch: dict, sharding) -> dict:
  """Places a host batch on the mesh, split along the batch axis.

  Uses `jax.make_array_from_process_local_data`: on one host the batch is the
  global batch; on several, each process passes its own slice.
  """
  return {
    k: jax.make_array_from_process_local_data(sharding, v)
    for k, v in batch.items()
  }


def device_batches(
  batches, sharding, *, host_buffer: int = 2, device_buffer: int = 2
) -> grain.IterDataset:
  """`batches` placed on the mesh ahead of the train step.

  `grain.experimental.device_put`'s two stages, with `shard_batch` as the
  placement (jax.device_put cannot place one process's part of a global
  batch): a thread assembles up to `host_buffer` batches ahead, a second
  thread puts up to `device_buffer` of them on the devices, so batching
  and the host-to-device copy overlap the running step. `get_state()` is
  the state after the last batch taken, as without the buffers (a
  preemption save resumes at the right batch). A buffer of 0 turns its
  stage off.
  """
  if isinstance(batches, grain.MapDataset):
    batches = batches.to_iter_dataset()
  if host_buffer:
    batches = grain.experimental.ThreadPrefetchIterDataset(
      batches, prefetch_buffer_size=host_buffer
    )
  batches = batches.map(lambda batch: shard_batch(batch, sharding))
  if device_buffer:
    batches = grain.experimental.ThreadPrefetchIterDataset(
      batches, prefetch_buffer_size=device_buffer
    )
  return batches


def preprocessors(config, data) -> tuple[Preprocess | None, Preprocess | None]:
  """(train, eval) `Preprocess` of `config.data` for `data`, or (None,
  None) for the synthetic scenes, which are rendered at their final size."""
  if data.spec is not None:
    return None, None
  options = dict(
    image_size=config.data.image_size,
    resize_size=config.data.resize_size,
    on_corrupt=config.data.on_corrupt,
    jpeg_draft=config.data.jpeg_draft,
  )
  return (
    Preprocess(
      train=True, random_resized_crop=config.data.random_resized_crop, **options
    ),
    Preprocess(train=False, ten_crop=config.data.ten_crop, **options),
  )
