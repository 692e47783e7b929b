"""[SP] Algorithm 1 over images segmented on the fly: no label maps written,
resumable, multi-host.

Each image is segmented (`scenejax.segment.Predictor`), its presence vector
s (Algorithm 1: s_l = 1 iff semantic class l occurs in the map) added to
its scene class's running sum, and N_c counted (`accumulate`, which a
presence model's build shares: `scenejax.prototype.presence`). Those sums
(float64: integers for a segmenter) are the whole state of the build: they are saved atomically, with the position
reached, every `save_every_s` seconds, so a preempted or `kill -9`ed build
resumes where it last saved and ends with exactly the sums of an
uninterrupted one. In a multi-host job process p segments records
p, p + P, p + 2P, ... on its own devices and keeps its own state file; the
sums are added across processes at the end (exact for integer sums below
2^48), then Eq. 1-4.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence

import jax
import numpy as np
from absl import logging

from scenejax import fileio
from scenejax.errors import PrototypeError
from scenejax.prototype import algorithm

STATE_VERSION = 1
_NAMES_KEPT = 20  # undecodable images named in the state and the log


def state_file(state_dir: str) -> str:
  return os.path.join(
    state_dir,
    f"process{jax.process_index()}-of-{jax.process_count()}.npz",
  )


def _load_state(path: str, fingerprint: str, shape) -> dict | None:
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as data:
      state = {k: data[k] for k in data.files}
  except (OSError, ValueError) as e:
    raise PrototypeError(
      f"{path}: unreadable partial build ({e}); delete it to start over"
    ) from e
  if str(state.get("fingerprint")) != fingerprint:
    raise PrototypeError(
      f"{path} is the partial build of another configuration "
      f"({state.get('fingerprint')}); this build is {fingerprint}. Delete it "
      "to start over, or write the prototype elsewhere"
    )
  if state["presence_sums"].shape != shape:
    raise PrototypeError(
      f"{path}: sums of shape {state['presence_sums'].shape}"
    )
  return state


def _save_state(path: str, **arrays) -> None:
  fileio.atomic_write(path, lambda f: np.savez(f, **arrays))


def build_from_segmenter(
  predictor,
  source,
  class_names: Sequence[str],
  *,
  metric: str,
  state_dir: str,
  fingerprint: dict,
  save_every_s: float = 60.0,
  semantic_class_names: Sequence[str] | None = None,
  progress: bool = True,
) -> tuple[algorithm.Prototype, dict]:
  """The prototype of `source`'s images segmented by `predictor`.

  Args:
    predictor: a `scenejax.segment.Predictor` (top-1 is used).
    source: random access to records {"image", "label", "name"}.
    class_names: the C scene classes (labels index them).
    metric: "cosine" or "euclidean".
    state_dir: where each process keeps its partial sums.
    fingerprint: what the build depends on (dataset, split, segmenter,
      weights, resize); a partial build of another fingerprint is refused.
    save_every_s: seconds between saves of the partial sums.

  Returns:
    (prototype, stats): stats has images, skipped, skipped_names (the first
    few undecodable images), seconds, images_per_s (this process).
  """
  from scenejax.segment import segment_records

  num_semantic = predictor.num_classes

  def presences(records):
    for record, result in segment_records(predictor, records):
      if result is None:
        yield record, None
      else:
        top1 = result[0][..., 0].ravel()
        yield record, np.bincount(top1, minlength=num_semantic) > 0

  return accumulate(
    presences,
    source,
    class_names,
    num_semantic,
    metric=metric,
    state_dir=state_dir,
    fingerprint=fingerprint,
    save_every_s=save_every_s,
    semantic_class_names=semantic_class_names,
    progress=progress,
    desc="segmenting",
  )


def accumulate(
  presences,
  source,
  class_names: Sequence[str],
  num_semantic: int,
  *,
  metric: str,
  state_dir: str,
  fingerprint: dict,
  save_every_s: float = 60.0,
  semantic_class_names: Sequence[str] | None = None,
  progress: bool = True,
  desc: str = "images",
) -> tuple[algorithm.Prototype, dict]:
  """Algorithm 1's per-class sums of presence vectors over this process's
  records of `source`, resumable, merged across processes, then Eq. 1-4.

  `presences(records)` maps an iterator of records to (record, (L,)
  presence in [0, 1] or None if its image cannot be decoded), in order: a
  segmenter's top-1 classes (`build_from_segmenter`) or a presence
  model's predictions (`scenejax.prototype.presence`). The sums are
  float64 (a presence model's expected presence is fractional); the same
  images in the same order give the same sums, so a resumed build ends
  as an uninterrupted one.
  """
  num_classes = len(class_names)
  key = json.dumps(fingerprint, sort_keys=True)
  mine = np.arange(jax.process_index(), len(source), jax.process_count())
  path = state_file(state_dir)
  state = _load_state(path, key, (num_classes, num_semantic))
  sums = np.zeros((num_classes, num_semantic), np.float64)
  counts = np.zeros((num_classes,), np.int64)
  position, skipped, skipped_names = 0, 0, []
  if state is not None:
    sums = state["presence_sums"].astype(np.float64)
    counts = state["image_counts"].astype(np.int64)
    position, skipped = int(state["position"]), int(state["skipped"])
    skipped_names = [str(n) for n in state["skipped_names"]]
    logging.warning(
      "resuming the build from %s: %d of %d images done",
      path,
      position,
      len(mine),
    )

  def save():
    _save_state(
      path,
      version=STATE_VERSION,
      fingerprint=key,
      presence_sums=sums,
      image_counts=counts,
      position=position,
      skipped=skipped,
      skipped_names=np.array(skipped_names, dtype=str),
    )

  from scenejax import progress as progress_lib

  bar = progress_lib.bar(
    total=len(mine),
    initial=position,
    desc=desc,
    unit="img",
    disable=not progress or jax.process_index() != 0,
  )
  records = (source[int(i)] for i in mine[position:])
  start, done_here, last_save = time.monotonic(), 0, time.monotonic()
  try:
    for record, present in presences(records):
      name, label = record.get("name", "?"), int(record["label"])
      if not 0 <= label < num_classes:
        raise PrototypeError(
          f"{name}: scene label {label} outside [0, {num_classes})"
        )
      if present is None:
        skipped += 1
        if len(skipped_names) < _NAMES_KEPT:
          skipped_names.append(str(name))
      else:
        sums[label] += np.asarray(present, np.float64)[:num_semantic]
        counts[label] += 1
      position += 1
      done_here += 1
      bar.update(1)
      if time.monotonic() - last_save >= save_every_s:
        save()
        last_save = time.monotonic()
    save()
  finally:
    bar.close()
  seconds = time.monotonic() - start
  if jax.process_count() > 1:
    sums, counts, skipped = _merge_processes(sums, counts, skipped)
  if skipped:
    logging.warning(
      "%d image(s) could not be decoded and were skipped: %s%s",
      skipped,
      ", ".join(skipped_names),
      " ..." if skipped > len(skipped_names) else "",
    )
  proto = algorithm.prototype_from_counts(
    sums,
    counts,
    class_names,
    metric=metric,
    semantic_class_names=semantic_class_names,
  )
  stats = dict(
    images=int(counts.sum()),
    skipped=skipped,
    skipped_names=skipped_names,
    seconds=seconds,
    images_per_s=done_here / seconds if seconds > 0 else float("nan"),
  )
  return proto, stats


def _merge_processes(sums, counts, skipped):
  """Every process's sums added. JAX gathers float32 (no x64), so each
  float64 sum travels as float32 hi + lo parts: exact to ~1e-14 relative
  (integer sums below 2^48 exactly)."""
  from jax.experimental import multihost_utils

  if counts.max(initial=0) >= 2**31:
    raise PrototypeError("more than 2^31 images per class: cannot merge")
  hi = sums.astype(np.float32)
  lo = (sums - hi.astype(np.float64)).astype(np.float32)
  gathered = [
    np.asarray(multihost_utils.process_allgather(x))
    for x in (hi, lo, counts.astype(np.int32), np.int32(skipped))
  ]
  sums = gathered[0].astype(np.float64).sum(0) + gathered[1].astype(
    np.float64
  ).sum(0)
  return sums, gathered[2].astype(np.int64).sum(0), int(gathered[3].sum())


def write_and_finish(out: str, proto: algorithm.Prototype, state_dir: str):
  """Writes the built prototype to `out` (process 0), waits for every
  process, then removes this process's partial build."""
  from scenejax import prototype

  if jax.process_index() == 0:
    prototype.save_prototype(out, proto)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("scenejax prototype written")
  finish(state_dir)


def finish(state_dir: str) -> None:
  """Removes this process's partial build once the prototype is written
  (call after a barrier in multi-host jobs)."""
  path = state_file(state_dir)
  if os.path.exists(path):
    os.unlink(path)
  try:
    os.rmdir(state_dir)
  except OSError:
    pass  # another process's file is still there, or it is gone already


def build_fingerprint(
  data,
  *,
  dataset: str,
  segmenter: str,
  init_from: str | None,
  size: int = 512,
  max_size: int = 2048,
  window: int = 0,
  stride: int = 0,
  dtype: str = "float32",
) -> dict:
  """What a segmenter build of `data.train` depends on (the metric is not:
  it enters only at the end, Eq. 2-4): a partial build or a finished file
  of another fingerprint is not reused."""
  from scenejax import segment

  return dict(
    dataset=dataset,
    folder=(data.split_record or {}).get("image_folder"),
    split="train",
    records=len(data.train),
    classes=len(data.class_names),
    segmenter=segmenter,
    init_from=os.path.abspath(init_from) if init_from else None,
    size=size,
    max_size=max_size,
    window=window,
    stride=segment.window_stride(window, stride),
    dtype=dtype,
  )


def build_for_dataset(
  data,
  *,
  dataset: str,
  segmenter: str,
  init_from: str | None,
  out: str,
  metric: str,
  dtype: str = "float32",
  batch_size: int = 8,
  size: int = 512,
  max_size: int = 2048,
  window: int = 0,
  stride: int = 0,
  save_every_s: float = 60.0,
  semantic_class_names: Sequence[str] | None = None,
  progress: bool = True,
) -> tuple[algorithm.Prototype, dict]:
  """Segments `data.train` with `segmenter`, builds its prototype and
  writes it to `out` (process 0); the partial sums live in `out.partial/`
  until then, so a rerun after preemption resumes. One function for
  `python -m scenejax.prototype build --segmenter` and the trainer's
  `config.prototype.segmenter`.

  The semantic class names stored in the prototype are
  `semantic_class_names`, else the checkpoint's `id2label`.

  Returns (prototype, stats) as `build_from_segmenter`.
  """
  from scenejax import segment

  model = segment.load_segmenter(segmenter, init_from, dtype=dtype)
  if semantic_class_names is None:  # stored in the prototype file
    names = segment.checkpoint_label_names(init_from)
    if names and len(names) == model.num_classes:
      semantic_class_names = names
  segment.check_ade20k_output(
    model, semantic_class_names, field="--semantic_class_names"
  )
  predictor = segment.Predictor(
    model,
    batch_size=batch_size,
    resize=segment.Resize(size, max_size),
    window=window,
    stride=stride,
  )
  fingerprint = build_fingerprint(
    data,
    dataset=dataset,
    segmenter=segmenter,
    init_from=init_from,
    size=size,
    max_size=max_size,
    window=window,
    stride=stride,
    dtype=dtype,
  )
  state_dir = out + ".partial"
  proto, stats = build_from_segmenter(
    predictor,
    data.train,
    data.class_names,
    metric=metric,
    state_dir=state_dir,
    fingerprint=fingerprint,
    save_every_s=save_every_s,
    semantic_class_names=semantic_class_names,
    progress=progress,
  )
  write_and_finish(out, proto, state_dir)
  return proto, stats
