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
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from scenejax import cli, datasets, fileio, input_pipeline, models, sharding
from scenejax.errors import ConfigError
from scenejax.tasks import classification
from scenejax.training import checkpoints


def evaluate_workdir(
  workdir: str,
  *,
  ten_crop: bool | None = None,
  step: int | None = None,
  head: str | None = None,
) -> dict:
  """Metrics of checkpoint `step` (default: the best by the task's metric) of `workdir`, with
  the confusion matrix (rows: true class); `head` picks a SAS-Net head;
  `ten_crop` None keeps the run's config.data.ten_crop."""
  config = checkpoints.read_workdir_config(workdir)
  if ten_crop is not None:
    config.data.ten_crop = ten_crop
  ten_crop = bool(config.data.ten_crop)
  semantic_aware_model = config.model in models.SEMANTIC_AWARE
  if head is not None and not semantic_aware_model:
    raise ConfigError(
      f"--head={head}: {workdir} trained {config.model}, which has one "
      "head; --head is for SAS-Net workdirs"
    )
  if semantic_aware_model and head is not None:
    from scenejax.tasks import semantic_aware

    trained = semantic_aware.TRAINED_HEADS[config.sasnet.stage]
    if head not in trained:
      raise ConfigError(
        f"--head={head}; {workdir} ran SAS-Net's "
        f"{config.sasnet.stage!r} stage, which has trained "
        f"{' | '.join(trained)}"
      )
  if config.get("task") == "multilabel":
    if ten_crop:
      raise ConfigError("--ten_crop: multi-label evaluation is single-crop")
    return _evaluate_multilabel(workdir, config, step)
  data = datasets.from_config(config)
  _, eval_preprocess = input_pipeline.preprocessors(config, data)
  mesh = sharding.data_parallel_mesh()
  _, graphdef, state, step = checkpoints.restore_workdir(
    workdir, data.num_classes, step, NamedSharding(mesh, P())
  )
  model = nnx.merge(graphdef, state)[0]
  pixel_stats = (model.pixel_mean, model.pixel_std)
  source = data.test
  if semantic_aware_model:
    from scenejax.tasks import semantic_aware

    stage = semantic_aware.HEAD_STAGES[head] if head else config.sasnet.stage
    segmenter = semantic_aware.load_segmenter(config, stage)
    eval_fn = semantic_aware.jit_eval_step(
      graphdef, segmenter, mesh, pixel_stats, stage
    )
    source = semantic_aware.eval_source(config, data, stage)
  else:
    eval_fn = classification.jit_eval_step(graphdef, mesh, pixel_stats)
  result = classification.evaluate(
    eval_fn,
    state,
    source,
    batch_size=config.eval_batch_size // jax.process_count(),
    num_classes=data.num_classes,
    data_sharding=NamedSharding(mesh, P("data")),
    preprocess=eval_preprocess,
  )
  return dict(
    step=step,
    ten_crop=ten_crop,
    **({"head": head} if head else {}),
    **result.metrics(),
    confusion=result.confusion.tolist(),
  )


def _evaluate_multilabel(workdir, config, step) -> dict:
  """`classification.multilabel_metrics` of checkpoint `step` (default: best
  mAP) over the run's evaluation split, with the (K, 2, 2) per-label
  confusion at config.multilabel.threshold."""
  from scenejax.tasks import multilabel

  data = datasets.multilabel_from_config(config)
  _, eval_preprocess = input_pipeline.preprocessors(config, data)
  mesh = sharding.data_parallel_mesh()
  _, graphdef, state, step = checkpoints.restore_workdir(
    workdir, data.num_classes, step, NamedSharding(mesh, P())
  )
  model = nnx.merge(graphdef, state)[0]
  scores_fn = multilabel.jit_eval_step(
    graphdef, mesh, (model.pixel_mean, model.pixel_std)
  )
  scores, targets = multilabel.scores_and_targets(
    scores_fn,
    state,
    data.test,
    batch_size=config.eval_batch_size // jax.process_count(),
    data_sharding=NamedSharding(mesh, P("data")),
    preprocess=eval_preprocess,
  )
  metrics, confusion = multilabel.split_metrics(
    scores, targets, config.multilabel.threshold
  )
  return dict(step=step, **metrics, confusion=confusion.tolist())


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
