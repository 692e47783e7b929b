"""Row 7: async checkpoint saves, the time the loop is blocked per save as
a fraction of the save interval; train-step compilations per run.

Imported by benchmarks/run.py, which puts benchmarks/ and the repository
root on sys.path.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import time

from harness import demo_config, row

from scenejax.training import checkpoints, loop


def rows_checkpoint(s):
  """Blocking time of each async save in a real demo run (the trainer's own
  manager and `checkpoints.save`), against the epoch it interrupts."""
  config = demo_config(s, num_epochs=3)
  blocked, epochs = [], []
  real_save = checkpoints.save

  def timed_save(*args, **kwargs):
    start = time.perf_counter()
    real_save(*args, **kwargs)
    blocked.append(time.perf_counter() - start)

  checkpoints.save = timed_save
  try:
    with (
      tempfile.TemporaryDirectory() as workdir,
      open(os.devnull, "w") as quiet,
      contextlib.redirect_stdout(quiet),
    ):
      result = loop.train_and_evaluate(config, workdir)
      with open(os.path.join(workdir, "metrics.jsonl")) as f:
        epochs = [json.loads(line)["seconds"] for line in f]
  finally:
    checkpoints.save = real_save
  # The first save also creates the directory tree; the steady state is the
  # median.
  fraction = statistics.median(b / e for b, e in zip(blocked, epochs))
  return [
    row(
      7,
      "async checkpoint save: loop blocked per save",
      f"{statistics.median(blocked) * 1e3:.1f} ms "
      f"({fraction:.2%} of the interval)",
      f"save interval = 1 epoch = {statistics.median(epochs):.2f} s",
      fraction,
      "< 2% of the interval",
      fraction < 0.02,
      f"configs/demo.py, {len(blocked)} saves",
    ),
    row(
      7,
      "train-step compilations in the demo run",
      str(result["compiles"]),
      "—",
      None,
      "1",
      result["compiles"] == 1,
      f"configs/demo.py, {config.num_epochs} epochs",
    ),
  ]
