"""Figures of a prototype or a training run, as PNGs and one HTML page
(`python -m scenejax.report`, see __main__.py).

  plots            what every figure shares (pyplot, names, heatmap, colours)
  prototype_plots  a prototype's figures: heatmap, GLS labels, comparison
  run_plots        a run's figures: curves, confusion, t-SNE, segmentation
  run_data         what a run's report reads: metrics.jsonl, a model pass
  html_page        report.html, the figures embedded
  proto_report     the report of a prototype NPZ alone
  run_report       the report of a training workdir, by its task
  __main__         the command

The names below are the ones used outside the package.
"""

from scenejax.report.plots import (
  MAX_LABELLED_CLASSES,
  cluster_order,
  display_name,
)
from scenejax.report.proto_report import prototype_report
from scenejax.report.prototype_plots import (
  default_gls_classes,
  gls_evolution,
  plot_gls_evolution,
  plot_prototype,
  plot_prototype_zoom,
  prototype_agreement,
)
from scenejax.report.run_data import model_pass, read_history
from scenejax.report.run_plots import similarity_vs_confusion
from scenejax.report.run_report import workdir_report

__all__ = [
  "MAX_LABELLED_CLASSES",
  "cluster_order",
  "default_gls_classes",
  "display_name",
  "gls_evolution",
  "model_pass",
  "plot_gls_evolution",
  "plot_prototype",
  "plot_prototype_zoom",
  "prototype_agreement",
  "prototype_report",
  "read_history",
  "similarity_vs_confusion",
  "workdir_report",
]
