"""Prepare a dataset once (needs TensorFlow: pip install 'scenejax[prepare]').

  python -m scenejax.datasets prepare mit67 --manual_dir=DIR [--data_dir=DIR]
  python -m scenejax.datasets prepare sun397 [--data_dir=DIR]

Catalogue datasets (sun397, places365*) download through TFDS; mit67 and
ade20k_scenes read the files placed in --manual_dir. Written as ArrayRecord,
the format `tfds.data_source` reads without TensorFlow.
"""

import argparse
import importlib
import sys

from scenejax.datasets import DatasetError

_TFDS_NAMES = {"sun397": "sun397/standard-part1-120k",
               "places365": "places365_small", "places365_7": "places365_small",
               "places365_14": "places365_small", "mit67": "mit67",
               "ade20k_scenes": "ade20k_scenes"}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m scenejax.datasets")
  sub = parser.add_subparsers(dest="command", required=True)
  prepare = sub.add_parser("prepare", help=__doc__)
  prepare.add_argument("name", choices=sorted(_TFDS_NAMES))
  prepare.add_argument("--data_dir", default=None)
  prepare.add_argument("--manual_dir", default=None)
  args = parser.parse_args(argv)
  import tensorflow_datasets as tfds
  for builder_module in ("ade20k_scenes", "mit67"):  # registers them
    importlib.import_module(f"scenejax.datasets.{builder_module}")
  builder = tfds.builder(_TFDS_NAMES[args.name], data_dir=args.data_dir)
  try:
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(
            manual_dir=args.manual_dir))
  except DatasetError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"prepared {builder.name} in {builder.data_dir}: "
        f"{ {k: v.num_examples for k, v in builder.info.splits.items()} }")
  return 0


if __name__ == "__main__":
  sys.exit(main())
