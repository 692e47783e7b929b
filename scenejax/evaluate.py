"""Evaluate a training workdir's best checkpoint on its evaluation split.

  python -m scenejax.evaluate --workdir=/tmp/run [--ten_crop] [--step=N]
  python -m scenejax.evaluate --workdir=/tmp/sasnet --head=rgb   # SAS-Net

Reads the resolved config the trainer saved (WORKDIR/config.json), restores
the checkpoint with the highest Top-1 (or `--step`), and prints Top-1/2/5
and mean class accuracy from exact counts over the whole split; writes
WORKDIR/eval.json (WORKDIR/eval_HEAD.json with --head) with the confusion
matrix. A SAS-Net workdir is scored by its stage's head, or by `--head`
(rgb | semantic | combined), its semantic input made as in training (the
segmenter or the semantic files); the rgb head needs neither.
"""

from __future__ import annotations

import json
import os

import jax
from absl import flags

from scenejax import cli, fileio, tasks
from scenejax.errors import ConfigError
from scenejax.training import checkpoints


def evaluate_workdir(
  workdir: str,
  *,
  ten_crop: bool | None = None,
  step: int | None = None,
  head: str | None = None,
) -> dict:
  """Metrics of checkpoint `step` (default: the best by the task's metric)
  of `workdir`, by its task's `evaluate_checkpoint`, with the confusion
  matrix; `head` picks a SAS-Net head; `ten_crop` None keeps the run's
  config.data.ten_crop."""
  config = checkpoints.read_workdir_config(workdir)
  if ten_crop is not None:
    config.data.ten_crop = ten_crop
  task = tasks.for_config(config)
  if not hasattr(task, "evaluate_checkpoint"):
    raise ConfigError(
      f"{workdir}: its task ({tasks.name_for(config)}) has no checkpoint "
      "evaluation here (a segmenter: python -m scenejax.segment --evaluate)"
    )
  return task.evaluate_checkpoint(
    workdir, config, step, ten_crop=bool(config.data.ten_crop), head=head
  )


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}")
  workdir = flags.FLAGS.workdir
  head = flags.FLAGS.head
  result = evaluate_workdir(
    workdir, ten_crop=flags.FLAGS.ten_crop, step=flags.FLAGS.step, head=head
  )
  # The metrics first: a workdir we cannot write to still shows them.
  print(
    json.dumps({k: v for k, v in result.items() if k != "confusion"}, indent=1),
    flush=True,
  )
  if jax.process_index() == 0:
    path = os.path.join(workdir, f"eval_{head}.json" if head else "eval.json")
    try:
      fileio.write_json(path, result)
    except OSError as e:
      cli.fail(f"could not write {path} ({e}); the metrics are printed above")


if __name__ == "__main__":
  # Flags live here so that importing this module defines none.
  flags.DEFINE_string("workdir", None, "training workdir")
  flags.DEFINE_bool(
    "ten_crop", None, "ten-crop evaluation (default: as the run was)"
  )
  flags.DEFINE_integer("step", None, "checkpoint step (default: best)")
  flags.DEFINE_string(
    "head", None, "SAS-Net: rgb | semantic | combined (default: its stage's)"
  )
  flags.mark_flags_as_required(["workdir"])
  cli.run(main)
