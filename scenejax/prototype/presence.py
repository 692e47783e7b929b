"""[SP] Algorithm 1 from predicted object presence: a multi-label presence
model ([SADCL], config.task = "multilabel") in place of a segmenter.

Algorithm 1 reads only *which* of the L objects an image contains. A
multi-label classifier trained on object presence (ADE20K's 150 objects,
`scenejax.datasets.multilabel`) predicts exactly that, in one
classification pass instead of a segmenter's dense one. Each training
image's presence vector is

  thresholded: s_l = [σ(z_l) >= t]   (t = 0.5: Algorithm 1's binary s)
  expected:    s_l = σ(z_l)          (the expectation of the binary s
                                      under the model's probabilities)

and the per-class sums, the resumable state and the multi-host merge are
those of the segmenter build (`segmented.accumulate`).

References:
  [SP]    C. Song, H. Wu, X. Ma, Y. Li. Semantic-embedded Similarity
          Prototype for Scene Recognition. Pattern Recognition, 2024.
          arXiv:2308.05896.
  [SADCL] L. Ma, D. Sun, L. Wang, H. Zhao, B. Luo. Semantic-Aware Dual
          Contrastive Learning for Multi-label Image Classification. ECAI
          2023.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
from collections.abc import Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from scenejax import input_pipeline
from scenejax.errors import ConfigError
from scenejax.prototype import algorithm, segmented

MODES = ("thresholded", "expected")


def load_presence_model(path: str) -> tuple[nnx.Module, dict]:
  """(model in inference mode, info) of a multi-label training workdir
  (its best checkpoint by mAP) or an export of one. info: label_names,
  image_size, resize_size, checkpoint_step."""
  from scenejax import export, tasks
  from scenejax.training import checkpoints

  if checkpoints.is_training_workdir(path):
    config = checkpoints.read_workdir_config(path)
    task = tasks.name_for(config)
    if task != "multilabel":
      raise ConfigError(
        f"--presence_model={path} is a {task} run; a presence model is a "
        "config.task = 'multilabel' run (e.g. configs/"
        "ade20k_presence_sadcl_convnext.py)"
      )
    _, graphdef, state, step = checkpoints.restore_workdir(path)
    model = nnx.merge(graphdef, state)[0]
    model.eval()
    synthetic = config.dataset == "synthetic_scenes"
    return model, dict(
      label_names=list(checkpoints.class_names(path, step)),
      image_size=config.data.image_size,
      resize_size=(
        config.data.image_size if synthetic else config.data.resize_size
      ),
      checkpoint_step=step,
    )
  if os.path.isfile(os.path.join(path, "model.json")):
    model, description = export.load_export(path)
    if description.get("task") != "multilabel":
      raise ConfigError(
        f"--presence_model={path} is an export of a "
        f"{description.get('task', 'classification')} model; a presence "
        "model is a config.task = 'multilabel' run's"
      )
    return model, dict(
      label_names=list(description["class_names"]),
      image_size=description["image_size"],
      resize_size=description["resize_size"],
      checkpoint_step=description["checkpoint_step"],
    )
  raise ConfigError(
    f"--presence_model={path}: neither a training workdir (config.json + "
    "checkpoints/) nor an export (model.json); train one with "
    "config.task = 'multilabel'"
  )


class PresencePredictor:
  """(L,) presence vectors of records' images, one jitted function over
  this process's devices; images preprocessed as the model's evaluation
  did (shorter side to `resize_size`, centre `image_size` crop)."""

  def __init__(
    self,
    model: nnx.Module,
    *,
    image_size: int,
    resize_size: int,
    batch_size: int = 32,
    mode: str = "thresholded",
    threshold: float = 0.5,
    threads: int = 4,
  ):
    if mode not in MODES:
      raise ConfigError(f"--presence={mode!r}; expected one of {MODES}")
    if not 0.0 < threshold < 1.0:
      raise ConfigError(f"--threshold={threshold}; expected 0 < t < 1")
    devices = jax.local_devices()
    if batch_size % len(devices):
      raise ConfigError(
        f"--batch_size={batch_size} must be a multiple of the "
        f"{len(devices)} local devices"
      )
    self.batch_size, self.mode, self.threshold = batch_size, mode, threshold
    self.num_labels = model.num_labels
    self.preprocess = input_pipeline.Preprocess(
      train=False, image_size=image_size, resize_size=resize_size
    )
    mesh = Mesh(np.array(devices), ("data",))
    self._data = NamedSharding(mesh, P("data"))
    graphdef, state = nnx.split(model)
    self._state = jax.device_put(state, NamedSharding(mesh, P()))
    mean, std = model.pixel_mean, model.pixel_std

    def probabilities(state, images):
      x = input_pipeline.normalize(images, mean, std)
      logits = nnx.merge(graphdef, state)(x)
      return jax.nn.sigmoid(logits.astype(jnp.float32))

    self._probabilities = jax.jit(
      probabilities, in_shardings=(None, self._data), out_shardings=self._data
    )
    self.pool = concurrent.futures.ThreadPoolExecutor(threads)

  def presence(self, probabilities: np.ndarray) -> np.ndarray:
    if self.mode == "expected":
      return probabilities.astype(np.float64)
    return (probabilities >= self.threshold).astype(np.float64)

  def __call__(
    self, records: Iterable[dict]
  ) -> Iterator[tuple[dict, np.ndarray | None]]:
    """Records {"image", "label", "name"?} -> (the record without its
    image, (L,) presence, or None when the image cannot be decoded), in
    order."""
    it = iter(records)
    while items := list(itertools.islice(it, 4 * self.batch_size)):
      crops = list(self.pool.map(self.preprocess, items))
      kept = [i for i, c in enumerate(crops) if c is not None]
      out: list = [None] * len(items)
      for start in range(0, len(kept), self.batch_size):
        batch = kept[start : start + self.batch_size]
        x = np.zeros(
          (self.batch_size, *crops[batch[0]]["image"].shape), np.uint8
        )
        for j, i in enumerate(batch):
          x[j] = crops[i]["image"]
        probs = np.asarray(
          jax.device_get(
            self._probabilities(self._state, jax.device_put(x, self._data))
          )
        )
        for j, i in enumerate(batch):
          out[i] = self.presence(probs[j])
      for record, present in zip(items, out, strict=True):
        yield {k: v for k, v in record.items() if k != "image"}, present


def build_fingerprint(
  data, *, dataset: str, presence_model: str, step: int, mode, threshold
) -> dict:
  """What a presence build of `data.train` depends on (not the metric)."""
  return dict(
    dataset=dataset,
    split="train",
    records=len(data.train),
    classes=len(data.class_names),
    presence_model=os.path.abspath(presence_model),
    checkpoint_step=step,
    presence=mode,
    threshold=threshold if mode == "thresholded" else None,
  )


def build_for_dataset(
  data,
  *,
  dataset: str,
  presence_model: str,
  out: str,
  metric: str,
  mode: str = "thresholded",
  threshold: float = 0.5,
  batch_size: int = 32,
  save_every_s: float = 60.0,
  progress: bool = True,
) -> tuple[algorithm.Prototype, dict]:
  """The prototype of `data.train` from `presence_model`'s predicted
  presence, written to `out` (process 0); partial sums in `out.partial/`
  until then, so a rerun after preemption resumes. The semantic class
  names stored are the model's label names.

  Returns (prototype, stats) as `segmented.build_from_segmenter`.
  """
  model, info = load_presence_model(presence_model)
  predictor = PresencePredictor(
    model,
    image_size=info["image_size"],
    resize_size=info["resize_size"],
    batch_size=batch_size,
    mode=mode,
    threshold=threshold,
  )
  state_dir = out + ".partial"
  proto, stats = segmented.accumulate(
    predictor,
    data.train,
    data.class_names,
    predictor.num_labels,
    metric=metric,
    state_dir=state_dir,
    fingerprint=build_fingerprint(
      data,
      dataset=dataset,
      presence_model=presence_model,
      step=info["checkpoint_step"],
      mode=mode,
      threshold=threshold,
    ),
    save_every_s=save_every_s,
    semantic_class_names=info["label_names"],
    progress=progress,
    desc="predicting presence",
  )
  segmented.write_and_finish(out, proto, state_dir)
  return proto, stats
