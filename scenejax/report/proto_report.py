"""The report of a prototype NPZ alone (`python -m scenejax.report
--prototype=...`), and the prototype sections a workdir's report shares."""

from __future__ import annotations

import html
import os

import numpy as np

from scenejax import prototype as prototype_lib
from scenejax.errors import UserError
from scenejax.report.html_page import _img, _p, _table, write_html
from scenejax.report.plots import (
  MAX_LABELLED_CLASSES,
  _names,
  cluster_order,
  display_name,
)
from scenejax.report.prototype_plots import (
  default_gls_classes,
  plot_gls_evolution,
  plot_overlays,
  plot_prototype,
  plot_prototype_comparison,
  plot_prototype_zoom,
  prototype_agreement,
)
from scenejax.report.run_plots import confusion_rates


def _prototype_sections(
  proto, out, *, classes, num_soft_epochs, final_confidence, confusion=None
):
  s = proto.similarity
  names = _names(proto.class_names, s.shape[0])
  order = cluster_order(s)
  figures = {
    "prototype": plot_prototype(
      s,
      proto.class_names,
      os.path.join(out, "prototype.png"),
      metric=proto.metric,
      order=order,
    )
  }
  fragments = [
    _p(
      "Each cell is the similarity of two scene classes' object "
      "statistics ([SP] Eq. 2/4); rows and columns are ordered "
      "by average-linkage clustering, so blocks are groups of "
      "scenes that share objects."
    ),
    _img(figures["prototype"], "prototype"),
  ]
  if s.shape[0] > MAX_LABELLED_CLASSES:
    figures["prototype_zoom"] = plot_prototype_zoom(
      s,
      proto.class_names,
      os.path.join(out, "prototype_zoom.png"),
      metric=proto.metric,
    )
    fragments.append(_img(figures["prototype_zoom"], "prototype close-up"))
  rates = None if confusion is None else confusion_rates(confusion)
  rows = []
  for i, j, v in prototype_lib.most_similar_pairs(s, 15):
    row = [names[i], names[j], f"{v:.4f}"]
    if rates is not None:
      row.append(f"{rates[i, j]:.3f} / {rates[j, i]:.3f}")
    rows.append(row)
  header = ["class", "class", "similarity"] + (
    ["confusion i→j / j→i"] if rates is not None else []
  )
  sections = [
    ("Similarity prototype", fragments),
    ("Most confusable pairs by the prototype", [_table(header, rows)]),
  ]
  classes = default_gls_classes(s) if classes is None else classes
  figures["gls"] = plot_gls_evolution(
    s,
    proto.class_names,
    os.path.join(out, "gls_evolution.png"),
    classes=classes,
    num_soft_epochs=num_soft_epochs,
    final_confidence=final_confidence,
  )
  start = float(np.max(np.diagonal(s) / s.sum(axis=1)))
  sections.append(
    (
      "GLS soft labels across epochs",
      [
        _p(
          f"The soft labels of {', '.join(names[c] for c in classes)} "
          "([SP] Algorithm 2): the target's own entry rises linearly from "
          f"{start:.3f} (Eq. 8) to {final_confidence} over STEP = "
          f"{num_soft_epochs} epochs; the mass on similar classes shrinks "
          "with it; after STEP the label is one-hot."
        ),
        _img(figures["gls"], "GLS evolution"),
      ],
    )
  )
  return sections, figures, order


def _class_indices(names_arg: str, class_names, num: int) -> list[int] | None:
  if not names_arg:
    return None
  names = list(class_names or [str(c) for c in range(num)])
  short = [display_name(n) for n in names]
  chosen = []
  for name in names_arg.split(","):
    name = name.strip()
    if name in names:
      chosen.append(names.index(name))
    elif name in short:
      chosen.append(short.index(name))
    elif name.isdigit() and int(name) < num:
      chosen.append(int(name))
    else:
      raise UserError(
        f"--classes: no class named {name!r} (the classes are e.g. {short[:5]})"
      )
  return chosen


