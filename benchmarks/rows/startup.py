"""Row 12: how long a command takes to start and finish a small job, the
first time (an empty compilation cache), the second time (the cache), and
with the cache off: `evaluate` on the demo workdir, `export --predict` on
one image, `segment` on four small images.

Each figure is the wall time of the command line as a user runs it, in a
fresh process. Imported by benchmarks/run.py, which puts benchmarks/ and
the repository root on sys.path.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from harness import demo_config, row
from PIL import Image

from scenejax.training import loop


def _timed(argv, cache: str) -> float:
  env = {
    k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"
  }
  env["SCENEJAX_COMPILATION_CACHE"] = cache
  start = time.perf_counter()
  proc = subprocess.run(
    [sys.executable, "-m", *argv], env=env, capture_output=True, text=True
  )
  seconds = time.perf_counter() - start
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(argv)}: {proc.stderr[-2000:]}")
  return seconds


def _segmentation_workdir(s, workdir: str) -> None:
  from configs import demo_segmentation

  config = demo_segmentation.get_config()
  config.data.train_per_class = s["demo_per_class"]
  config.data.test_per_class = max(4, s["demo_per_class"] // 3)
  config.num_epochs = 1
  config.progress_bar = False
  loop.train_and_evaluate(config, workdir)


def rows_startup(s):
  out = []
  with (
    tempfile.TemporaryDirectory() as tmp,
    open(os.devnull, "w") as quiet,
    contextlib.redirect_stdout(quiet),
  ):
    demo, seg = os.path.join(tmp, "demo"), os.path.join(tmp, "seg")
    loop.train_and_evaluate(demo_config(s, num_epochs=1), demo)
    wanted = s.get("startup_commands")  # --tiny: one, to check the harness
    if not wanted or any(w.startswith("segment") for w in wanted):
      _segmentation_workdir(s, seg)
    export = os.path.join(tmp, "export")
    _timed(
      ["scenejax.export", f"--workdir={demo}", f"--out={export}"],
      os.path.join(tmp, "export-cache"),
    )
    photos = os.path.join(tmp, "photos")
    os.makedirs(photos)
    rng = np.random.default_rng(0)
    for i in range(4):
      Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).save(
        os.path.join(photos, f"{i}.jpg")
      )
    one = os.path.join(photos, "0.jpg")
    commands = {
      "evaluate, demo workdir": ["scenejax.evaluate", f"--workdir={demo}"],
      "export --predict, one image": [
        "scenejax.export",
        f"--predict={export}",
        one,
      ],
      "segment, four 64-px images": [
        "scenejax.segment",
        "--segmenter=deeplabv3plus_resnet_tiny",
        f"--init_from={seg}",
        f"--images={photos}",
        "--size=64",
        f"--out={os.path.join(tmp, 'maps')}",
      ],
    }
    if wanted:
      commands = {k: v for k, v in commands.items() if k in wanted}
    for i, (what, argv) in enumerate(commands.items()):
      cache = os.path.join(tmp, f"cache{i}")
      off = None if wanted else _timed(argv, "off")  # --tiny: two runs
      first = _timed(argv, cache)
      second = _timed(argv, cache)
      out.append(
        row(
          12,
          f"start-up and small job: {what}; first run (empty compilation "
          "cache) / second run",
          f"{first:.1f} s / {second:.1f} s",
          "compilation cache off: "
          + ("not run (--tiny)" if off is None else f"{off:.1f} s"),
          None if off is None else off / second,
          "report (ratio: cache off / second run)",
          None,
          "wall time of the command line, a fresh process each",
        )
      )
  return out
