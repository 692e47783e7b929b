"""Prepare a dataset once (needs TensorFlow: pip install 'scenejax[prepare]').

  python -m scenejax.datasets prepare mit67 --manual_dir=DIR [--data_dir=DIR]
  python -m scenejax.datasets prepare sun397 [--data_dir=DIR]
  python -m scenejax.datasets prepare cityscapes --manual_dir=DIR
  python -m scenejax.datasets prepare voc2007   # or coco2014 (multi-label)
  python -m scenejax.datasets prepare nus_wide --manual_dir=DIR

Catalogue datasets (sun397, places365*, voc2007, coco2014) download
through TFDS; mit67, ade20k_scenes, nus_wide and cityscapes (leftImg8bit_trainvaltest.zip and
gtFine_trainvaltest.zip) read the files placed in --manual_dir. Written as ArrayRecord,
the format `tfds.data_source` reads without TensorFlow.
"""

import importlib

from absl import flags

from scenejax import cli, datasets
from scenejax.errors import DatasetError

_DATA_DIR = flags.DEFINE_string(
  "data_dir", None, "TFDS data_dir (default ~/tensorflow_datasets)"
)
_MANUAL_DIR = flags.DEFINE_string(
  "manual_dir", None, "directory holding manually downloaded files"
)


def main(argv: list[str]) -> None:
  if len(argv) != 3 or argv[1] != "prepare":
    raise DatasetError(
      "usage: python -m scenejax.datasets prepare NAME; "
      f"NAME is one of {', '.join(datasets.REGISTRY)}"
    )
  name = argv[2]
  if name not in datasets.REGISTRY:
    raise DatasetError(
      f"unknown dataset {name!r}; one of {', '.join(datasets.REGISTRY)}"
    )
  import tensorflow_datasets as tfds

  entry = datasets.REGISTRY[name]
  if entry.builder_module:
    importlib.import_module(f"scenejax.datasets.{entry.builder_module}")
  builder = tfds.builder(entry.tfds_name, data_dir=_DATA_DIR.value)
  builder.download_and_prepare(
    file_format="array_record",
    download_config=tfds.download.DownloadConfig(manual_dir=_MANUAL_DIR.value),
  )
  print(
    f"prepared {builder.name} in {builder.data_dir}: "
    f"{ {k: v.num_examples for k, v in builder.info.splits.items()} }"
  )


if __name__ == "__main__":
  cli.run(main)
