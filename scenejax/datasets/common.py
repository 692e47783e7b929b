"""Helpers shared by the dataset builders and sources."""

from __future__ import annotations

import io
import math
import os
from typing import TYPE_CHECKING

import numpy as np
from absl import logging

from scenejax.datasets import label_maps
from scenejax.errors import DatasetError

# The files every folder reader takes as images (what PIL decodes): image
# folders, `segment --images`, `export --predict`.
IMAGE_SUFFIXES = (
  ".jpg",
  ".jpeg",
  ".png",
  ".bmp",
  ".gif",
  ".webp",
  ".tif",
  ".tiff",
)

if TYPE_CHECKING:
  import PIL.Image

__all__ = [
  "DatasetError",
  "cached_array",
  "decode_image",
  "decode_image_file",
  "open_image",
  "read_image_list",
  "read_label_map_file",
  "require_file",
  "to_rgb8",
]


def cached_array(path: str, compute, shape: tuple) -> np.ndarray:
  """`compute()`, kept at `path` (.npy) when that directory is writable (a
  temporary file renamed, so never half-written): per-record data derived
  from a prepared split (its labels, its presence vectors). A cached file
  that cannot be read, or of another shape than `shape` (the data was
  prepared again), is an error naming it."""
  from scenejax import fileio

  if os.path.exists(path):
    try:
      array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
      raise DatasetError(
        f"{path}: unreadable cache ({e}); delete it to rebuild"
      ) from None
    if array.shape != tuple(shape):
      raise DatasetError(
        f"{path}: cached array of shape {array.shape}, the split gives "
        f"{tuple(shape)}; delete the file to rebuild it"
      )
    return array
  array = compute()
  try:
    fileio.atomic_write(path, lambda f: np.save(f, array))
  except OSError:
    pass  # read-only data_dir: computed again next time
  return array


def require_file(directory: str, name: str, url: str) -> str:
  """`directory/name`, or an error saying where it was looked for and where
  to get it."""
  path = os.path.join(directory, name)
  if not os.path.exists(path):
    raise DatasetError(
      f"{name} not found: looked for {path}. Download it "
      f"from {url} into {directory}"
    )
  return path


def read_image_list(path: str) -> list[str]:
  """Non-empty lines of a list file, as relative paths with '/'."""
  with open(path) as f:
    return [line.strip().replace("\\", "/") for line in f if line.strip()]


def open_image(
  data, name: str, strict: bool = False, draft_size: int | None = None
) -> PIL.Image.Image | None:
  """A decoded 8-bit RGB PIL image from encoded bytes or a file path; if
  it cannot be decoded, None with a warning naming the image (or, with
  `strict`, DatasetError).

  `draft_size`: a JPEG whose shorter side is at least twice that is
  decoded at 1/2, 1/4 or 1/8 scale in the DCT (PIL's `draft`), the
  smallest whose shorter side is still >= `draft_size`. Decoding costs
  roughly the output's pixels, so a 1024x768 photo headed for a 256 resize
  decodes about 4x faster; the pixels differ slightly from a full decode
  and a resize (the DCT scaling is a box filter, not bilinear)."""
  from PIL import Image

  try:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with Image.open(source) as image:
      if draft_size and image.format == "JPEG":
        w, h = image.size
        scale = draft_size / min(w, h)
        if scale < 1:
          image.draft("RGB", (math.ceil(w * scale), math.ceil(h * scale)))
      return to_rgb8(image)  # decodes fully, inside the try
  except (OSError, ValueError, SyntaxError) as e:
    if strict:
      raise DatasetError(f"{name}: cannot decode image: {e}") from e
    logging.warning("skipping %s: cannot decode image: %s", name, e)
    return None


def to_rgb8(image: PIL.Image.Image) -> PIL.Image.Image:
  """8-bit RGB: `image` itself (loaded) if it is RGB already, else a
  converted copy. 16-bit grayscale (PNG, TIFF: PIL modes I;16*) is scaled,
  65535 -> 255; PIL's own convert("RGB") clips it at 255, which turns an
  ordinary 16-bit photo white. 16-bit colour PNGs already open as 8-bit
  RGB. 32-bit integer and float images have no known white level: refused
  (ValueError)."""
  from PIL import Image

  # Pillow before 10.3 opens 16-bit grayscale PNGs as mode I; a PNG holds
  # at most 16 bits, so its I is 16-bit too.
  if image.mode.startswith("I;16") or (
    image.mode == "I" and image.format == "PNG"
  ):
    wide = np.asarray(image).astype(np.uint32)
    gray = ((wide * 255 + 32767) // 65535).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")
  if image.mode in ("I", "F"):
    raise ValueError(
      f"PIL mode {image.mode!r} (32-bit {'integer' if image.mode == 'I' else 'float'}"
      " pixels) has no known white level; save it as 8- or 16-bit"
    )
  if image.mode == "RGB":  # convert() would copy it (~15 us at 256 px)
    image.load()  # decode now; leaving `with Image.open` keeps the pixels
    return image
  return image.convert("RGB")


def decode_image(data, name: str) -> np.ndarray | None:
  """RGB uint8 (H, W, 3) array, or None as `open_image`."""
  image = open_image(data, name)
  return None if image is None else np.asarray(image)


def decode_image_file(path: str) -> np.ndarray | None:
  return decode_image(path, path)


def read_label_map_file(path: str) -> np.ndarray:
  """A uint8 ADE20K label map (0 unlabelled, 1..150), as SceneParsing
  stores them."""
  ids = label_maps.to_ade20k_ids(
    label_maps.read_label_map(path), "ade20k", source=path
  )
  return ids.astype(np.uint8)
