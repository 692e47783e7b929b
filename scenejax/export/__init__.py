"""Deployable artefacts of a training run (orbax, StableHLO, TFLite) and
prediction with them (`artefacts`); the command is
`python -m scenejax.export` (`__main__`).
"""

from scenejax.export.artefacts import (
  ARTEFACTS,
  FORMATS,
  IMAGE_SUFFIXES,
  QUANTIZATIONS,
  RUNTIMES,
  Prediction,
  export,
  image_paths,
  load_export,
  load_runtime,
  predict,
  probabilities_function,
  stablehlo_bytes,
  tflite_bytes,
  tflite_runner,
)

__all__ = [
  "ARTEFACTS",
  "FORMATS",
  "IMAGE_SUFFIXES",
  "Prediction",
  "QUANTIZATIONS",
  "RUNTIMES",
  "export",
  "image_paths",
  "load_export",
  "load_runtime",
  "predict",
  "probabilities_function",
  "stablehlo_bytes",
  "tflite_bytes",
  "tflite_runner",
]
