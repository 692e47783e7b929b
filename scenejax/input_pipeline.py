"""Input pipeline: grain datasets over random-access sources, batched.

A source is anything with `__len__` and `__getitem__(i) -> {"image": uint8
(H, W, 3), "label": int}` (the synthetic dataset's splits; TFDS ArrayRecord
data sources have the same shape). Images stay uint8 on the way to the
device (4x less to transfer); `normalize` runs inside the jitted step.
"""

from __future__ import annotations

from collections.abc import Iterator

import grain
import jax
import jax.numpy as jnp
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def train_batches(source, batch_size: int, *, seed: int,
                  epoch: int) -> grain.MapDataset:
  """The training batches of one epoch: a fresh shuffle per epoch.

  The shuffle is grain's epoch-aware one over an endless repetition of the
  source, sliced to epoch `epoch`, so every epoch is a permutation of the
  whole source and the order depends only on (seed, epoch). The last
  partial batch is dropped (BCL wants full batches).
  """
  num = len(source)
  shuffled = grain.MapDataset.source(source).seed(seed).shuffle().repeat()
  return shuffled[epoch * num:(epoch + 1) * num].batch(batch_size,
                                                       drop_remainder=True)


def eval_batches(source, batch_size: int) -> Iterator[dict]:
  """Every example once, in order; the last batch is padded and masked.

  Yields dicts with "image", "label" and a bool "mask" (False on padding),
  all of leading size `batch_size`, so the eval step compiles once and no
  example is dropped.
  """
  for batch in grain.MapDataset.source(source).batch(batch_size):
    real = batch["label"].shape[0]
    pad = batch_size - real
    batch = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)])
             for k, v in batch.items()}
    batch["mask"] = np.arange(batch_size) < real
    yield batch


def normalize(images, mean=IMAGENET_MEAN, std=IMAGENET_STD):
  """uint8 NHWC -> float32, (x / 255 - mean) / std."""
  x = images.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def shard_batch(batch: dict, sharding) -> dict:
  """Places a host batch on the mesh, split along the batch axis.

  Uses `jax.make_array_from_process_local_data`: on one host the batch is the
  global batch; on several, each process passes its own slice.
  """
  return {k: jax.make_array_from_process_local_data(sharding, v)
          for k, v in batch.items()}
