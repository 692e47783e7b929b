r"""Build, import and inspect similarity prototypes.

  # From your segmenter's label maps and a list of 'relative/path label' lines
  # (label = index or class name). --label_format names the maps' ids:
  # ade20k (0 = unlabeled, 1..150) or zero_based (0..149, 255 = unlabeled).
  python -m scenejax.prototype build --label_maps=maps/ --list=train.txt \
      --class_names=classes.txt --label_format=ade20k --metric=cosine \
      --out=sun397_cosine.npz
  # From a prepared dataset's ground-truth maps (ade20k_scenes, or the
  # synthetic scenes):
  python -m scenejax.prototype build --dataset=ade20k_scenes --out=ade20k_cosine.npz
  # From a folder of your images, one folder per class (DIR/CLASS/IMAGE),
  # segmented on the fly (resumes after preemption; multi-host):
  python -m scenejax.prototype build --images=photos/train \
      --segmenter=upernet_convnext_small --init_from=ckpt/ --out=mine.npz
  # From any registered dataset's training images, segmented on the fly
  # (no maps written; resumes after preemption; multi-host):
  python -m scenejax.prototype build --dataset=mit67 \
      --segmenter=upernet_convnext_small --init_from=ckpt/ --out=mit67.npz
  # From predicted object presence instead of a segmenter: a multi-label
  # presence model (config.task = "multilabel" workdir or its export);
  # --presence=thresholded (sigma >= --threshold) or expected (sigma):
  python -m scenejax.prototype build --dataset=mit67 \
      --presence_model=workdirs/ade20k_presence_sadcl_convnext --out=mit67.npz
  # The authors' published matrices, downloaded once, checked against their
  # recorded sha256 and cached (mit67, sun397, places365_7, places365_14 x
  # cosine, euclidean; config.prototype.path takes the same name):
  python -m scenejax.prototype fetch published:sun397/cosine [--out=F.npz]
  # Any other bare C x C sheet (rows in the order of --class_names):
  python -m scenejax.prototype import_xlsx --xlsx=SUN397_SP_cosine.xlsx \
      --class_names=SUN397_scene_names.txt --metric=cosine --out=sun397_cosine.npz
  # Summary and a clustered heatmap (of a file or a published:... name):
  python -m scenejax.prototype show sun397_cosine.npz --png=sun397.png
  # The focal-loss class weights of a segmentation run ([SEG]), from a
  # prepared dataset's training maps (config.segmentation.class_weights=F):
  python -m scenejax.prototype class_weights --dataset=ade20k_scenes \
      --method=median_frequency --out=ade20k_class_weights.npz
"""

from __future__ import annotations

import os

from absl import flags

from scenejax import cli, fileio, prototype
from scenejax.datasets import label_maps as label_maps_lib
from scenejax.errors import PrototypeError
from scenejax.segment import segmenter_flags

COMMANDS = ("build", "fetch", "import_xlsx", "show", "class_weights")

