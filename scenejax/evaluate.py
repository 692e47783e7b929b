"""Evaluate a training workdir's best checkpoint on its evaluation split.

  python -m scenejax.evaluate --workdir=/tmp/run [--ten_crop] [--step=N]

Reads the resolved config the trainer saved (WORKDIR/config.json), restores
the checkpoint with the highest Top-1 (or `--step`), and prints Top-1/2/5
and mean class accuracy from exact counts over the whole split; writes
WORKDIR/eval.json with the confusion matrix.
"""

from __future__ import annotations

import json
import os

import jax
from absl import flags
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from scenejax import (
  checkpoints,
  cli,
  datasets,
  evaluation,
  fileio,
  input_pipeline,
  train,
)


def evaluate_workdir(
  workdir: str, *, ten_crop: bool = False, step: int | None = None
) -> dict:
  """Metrics of checkpoint `step` (default: best Top-1) of `workdir`, with
  the confusion matrix (rows: true class)."""
  config = checkpoints.read_workdir_config(workdir)
  config.data.ten_crop = ten_crop
  data = datasets.from_config(config)
  _, eval_preprocess = input_pipeline.preprocessors(config, data)
  mesh = train.data_parallel_mesh()
  _, graphdef, state, step = checkpoints.restore_workdir(
    workdir, data.num_classes, step, NamedSharding(mesh, P())
  )
  model = nnx.merge(graphdef, state)[0]
  eval_fn = evaluation.jit_eval_step(
    graphdef, mesh, (model.pixel_mean, model.pixel_std)
  )
  result = evaluation.evaluate(
    eval_fn,
    state,
    data.test,
    batch_size=config.eval_batch_size // jax.process_count(),
    num_classes=data.num_classes,
    data_sharding=NamedSharding(mesh, P("data")),
    preprocess=eval_preprocess,
  )
  return dict(
    step=step,
    ten_crop=ten_crop,
    **result.metrics(),
    confusion=result.confusion.tolist(),
  )


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}")
  workdir = flags.FLAGS.workdir
  result = evaluate_workdir(
    workdir, ten_crop=flags.FLAGS.ten_crop, step=flags.FLAGS.step
  )
  # The metrics first: a workdir we cannot write to still shows them.
  print(
    json.dumps({k: v for k, v in result.items() if k != "confusion"}, indent=1),
    flush=True,
  )
  if jax.process_index() == 0:
    path = os.path.join(workdir, "eval.json")
    try:
      fileio.write_json(path, result)
    except OSError as e:
      cli.fail(f"could not write {path} ({e}); the metrics are printed above")


if __name__ == "__main__":
  # Flags live here so that importing this module defines none.
  flags.DEFINE_string("workdir", None, "training workdir")
  flags.DEFINE_bool("ten_crop", False, "ten-crop evaluation")
  flags.DEFINE_integer("step", None, "checkpoint step (default: best)")
  flags.mark_flags_as_required(["workdir"])
  cli.run(main)
