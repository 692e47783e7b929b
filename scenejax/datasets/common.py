"""Helpers shared by the dataset builders and sources."""

from __future__ import annotations

import io
import os
from typing import TYPE_CHECKING

import numpy as np
from absl import logging

from scenejax.datasets import label_maps
from scenejax.errors import DatasetError

if TYPE_CHECKING:
  import PIL.Image

__all__ = [
  "DatasetError",
  "decode_image",
  "decode_image_file",
  "open_image",
  "read_image_list",
  "read_label_map_file",
  "require_file",
]


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


def open_image(data, name: str) -> PIL.Image.Image | None:
  """A decoded RGB PIL image from encoded bytes or a file path; None (with
  a warning naming the image) if it cannot be decoded."""
  from PIL import Image

  try:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with Image.open(source) as image:
      return image.convert("RGB")  # decodes fully, inside the try
  except (OSError, ValueError, SyntaxError) as e:
    logging.warning("skipping %s: cannot decode image: %s", name, e)
    return None


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
