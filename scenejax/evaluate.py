"""Evaluate a training workdir's best checkpoint on its evaluation split.

  python -m scenejax.evaluate --workdir=/tmp/run [--ten_crop] [--step=N]

Reads the resolved config the trainer saved (workdir/config.json), restores
the checkpoint with the highest Top-1 (or `--step`), and prints Top-1/2/5
and mean class accuracy from exact counts over the whole split; writes
workdir/eval.json with the confusion matrix.
"""

from __future__ import annotations

import json
import os

import jax
from absl import app
from absl import flags
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from scenejax import prototype
from scenejax import train

def evaluate_workdir(workdir: str, *, ten_crop: bool = False,
                     step: int | None = None) -> dict:
  """Metrics of checkpoint `step` (default: best Top-1) of `workdir`."""
  config = train.read_workdir_config(workdir)
  config.data.ten_crop = ten_crop
  data = train.load_dataset(config)
  _, eval_preprocess = train.preprocessors(config, data)
  mesh = train.data_parallel_mesh()
  graphdef, state, step = train.restore_workdir(
      workdir, config, data.num_classes, step, NamedSharding(mesh, P()))
  model, _ = nnx.merge(graphdef, state)
  loss_cfg = train.LossConfig.from_config(config.loss)
  _, eval_fn = train.jit_steps(graphdef, loss_cfg, mesh,
                               (model.pixel_mean, model.pixel_std))
  confusion, hits = train.evaluate(
      eval_fn, state, data.test, config.eval_batch_size // jax.process_count(),
      data.num_classes, NamedSharding(mesh, P("data")), eval_preprocess)
  metrics = dict(step=step, ten_crop=ten_crop,
                 **train.accuracy_metrics(confusion, hits))
  if jax.process_index() == 0:
    prototype.atomic_write(
        os.path.join(workdir, "eval.json"),
        lambda f: f.write(json.dumps(dict(metrics,
                                          confusion=confusion.tolist()),
                                     indent=1)), mode="w")
  return metrics


def main(argv):
  del argv
  flag = flags.FLAGS
  metrics = evaluate_workdir(flag.workdir, ten_crop=flag.ten_crop,
                             step=flag.step)
  print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
  # Flags live here so that importing this module defines none.
  flags.DEFINE_string("workdir", None, "training workdir")
  flags.DEFINE_bool("ten_crop", False, "ten-crop evaluation")
  flags.DEFINE_integer("step", None, "checkpoint step (default: best)")
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
