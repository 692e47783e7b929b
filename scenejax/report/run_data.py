"""What the report of a training run reads from it: the epochs of
metrics.jsonl, one pass of a checkpoint over the eval split, sampled pixel
embeddings of a segmenter, and the t-SNE that draws them in 2-D."""

from __future__ import annotations

import json
import os

import numpy as np
from absl import logging

from scenejax.errors import UserError


def read_history(workdir) -> list[dict]:
  """The rows of WORKDIR/metrics.jsonl, one per epoch. A last line cut
  short (the trainer killed while writing it) is skipped with a warning;
  any other bad line is an error naming it."""
  path = os.path.join(workdir, "metrics.jsonl")
  try:
    with open(path) as f:
      lines = f.read().split("\n")
  except FileNotFoundError:
    raise UserError(
      f"{path}: no metrics.jsonl; is {workdir} a scenejax training workdir?"
    ) from None
  except (OSError, UnicodeDecodeError) as e:
    raise UserError(f"{path}: cannot read it ({e})") from e
  rows = []
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
      if not isinstance(row, dict) or "epoch" not in row:
        raise ValueError("not an epoch's metrics")
    except ValueError as e:
      if number == len(lines):  # no newline after it: an unfinished write
        logging.warning("%s: skipping its unfinished last line", path)
        break
      raise UserError(
        f"{path}, line {number}: {e}; the trainer rewrites this file from "
        "its checkpoint when the run resumes"
      ) from None
    rows.append(row)
  return rows


def tsne(features: np.ndarray, seed: int = 0) -> np.ndarray:
  """2-D t-SNE (scikit-learn, Barnes-Hut, PCA init, perplexity <= 30)."""
  from sklearn.manifold import TSNE

  n = len(features)
  perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
  return TSNE(
    n_components=2,
    perplexity=perplexity,
    init="pca",
    learning_rate="auto",
    random_state=seed,
  ).fit_transform(np.asarray(features, np.float64))


def model_pass(
  workdir: str,
  *,
  step: int | None = None,
  max_images: int | None = None,
  data=None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, int]:
  """(confusion, features, labels, step) of the best checkpoint (or `step`)
  over the eval split, from one `scenejax.tasks.classification.evaluate` pass: the
  confusion over every image, the penultimate features of at most
  `max_images`, spread over the split. `data` is the run's dataset if the
  caller has it loaded already."""
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  from scenejax import datasets, input_pipeline, sharding
  from scenejax.tasks import classification
  from scenejax.training import checkpoints

  config = checkpoints.read_workdir_config(workdir)
  config.data.ten_crop = False
  if data is None:
    data = datasets.from_config(config)
  _, eval_preprocess = input_pipeline.preprocessors(config, data)
  mesh = sharding.data_parallel_mesh()
  _, graphdef, state, step = checkpoints.restore_workdir(
    workdir, data.num_classes, step, NamedSharding(mesh, P())
  )
  from flax import nnx

  model = nnx.merge(graphdef, state)[0]
  eval_fn = classification.jit_eval_step(
    graphdef, mesh, (model.pixel_mean, model.pixel_std), features=True
  )
  result = classification.evaluate(
    eval_fn,
    state,
    data.test,
    batch_size=config.eval_batch_size,
    num_classes=data.num_classes,
    data_sharding=NamedSharding(mesh, P("data")),
    preprocess=eval_preprocess,
    feature_every=max(1, -(-len(data.test) // max_images)) if max_images else 1,
  )
  return result.confusion, result.features, result.feature_labels, step


def sampled_pixel_embeddings(
  model, images, label_maps, *, per_class: int = 16, num_samples: int = 256
) -> tuple[np.ndarray, np.ndarray]:
  """(embeddings (N, D), ids (N,)) of a class-balanced sample of the
  labelled pixels of `images` (`losses.sample_pixels`, a fixed key): what
  the contrastive loss sees, at the embedding's stride."""
  import jax
  import jax.numpy as jnp

  from scenejax import losses

  model.eval()
  x = (np.asarray(images, np.float32) / 255.0 - np.array(model.pixel_mean)) / (
    np.array(model.pixel_std)
  )
  _, emb = model.decode_with_embeddings(jnp.asarray(x, jnp.float32))
  b, h, w, d = emb.shape
  labels = losses.nearest_labels(np.asarray(label_maps), (h, w)).reshape(b, -1)
  idx, valid = losses.sample_pixels(
    labels,
    jax.random.key(0),
    num_samples=min(num_samples, h * w),
    per_class=per_class,
    num_classes=model.num_classes,
  )
  idx, valid = np.asarray(idx), np.asarray(valid)
  emb = np.asarray(emb).reshape(b, h * w, d)
  picked = np.take_along_axis(emb, idx[..., None], 1)[valid]
  ids = np.take_along_axis(np.asarray(labels), idx, 1)[valid]
  return picked, ids
