r"""Figures of a prototype or a training run, as PNGs and one HTML page.

  python -m scenejax.report --workdir=/tmp/run [--out=DIR] [--classes=a,b]
  python -m scenejax.report --prototype=proto.npz [--class_names=FILE]
  # A segmenter's prototype against the ground-truth one, and its maps:
  python -m scenejax.report --prototype=seg.npz --compare=gt.npz \
      --compare_label="ground truth" --images=photos/ --label_maps=maps/

For a prototype alone: the heatmap ordered by hierarchical clustering, the
most similar pairs, and the GLS soft labels across epochs ([SP] Fig. 3, 4);
with --compare, another prototype of the same classes beside it and the
Pearson / Spearman agreement of their off-diagonal entries; with --images
and --label_maps, label maps blended over example images.
For a training workdir, also: the training curves from metrics.jsonl, and,
from one pass of the best checkpoint over the evaluation split, the
confusion matrix, the prototype's similarity against the confusion rate of
every class pair, and a t-SNE of the penultimate features ([SP] Fig. 8).

Everything lands in `--out`: by default WORKDIR/report/ for a workdir,
and for --prototype=X.npz the folder X_report/ beside the file
(published:mit67/cosine -> published_mit67_cosine_report/ here): one PNG
per figure and report.html, which embeds them (one file to mail or
attach).
"""

from __future__ import annotations

import os

from scenejax.errors import UserError
from scenejax.prototype import published
from scenejax.report.proto_report import prototype_report
from scenejax.report.run_report import workdir_report


def main(argv: list[str]) -> None:
  from absl import flags

  flag = flags.FLAGS
  if len(argv) > 1:
    raise UserError(f"unexpected arguments {argv[1:]}")
  if bool(flag.workdir) == bool(flag.prototype):
    raise UserError("give one of --workdir or --prototype")
  if flag.workdir and (flag.compare or flag.images or flag.label_maps):
    raise UserError(
      "--compare, --images and --label_maps go with --prototype (a "
      "workdir's own is --prototype=WORKDIR/prototype.npz)"
    )
  if flag.workdir:
    figures = workdir_report(
      flag.workdir,
      flag.out,
      classes=flag.classes,
      max_tsne=flag.max_tsne,
      step=flag.step,
    )
  else:
    stem = (  # published:mit67/cosine -> published_mit67_cosine_report
      flag.prototype.replace(":", "_").replace("/", "_")
      if published.is_published(flag.prototype)
      else os.path.splitext(flag.prototype)[0]
    )
    out = flag.out or stem + "_report"
    figures = prototype_report(
      flag.prototype,
      out,
      class_names_file=flag.class_names,
      classes=flag.classes,
      num_soft_epochs=flag.num_soft_epochs,
      final_confidence=flag.final_confidence,
      compare=flag.compare,
      compare_label=flag.compare_label,
      images=flag.images,
      label_maps=flag.label_maps,
      semantic_class_names_file=flag.semantic_class_names,
      num_overlays=flag.num_overlays,
    )
  agreement = figures.pop("agreement", None)
  if agreement:
    print(
      f"agreement with {flag.compare}: Pearson r = {agreement['pearson']:.4f}, "
      f"Spearman rho = {agreement['spearman']:.4f} over "
      f"{agreement['pairs']} off-diagonal pairs"
    )
  for name, path in figures.items():
    print(f"{name:>24}  {path}")


if __name__ == "__main__":
  from absl import flags

  from scenejax import cli

  flags.DEFINE_string("workdir", None, "a training workdir")
  flags.DEFINE_string("prototype", None, "a prototype .npz alone")
  flags.DEFINE_string(
    "out",
    None,
    "output folder (default: WORKDIR/report/, or X_report/ beside "
    "--prototype=X.npz)",
  )
  flags.DEFINE_string(
    "class_names", "", "class-name list for a bare prototype NPZ"
  )
  flags.DEFINE_string(
    "classes",
    "",
    "comma list of classes for the GLS "
    "figure (default: from the most similar pairs)",
  )
  flags.DEFINE_integer(
    "num_soft_epochs",
    20,
    "GLS STEP for --prototype (a workdir uses its config)",
  )
  flags.DEFINE_float(
    "final_confidence", 0.99, "GLS final confidence for --prototype"
  )
  flags.DEFINE_integer(
    "max_tsne", 2000, "at most this many eval images in the t-SNE"
  )
  flags.DEFINE_integer(
    "step", None, "checkpoint step (default: the best by the task's metric)"
  )
  flags.DEFINE_string(
    "compare",
    "",
    "--prototype: another prototype of the same classes (e.g. from "
    "ground-truth maps), compared entry by entry",
  )
  flags.DEFINE_string(
    "compare_label",
    "",
    "what --compare is, for the figure (e.g. 'ground truth')",
  )
  flags.DEFINE_string("images", "", "--prototype: images for overlays")
  flags.DEFINE_string(
    "label_maps", "", "their label maps (scenejax.segment --images output)"
  )
  flags.DEFINE_string(
    "semantic_class_names", "", "names of the map ids 1..L, for the legends"
  )
  flags.DEFINE_integer("num_overlays", 6, "images in the overlay figure")
  cli.run(main)
