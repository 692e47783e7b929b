"""`python -m scenejax.export`: deployable artefacts from a training
workdir, and prediction with them (see `scenejax.export.artefacts`).

  python -m scenejax.export --workdir=/tmp/run --out=/tmp/run_export [--step=N]
      [--formats=orbax,stablehlo,tflite] [--quantize=dynamic|int8
      --calibration=IMAGE_DIR]
  python -m scenejax.export --predict=/tmp/run_export [--runtime=R] img1.jpg photos/
"""

from __future__ import annotations

import sys

from absl import flags

from scenejax import cli
from scenejax.export.artefacts import (
  FORMATS,
  RUNTIMES,
  export,
  image_paths,
  predict,
)


def main(argv: list[str]) -> None:
  flag = flags.FLAGS
  if flag.predict:
    if len(argv) < 2:
      cli.fail("give image files or directories after --predict=EXPORT_DIR")
    results = predict(flag.predict, image_paths(argv[1:]), runtime=flag.runtime)
    for result in results:
      if result.error is None:
        print(
          result.path
          + ": "
          + ", ".join(f"{name} {p:.3f}" for name, p in result.ranked),
          flush=True,
        )
      else:
        print(f"cannot classify {result.error}", file=sys.stderr, flush=True)
    failed = sum(result.error is not None for result in results)
    if failed:
      cli.fail(
        f"{failed} of {len(results)} files could not be classified "
        "(named above); the others' predictions are printed"
      )
    return
  if not (flag.workdir and flag.out):
    cli.fail("give --workdir and --out (or --predict=EXPORT files...)")
  description = export(
    flag.workdir,
    flag.out,
    step=flag.step,
    formats=tuple(f for f in flag.formats if f),
    quantize=flag.quantize,
    calibration=flag.calibration,
  )
  print(
    f"exported {description['model']} (step "
    f"{description['checkpoint_step']}) to {flag.out}: "
    + ", ".join(description["artefacts"].values())
  )


if __name__ == "__main__":
  flags.DEFINE_string("workdir", None, "training workdir to export")
  flags.DEFINE_string("out", None, "directory to write the export to")
  flags.DEFINE_integer(
    "step", None, "checkpoint step (default: the best by the task's metric)"
  )
  flags.DEFINE_list(
    "formats",
    ["orbax", "stablehlo"],
    "what to write: some of " + ", ".join(FORMATS),
  )
  flags.DEFINE_string(
    "quantize",
    None,
    "tflite int8 post-training quantization: dynamic (weights) or int8 "
    "(weights and activations; needs --calibration)",
  )
  flags.DEFINE_string(
    "calibration", None, "a directory of images to calibrate int8 on"
  )
  flags.DEFINE_string(
    "predict",
    None,
    "an export directory: classify the image files given as arguments",
  )
  flags.DEFINE_string(
    "runtime",
    None,
    "with --predict: " + ", ".join(RUNTIMES) + " (default: the first the "
    "export has)",
  )
  cli.run(main)
