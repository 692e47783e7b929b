"""The segmenter flags, shared by `python -m scenejax.segment` and
`python -m scenejax.prototype build`."""

from absl import flags

from scenejax import models


def define_flags() -> None:
  """The segmenter flags, shared with `python -m scenejax.prototype build`."""
  flags.DEFINE_string(
    "segmenter", None, f"one of {', '.join(models.SEGMENTERS)}"
  )
  flags.DEFINE_string(
    "init_from",
    None,
    "the segmenter's Hugging Face checkpoint (dir or URL), or the workdir "
    "of a segmenter trained by scenejax (config.task = 'segmentation')",
  )
  flags.DEFINE_integer("size", 512, "shorter side the images are resized to")
  flags.DEFINE_integer("max_size", 2048, "cap on the longer side")
  flags.DEFINE_integer(
    "batch_size", 8, "images per step (a multiple of the local devices)"
  )
  flags.DEFINE_enum("dtype", "float32", list(models.DTYPES), "compute dtype")
  flags.DEFINE_integer(
    "window",
    0,
    "sliding-window inference with crops of this size (0: whole image; "
    "the UperNet-ConvNeXt model cards use 512)",
  )
  flags.DEFINE_integer(
    "stride", 0, "--window's stride (0: 2/3 of the window, e.g. 341)"
  )