_DATASET = flags.DEFINE_string(
  "dataset",
  None,
  "build: a prepared dataset with label maps "
  "(ade20k_scenes), instead of --label_maps/--list",
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data_dir of --dataset")
_IMAGES = flags.DEFINE_string(
  "images",
  None,
  "build --segmenter or --presence_model: a folder of your images, "
  "DIR/CLASS/IMAGE (an image folder's train/), instead of --dataset; the "
  "classes are the folder names, sorted",
)
_LABEL_MAPS = flags.DEFINE_string(
  "label_maps", None, "build: directory holding the PNG/NPY label maps"
)
_LIST = flags.DEFINE_string(
  "list", None, "build: file of 'relative/path scene_label' lines"
)
_LABEL_FORMAT = flags.DEFINE_enum(
  "label_format",
  None,
  label_maps_lib.LABEL_FORMATS,
  "build --label_maps: the maps' ids; ade20k = 0 unlabeled, 1..L; "
  "zero_based = 0..L-1, 255 unlabeled (mmseg-style)",
)
_CLASS_NAMES = flags.DEFINE_string(
  "class_names",
  None,
  "scene class names, one per line (or SAS-Net's 'name index' lines)",
)
_SEMANTIC_NAMES = flags.DEFINE_string(
  "semantic_class_names",
  None,
  "build: names of the L semantic classes (stored in the file)",
)
_NUM_SEMANTIC = flags.DEFINE_integer(
  "num_semantic_classes",
  prototype.ADE20K_NUM_CLASSES,
  "build: L (150 for ADE20K)",
)
_METRIC = flags.DEFINE_enum(
  "metric", "cosine", prototype.METRICS, "cosine (Eq. 2) or euclidean (Eq. 3-4)"
)
_WORKERS = flags.DEFINE_integer(
  "workers", 0, "build: worker processes reading maps"
)
_SAVE_EVERY = flags.DEFINE_float(
  "save_every_s", 60.0, "build --segmenter: seconds between saved partial sums"
)
segmenter_flags.define_flags()  # --segmenter, --init_from, --size, ... for build
_PRESENCE_MODEL = flags.DEFINE_string(
  "presence_model",
  None,
  "build: a multi-label presence model (workdir or export) predicting "
  "which objects each --dataset training image contains",
)
_PRESENCE = flags.DEFINE_enum(
  "presence",
  "thresholded",
  ["thresholded", "expected"],
  "build --presence_model: s_l = [sigma >= --threshold] or s_l = sigma",
)
_THRESHOLD = flags.DEFINE_float(
  "threshold", 0.5, "build --presence_model --presence=thresholded: t"
)
_METHOD = flags.DEFINE_enum(
  "method",
  "median_frequency",
  ["median_frequency", "inverse"],
  "class_weights: median frequency (Eigen & Fergus) or ENet's 1/ln(1.02+f)",
)
_XLSX = flags.DEFINE_string("xlsx", None, "import_xlsx: the published sheet")
_OUT = flags.DEFINE_string("out", None, "the .npz to write")
_TOP = flags.DEFINE_integer("top", 10, "show: most similar pairs to list")
_PNG = flags.DEFINE_string("png", None, "show: also write a heatmap PNG")


def _require(*names: str, command: str) -> None:
  missing = [n for n in names if flags.FLAGS[n].value is None]
  if missing:
    raise PrototypeError(
      f"{command} needs " + ", ".join(f"--{n}" for n in missing)
    )


def _build() -> None:
  _require("out", command="build")
  semantic_names = (
    prototype.read_class_names(_SEMANTIC_NAMES.value)
    if _SEMANTIC_NAMES.value
    else None
  )
  if flags.FLAGS.segmenter and _PRESENCE_MODEL.value:
    raise PrototypeError(
      "build takes --segmenter or --presence_model, not both"
    )
  if flags.FLAGS.segmenter:
    return _build_with_segmenter(semantic_names)
  if _PRESENCE_MODEL.value:
    return _build_with_presence_model()
  if _DATASET.value:
    from scenejax import datasets

    data = datasets.load(_DATASET.value, data_dir=_DATA_DIR.value)
    if data.spec is not None:  # the synthetic scenes: maps in memory
      proto = prototype.build_prototype(
        data.train.label_maps,
        data.train.labels,
        data.class_names,
        metric=_METRIC.value,
        num_semantic_classes=data.spec.num_semantic_classes,
        semantic_class_names=data.spec.semantic_class_names,
      )
      prototype.save_prototype(_OUT.value, proto)
      print(
        f"wrote {_OUT.value}: {proto.num_classes} classes from "
        f"{int(proto.image_counts.sum())} label maps of {_DATASET.value}"
      )
      return
    if not getattr(data.train, "has_label_maps", False):
      raise PrototypeError(
        f"dataset {_DATASET.value!r} has no label maps; segment its images "
        "and use --label_maps/--list instead"
      )
    # Dataset builders store maps in the ADE20K convention.
    proto = prototype.build_prototype(
      data.train.label_maps(),
      data.train.labels(),
      data.class_names,
      metric=_METRIC.value,
      num_semantic_classes=_NUM_SEMANTIC.value,
      semantic_class_names=semantic_names,
      progress=True,
    )
    source = f"label maps of {_DATASET.value}"
  else:
    if not (_LABEL_MAPS.value and _LIST.value):
      raise PrototypeError("build needs --dataset, or --label_maps and --list")
    if _LABEL_FORMAT.value is None:
      raise PrototypeError(
        "build --label_maps needs --label_format: "
        + ", ".join(label_maps_lib.LABEL_FORMATS)
        + " (ade20k: 0 = unlabeled, 1..150; zero_based: 0..149 = classes, "
        "255 = unlabeled, as mmseg-style segmenters write them)"
      )
    class_names = (
      prototype.read_class_names(_CLASS_NAMES.value)
      if _CLASS_NAMES.value
      else None
    )
    files, labels = prototype.read_list_file(_LIST.value, class_names)
    paths = []
    for rel in files:
      path = os.path.join(_LABEL_MAPS.value, rel)
      if not os.path.exists(path):
        raise PrototypeError(
          f"label map {path} (listed in {_LIST.value}) does not exist"
        )
      paths.append(path)
    names = class_names or [str(c) for c in range(max(labels) + 1)]
    proto = prototype.build_prototype(
      paths,
      labels,
      names,
      metric=_METRIC.value,
      num_semantic_classes=_NUM_SEMANTIC.value,
      label_format=_LABEL_FORMAT.value,
      semantic_class_names=semantic_names,
      workers=_WORKERS.value,
      progress=True,
    )
    source = "label maps"
  prototype.save_prototype(_OUT.value, proto)
  print(
    f"wrote {_OUT.value}: {proto.num_classes} classes from "
    f"{int(proto.image_counts.sum())} {source}"
  )


def _images_to_build(command: str):
  """(dataset name, Dataset) of --images (a folder of class folders) or
  --dataset (its training split)."""
  from scenejax import datasets
  from scenejax.datasets import image_folder

  if _IMAGES.value and _DATASET.value:
    raise PrototypeError(f"{command} takes --images or --dataset, not both")
  if _IMAGES.value:
    folder = os.path.abspath(os.path.expanduser(_IMAGES.value))
    names, paths, labels = image_folder.list_classes(folder)
    source = image_folder.FileSource(paths, labels)
    return f"images:{folder}", datasets.Dataset("images", names, source, None)
  if not _DATASET.value:
    raise PrototypeError(f"{command} needs --images=DIR or --dataset=NAME")
  return _DATASET.value, datasets.load(_DATASET.value, data_dir=_DATA_DIR.value)


def _build_with_segmenter(semantic_names) -> None:
  """The training images of --images or --dataset, segmented on the fly
  ([SP] §3.2)."""
  from scenejax.prototype import segmented

  f = flags.FLAGS
  name, data = _images_to_build("build --segmenter")
  proto, stats = segmented.build_for_dataset(
    data,
    dataset=name,
    segmenter=f.segmenter,
    init_from=f.init_from,
    out=_OUT.value,
    metric=_METRIC.value,
    dtype=f.dtype,
    batch_size=f.batch_size,
    size=f.size,
    max_size=f.max_size,
    window=f.window,
    stride=f.stride,
    save_every_s=_SAVE_EVERY.value,
    semantic_class_names=semantic_names,
  )
  print(
    f"wrote {_OUT.value}: {proto.num_classes} classes from "
    f"{stats['images']} images segmented by {f.segmenter} "
    f"({stats['images_per_s']:.1f} images/s in this process"
    + (f"; {stats['skipped']} undecodable, skipped" if stats["skipped"] else "")
    + ")"
  )


def _build_with_presence_model() -> None:
  """The training images of --images or --dataset through a presence
  model."""
  from scenejax.prototype import presence

  name, data = _images_to_build("build --presence_model")
  proto, stats = presence.build_for_dataset(
    data,
    dataset=name,
    presence_model=_PRESENCE_MODEL.value,
    out=_OUT.value,
    metric=_METRIC.value,
    mode=_PRESENCE.value,
    threshold=_THRESHOLD.value,
    batch_size=flags.FLAGS.batch_size,
    save_every_s=_SAVE_EVERY.value,
  )
  print(
    f"wrote {_OUT.value}: {proto.num_classes} classes from "
    f"{stats['images']} images, {_PRESENCE.value} presence of "
    f"{_PRESENCE_MODEL.value} ({stats['images_per_s']:.1f} images/s in "
    "this process"
    + (f"; {stats['skipped']} undecodable, skipped" if stats["skipped"] else "")
    + ")"
  )


def _import_xlsx() -> None:
  _require("xlsx", "class_names", "out", command="import_xlsx")
  matrix = prototype.read_xlsx_matrix(_XLSX.value)
  names = prototype.read_class_names(_CLASS_NAMES.value)
  if matrix.shape[0] != matrix.shape[1]:
    raise PrototypeError(
      f"{_XLSX.value}: the sheet is {matrix.shape[0]}x"
      f"{matrix.shape[1]}, not square"
    )
  if len(names) != matrix.shape[0]:
    raise PrototypeError(
      f"{_CLASS_NAMES.value} has {len(names)} class names but "
      f"{_XLSX.value} is {matrix.shape[0]}x{matrix.shape[1]}"
    )
  similarity = prototype.check_similarity_matrix(matrix, _XLSX.value)
  prototype.save_prototype(
    _OUT.value,
    prototype.Prototype(
      similarity=similarity, metric=_METRIC.value, class_names=tuple(names)
    ),
  )
  print(f"wrote {_OUT.value}: {len(names)} classes ({_METRIC.value})")


def _fetch(spec: str) -> None:
  from scenejax.prototype import published

  if not published.is_published(spec):
    raise PrototypeError(f"fetch takes published:DATASET/METRIC, got {spec!r}")
  path = published.fetch(spec)
  if _OUT.value:
    with open(path, "rb") as cached:
      data = cached.read()
    fileio.atomic_write(_OUT.value, lambda f: f.write(data))
    path = _OUT.value
  proto = prototype.load_prototype(path)
  print(f"{spec}: {path} ({proto.num_classes} classes, {proto.metric})")


def _show(path: str) -> None:
  proto = prototype.load_prototype(path)
  print(proto.summary(_TOP.value))
  if _PNG.value:
    from scenejax import report

    names = proto.class_names or [str(c) for c in range(proto.num_classes)]
    report.plot_prototype(
      proto.similarity, names, _PNG.value, metric=proto.metric
    )
    print(f"wrote {_PNG.value}")


def _class_weights() -> None:
  from scenejax import datasets
  from scenejax.tasks import segmentation

  _require("dataset", "out", command="class_weights")
  if _DATASET.value not in datasets.SEGMENTATION_NAMES:
    raise PrototypeError(
      f"--dataset={_DATASET.value} has no label maps; class_weights reads "
      f"one of {', '.join(datasets.SEGMENTATION_NAMES)}"
    )
  data = datasets.as_segmentation(
    datasets.load(_DATASET.value, data_dir=_DATA_DIR.value)
  )
  counts = segmentation.class_frequencies(
    data.train.label_maps(), len(data.class_names)
  )
  weights = segmentation.class_weights_from_counts(counts, _METHOD.value)
  segmentation.save_class_weights(
    _OUT.value, weights, counts, _METHOD.value, data.class_names
  )
  present = weights > 0
  print(
    f"wrote {_OUT.value}: {_METHOD.value} weights of {present.sum()} classes "
    f"present in {len(data.train)} training maps (range "
    f"{weights[present].min():.3g}..{weights[present].max():.3g}; "
    f"{(~present).sum()} absent, weight 0)"
  )


def main(argv: list[str]) -> None:
  command, args = (argv[1], argv[2:]) if len(argv) > 1 else (None, [])
  if command not in COMMANDS:
    raise PrototypeError(
      f"give a command: one of {', '.join(COMMANDS)} "
      f"(got {command!r}); see --help"
    )
  if command in ("show", "fetch"):
    if len(args) != 1:
      raise PrototypeError(
        f"{command} takes one prototype: {command} "
        + ("P.npz" if command == "show" else "published:DATASET/METRIC")
      )
    return (_show if command == "show" else _fetch)(args[0])
  if args:
    raise PrototypeError(f"unexpected arguments {args}")
  if command == "class_weights":
    return _class_weights()
  return _build() if command == "build" else _import_xlsx()


if __name__ == "__main__":
  cli.run(main)