def _comparison_section(proto, other_path, out, label):
  """Section comparing `proto` with the prototype at `other_path` (same
  classes, matched by name when both files carry names)."""
  other = prototype_lib.load_prototype(other_path)
  if other.metric and proto.metric and other.metric != proto.metric:
    raise UserError(
      f"--compare={other_path} is a {other.metric} prototype, this one is "
      f"{proto.metric}: compare prototypes of one metric"
    )
  if proto.class_names and other.class_names:
    if set(proto.class_names) != set(other.class_names):
      missing = sorted(set(proto.class_names) ^ set(other.class_names))
      raise UserError(
        f"--compare={other_path}: the two prototypes' classes differ "
        f"(e.g. {missing[:3]})"
      )
    index = [other.class_names.index(n) for n in proto.class_names]
    b = other.similarity[np.ix_(index, index)]
  elif other.num_classes == proto.num_classes:
    b = other.similarity
  else:
    raise UserError(
      f"--compare={other_path} has {other.num_classes} classes, this "
      f"prototype {proto.num_classes}"
    )
  agreement = prototype_agreement(proto.similarity, b)
  figure = plot_prototype_comparison(
    proto.similarity,
    b,
    proto.class_names,
    os.path.join(out, "prototype_comparison.png"),
    labels=("this prototype", label),
    metric=proto.metric,
  )
  fragments = [
    _p(
      f"This prototype against {label} ({os.path.basename(other_path)}), "
      "in the same class order. Agreement of the off-diagonal entries "
      f"S[i, j], i ≠ j ({agreement['pairs']} pairs): Pearson r = "
      f"{agreement['pearson']:.4f}, Spearman ρ = "
      f"{agreement['spearman']:.4f}; largest |difference| "
      f"{agreement['max_abs_difference']:.4f}."
    ),
    _img(figure, "prototype comparison"),
  ]
  return (f"Against {label}", fragments), figure, agreement


def _overlay_section(images_dir, maps_dir, out, semantic_names, count):
  """Section of label maps (`maps_dir`, PNG per image as `scenejax.segment`
  writes them) blended over the first `count` images of `images_dir`."""
  from PIL import Image

  from scenejax.datasets import label_maps as label_maps_lib
  from scenejax.segment import image_files, png_name

  chosen = []
  for rel in image_files(images_dir):
    if len(chosen) == count:
      break
    path = os.path.join(maps_dir, png_name(rel))
    if os.path.exists(path):
      chosen.append((rel, path))
  if not chosen:
    raise UserError(
      f"--label_maps={maps_dir} holds no map of the images in "
      f"--images={images_dir} (expected e.g. {png_name('a.jpg')} for a.jpg)"
    )
  images, maps = [], []
  for rel, path in chosen:
    with Image.open(os.path.join(images_dir, rel)) as image:
      images.append(np.asarray(image.convert("RGB")))
    maps.append(label_maps_lib.read_label_map(path).astype(np.int64))
  figure = plot_overlays(
    images,
    maps,
    os.path.join(out, "overlays.png"),
    titles=[rel for rel, _ in chosen],
    semantic_names=semantic_names,
  )
  fragments = [
    _p(
      f"Label maps from {maps_dir} over the first {len(chosen)} images of "
      f"{images_dir} ({', '.join(rel for rel, _ in chosen)}; ADE20K ids, "
      "unlabeled pixels left as they are)."
    ),
    _img(figure, "label-map overlays"),
  ]
  return ("Label maps on example images", fragments), figure


def prototype_report(
  path,
  out,
  *,
  class_names_file: str = "",
  classes: str = "",
  num_soft_epochs: int = 20,
  final_confidence: float = 0.99,
  compare: str = "",
  compare_label: str = "",
  images: str = "",
  label_maps: str = "",
  semantic_class_names_file: str = "",
  num_overlays: int = 6,
) -> dict:
  """Figures and report.html of a prototype NPZ alone; returns the paths
  (and, with `compare`, the agreement under "agreement").

  Args:
    compare: another prototype of the same classes (e.g. from
      ground-truth maps): both side by side, and the Pearson / Spearman
      agreement of their off-diagonal entries.
    images, label_maps: a folder of images and one of their label maps
      (`python -m scenejax.segment --images=... --out=...`): overlays of
      the first `num_overlays`.
  """
  names = (
    prototype_lib.read_class_names(class_names_file)
    if class_names_file
    else None
  )
  if bool(images) != bool(label_maps):
    raise UserError("give both --images and --label_maps for overlays")
  if images and num_overlays < 1:
    raise UserError(f"--num_overlays={num_overlays}: need at least 1")
  proto = prototype_lib.load_prototype(path, class_names=names)
  if names is not None:
    proto = prototype_lib.with_class_names(proto, names)
  os.makedirs(out, exist_ok=True)
  sections, figures, _ = _prototype_sections(
    proto,
    out,
    classes=_class_indices(classes, proto.class_names, proto.num_classes),
    num_soft_epochs=num_soft_epochs,
    final_confidence=final_confidence,
  )
  summary = f"<pre>{html.escape(proto.summary())}</pre>"
  sections.insert(0, (f"{os.path.basename(os.fspath(path))}", [summary]))
  if compare:
    section, figures["prototype_comparison"], agreement = _comparison_section(
      proto, compare, out, compare_label or "the other prototype"
    )
    sections.insert(2, section)
    figures["agreement"] = agreement
  if images:
    semantic = (
      prototype_lib.read_class_names(semantic_class_names_file)
      if semantic_class_names_file
      else proto.semantic_class_names
    )
    section, figures["overlays"] = _overlay_section(
      images, label_maps, out, semantic, num_overlays
    )
    sections.append(section)
  figures["html"] = write_html(
    os.path.join(out, "report.html"), "scenejax prototype report", sections
  )
  return figures
