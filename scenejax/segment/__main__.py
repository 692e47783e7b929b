r"""`python -m scenejax.segment`: label maps of a folder of images or a
dataset split, SAS-Net's top-3 files, or mIoU against a dataset's maps.

  # ADE20K label maps (uint8 PNG, 0 = unlabeled, 1..150) of a folder:
  python -m scenejax.segment --segmenter=upernet_convnext_small \
      --init_from=ckpt/upernet-convnext-small --images=photos/ --out=maps/
  # ... of a registered dataset's training split, with SAS-Net's top-3 files:
  python -m scenejax.segment --segmenter=segformer_b5 --init_from=... \
      --dataset=mit67 --split=train --out=mit67_maps/ --top3
  # mIoU / pixel accuracy / per-class IoU on ADE20K validation:
  python -m scenejax.segment --evaluate --dataset=ade20k_scenes \
      --segmenter=upernet_convnext_small --init_from=...
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
from absl import flags

from scenejax import cli, datasets, fileio, metrics
from scenejax.errors import ConfigError, DatasetError
from scenejax.segment import segmenter_flags
from scenejax.segment.predictor import (
  Predictor,
  Resize,
  check_ade20k_output,
  checkpoint_label_names,
  image_files,
  label_map,
  load_segmenter,
  progress,
  segment_records,
  write_files,
  write_split_files,
)
from scenejax.training import checkpoints


def _records_of_images(directory: str, rels: list[str]) -> Iterator[dict]:
  for rel in rels:
    yield {"name": rel, "image": os.path.join(directory, rel), "rel": rel}


def _dataset_split(name: str, split: str, data_dir: str | None):
  data = datasets.load(name, data_dir=data_dir)
  if split not in ("train", "test"):
    raise ConfigError(f"--split={split!r}; expected train or test (eval)")
  return data, data.train if split == "train" else data.test


def _segment_to_files(flag, predictor) -> None:
  out, top3 = flag.out, flag.top3
  if flag.images:
    rels = image_files(flag.images)
    records = _records_of_images(flag.images, rels)
    written, skipped = write_files(
      predictor, records, len(rels), out, top3=top3
    )
  else:
    data, _ = _dataset_split(flag.dataset, flag.split, flag.data_dir)
    written, skipped = write_split_files(
      predictor, data, flag.split, out, top3=top3
    )
  print(
    f"wrote {written} label map(s) to {out}"
    + (" (+ SAS-Net top-3 files)" if top3 else "")
    + (f"; {skipped} undecodable image(s) skipped" if skipped else "")
  )


def _evaluate(flag, predictor) -> None:
  split = flag.split if flag["split"].present else "test"
  _, source = _dataset_split(flag.dataset, split, flag.data_dir)
  if not getattr(source, "has_label_maps", False):
    raise DatasetError(
      f"--dataset={flag.dataset} has no label maps to evaluate against "
      "(ade20k_scenes has)"
    )
  k = predictor.num_classes
  confusion = np.zeros((k, k), np.int64)
  records = (dict(source[i], index=i) for i in range(len(source)))
  bar = progress(len(source), "evaluating")
  try:
    for record, result in segment_records(predictor, records):
      if result is not None:
        truth = source.label_map(record["index"])
        confusion += metrics.segmentation_confusion(
          label_map(result[0]), truth, k
        )
      bar.update(1)
  finally:
    bar.close()
  result = metrics.segmentation_metrics(confusion)
  print(
    f"mIoU {100 * result['mIoU']:.2f}  pixel accuracy "
    f"{100 * result['pixel_accuracy']:.2f}  ({result['labelled_pixels']} "
    f"labelled pixels, {len(source)} images)"
  )
  if flag.out:
    fileio.write_json(
      os.path.join(flag.out, "segmentation_eval.json"),
      dict(result, segmenter=flag.segmenter, init_from=flag.init_from),
    )


def main(argv: list[str]) -> None:
  flag = flags.FLAGS
  if len(argv) > 1:
    raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not flag.segmenter:
    raise ConfigError("--segmenter is required (one of the segmenters)")
  if bool(flag.images) == bool(flag.dataset):
    raise ConfigError("give one of --images=DIR or --dataset=NAME")
  if flag.evaluate and not flag.dataset:
    raise ConfigError("--evaluate needs --dataset (with label maps)")
  if not flag.evaluate and not flag.out:
    raise ConfigError("--out is required (the directory for the maps)")
  scales = _factors(flag.scales)
  model = load_segmenter(flag.segmenter, flag.init_from, dtype=flag.dtype)
  if not flag.evaluate:
    # A trained workdir names its classes (its maps are in its own ids).
    trained = flag.init_from and checkpoints.is_training_workdir(flag.init_from)
    check_ade20k_output(
      model,
      flag.class_names or (trained and checkpoint_label_names(flag.init_from)),
    )
  predictor = Predictor(
    model,
    batch_size=flag.batch_size,
    top_k=3 if flag.top3 else 1,
    resize=Resize(flag.size, flag.max_size),
    window=flag.window,
    stride=flag.stride,
    flip=flag.flip,
    scales=scales,
  )
  if flag.evaluate:
    _evaluate(flag, predictor)
  else:
    _segment_to_files(flag, predictor)


def _factors(values: list[str]) -> tuple[float, ...]:
  try:
    return tuple(float(v) for v in values)
  except ValueError:
    raise ConfigError(
      f"--scales={','.join(values)}: need numbers, e.g. 0.5,1.0,1.5"
    ) from None


if __name__ == "__main__":
  segmenter_flags.define_flags()
  flags.DEFINE_string("images", None, "a directory of images to segment")
  flags.DEFINE_string("dataset", None, "or a registered dataset")
  flags.DEFINE_string("split", "train", "--dataset split: train or test")
  flags.DEFINE_string("data_dir", None, "TFDS data_dir of --dataset")
  flags.DEFINE_string("out", None, "output directory")
  flags.DEFINE_bool("top3", False, "also SAS-Net's top-3 id/score PNGs")
  flags.DEFINE_bool("evaluate", False, "mIoU against --dataset's label maps")
  flags.DEFINE_bool(
    "flip", False, "average the probabilities with the mirrored image's"
  )
  flags.DEFINE_list(
    "scales",
    ["1.0"],
    "multi-scale test: factors of --size whose probabilities are averaged "
    "(mmsegmentation's ADE20K ratios: 0.5,0.75,1.0,1.25,1.5,1.75)",
  )
  flags.DEFINE_string(
    "class_names",
    None,
    "names of a non-ADE20K segmenter's classes (its ids are written as is)",
  )
  cli.run(main)
