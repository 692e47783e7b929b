"""Writing files so that a crash never leaves a half-written one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from typing import IO, Any


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def atomic_write(
  path: str | os.PathLike, write_fn: Callable[[IO], Any], mode: str = "wb"
) -> None:
  """Calls `write_fn(file)` on a temporary file beside `path`, then renames.

  A crash or an exception leaves the old file or none, never a half-written
  one. The file gets the usual permissions (0666 less the umask), not
  `mkstemp`'s 0600.
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(
    dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp"
  )
  try:
    os.fchmod(fd, 0o666 & ~_umask())
    with os.fdopen(fd, mode) as f:
      write_fn(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def write_json(path: str | os.PathLike, obj: Any, indent: int = 1) -> None:
  """`obj` as JSON, atomically."""
  atomic_write(
    path, lambda f: f.write(json.dumps(obj, indent=indent)), mode="w"
  )


def write_text(path: str | os.PathLike, text: str) -> None:
  """`text`, atomically."""
  atomic_write(path, lambda f: f.write(text), mode="w")
