"""scenejax.report: every figure of a demo workdir and of the published
prototypes is written, the HTML page is self-contained, and the numbers
behind the figures match independent NumPy computations."""

import base64
import json
import os
import re

import hypothesis
import numpy as np
import pytest
import reference
from conftest import assert_user_error, run_cli
from hypothesis import strategies as st
from PIL import Image

from scenejax import report
from scenejax.training import loop

WORKDIR_FIGURES = (
  "prototype",
  "gls",
  "curves",
  "confusion",
  "similarity_vs_confusion",
  "tsne",
  "html",
)


@pytest.fixture(scope="module")
def demo_workdir(tmp_path_factory):
  from configs import demo

  config = demo.get_config()
  config.data.train_per_class = 20
  config.data.test_per_class = 10
  config.batch_size = 32
  config.eval_batch_size = 32
  config.num_epochs = 3
  config.loss.num_soft_epochs = 1
  config.progress_bar = False
  workdir = str(tmp_path_factory.mktemp("demo"))
  loop.train_and_evaluate(config, workdir)
  return workdir


def _assert_png(path, min_size=(300, 200)):
  with Image.open(path) as image:
    image.verify()
  with Image.open(path) as image:
    assert image.format == "PNG"
    assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
    # Not a blank canvas: a figure has more than a handful of colours.
    assert len(image.convert("RGB").getcolors(1 << 20) or []) > 20


def _assert_self_contained(html_path, pngs):
  text = open(html_path, encoding="utf-8").read()
  sources = re.findall(r'src="([^"]*)"', text)
  assert len(sources) == len(pngs)
  assert all(s.startswith("data:image/png;base64,") for s in sources)
  embedded = {base64.b64decode(s.split(",", 1)[1]) for s in sources}
  assert embedded == {open(p, "rb").read() for p in pngs}
  assert "http" not in text and "<link" not in text


@pytest.mark.slow
def test_workdir_report_writes_every_figure(demo_workdir, tmp_path):
  out = str(tmp_path / "report")
  proc = run_cli("scenejax.report", f"--workdir={demo_workdir}", f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  figures = {
    name: os.path.join(out, f)
    for name, f in (
      ("prototype", "prototype.png"),
      ("gls", "gls_evolution.png"),
      ("curves", "training_curves.png"),
      ("confusion", "confusion.png"),
      ("similarity_vs_confusion", "similarity_vs_confusion.png"),
      ("tsne", "tsne.png"),
    )
  }
  for path in figures.values():
    _assert_png(path)
  _assert_self_contained(
    os.path.join(out, "report.html"), list(figures.values())
  )
  assert sorted(os.listdir(out)) == sorted(
    [os.path.basename(p) for p in figures.values()] + ["report.html"]
  )


@pytest.mark.slow
def test_model_pass_reproduces_the_trainers_confusion(demo_workdir):
  """The report's own eval pass over the last checkpoint counts the same
  confusion matrix as the trainer's evaluation did."""
  with open(os.path.join(demo_workdir, "results.json")) as f:
    results = json.load(f)
  history = report.read_history(demo_workdir)
  last_step = int(
    max(
      os.listdir(os.path.join(demo_workdir, "checkpoints")),
      key=lambda d: int(d) if d.isdigit() else -1,
    )
  )
  confusion, features, labels, step = report.model_pass(
    demo_workdir, step=last_step, max_images=30
  )
  assert step == last_step and len(history) == 3
  np.testing.assert_array_equal(confusion, np.asarray(results["confusion"]))
  assert len(features) == len(labels) <= 30 and features.ndim == 2
  assert len(set(labels.tolist())) > 1  # spread over the split, not 1 class


def test_prototype_report_of_published_sun397(shared, tmp_path):
  from conftest import PROTOTYPES, SASNET

  out = tmp_path / "sun"
  figures = report.prototype_report(
    PROTOTYPES / "SUN397_SP_cosine.npz",
    str(out),
    class_names_file=str(SASNET / "SUN397_scene_names.txt"),
    classes="abbey,/b/bedroom",
  )
  assert set(figures) == {"prototype", "prototype_zoom", "gls", "html"}
  for name in ("prototype", "prototype_zoom", "gls"):
    _assert_png(figures[name])
  _assert_self_contained(
    figures["html"],
    [figures[n] for n in ("prototype", "prototype_zoom", "gls")],
  )
  text = open(figures["html"], encoding="utf-8").read()
  assert "bedroom" in text and "abbey" in text


def test_unknown_class_is_a_clear_error(shared, tmp_path):
  from conftest import PROTOTYPES, SASNET

  assert_user_error(
    run_cli(
      "scenejax.report",
      f"--prototype={PROTOTYPES / 'MIT67_SP_cosine.npz'}",
      f"--class_names={SASNET / 'MITIndoor67_scene_names.txt'}",
      "--classes=spaceship",
      f"--out={tmp_path}",
    ),
    "--classes: no class named 'spaceship'",
  )
  assert_user_error(
    run_cli("scenejax.report"), "give one of --workdir or --prototype"
  )


def test_cluster_order_makes_hidden_blocks_contiguous():
  rng = np.random.default_rng(0)
  blocks = np.repeat(np.arange(4), 5)  # 4 groups of 5 classes
  s = np.where(blocks[:, None] == blocks[None, :], 0.9, 0.1)
  s = s + rng.uniform(0, 0.05, s.shape)
  s = (s + s.T) / 2
  np.fill_diagonal(s, 1.0)
  perm = rng.permutation(20)
  order = report.cluster_order(s[np.ix_(perm, perm)])
  assert sorted(order.tolist()) == list(range(20))
  groups = blocks[perm][order]
  # Contiguous blocks: the group changes exactly 3 times along the order.
  assert int((groups[1:] != groups[:-1]).sum()) == 3


def _ranks(x):
  order = np.argsort(x, kind="stable")
  ranks = np.empty(len(x))
  ranks[order] = np.arange(len(x))
  for value in np.unique(x):  # ties share their mean rank
    ranks[x == value] = ranks[x == value].mean()
  return ranks


def test_similarity_vs_confusion_matches_numpy():
  rng = np.random.default_rng(1)
  s = rng.uniform(0, 1, (6, 6))
  confusion = rng.integers(0, 9, (6, 6))
  confusion[2] = 0  # an absent class
  x, y, rho = report.similarity_vs_confusion(s, confusion)
  want_x, want_y = [], []
  for i in range(6):
    for j in range(6):
      if i != j and i != 2:
        want_x.append(s[i, j])
        want_y.append(confusion[i, j] / confusion[i].sum())
  np.testing.assert_allclose(x, want_x)
  np.testing.assert_allclose(y, want_y)
  rx, ry = _ranks(np.asarray(want_x)), _ranks(np.asarray(want_y))
  want_rho = np.corrcoef(rx, ry)[0, 1]
  assert rho == pytest.approx(want_rho, abs=1e-12)


def test_gls_evolution_follows_algorithm_2():
  rng = np.random.default_rng(2)
  reps = rng.uniform(0, 1, (5, 12))
  s = reference.similarity(reps, "cosine")
  epochs, curves = report.gls_evolution(
    s, [3], num_soft_epochs=4, final_confidence=0.99, neighbours=2
  )
  shown, values = curves[3]
  assert list(epochs) == [0, 1, 2, 3, 4, 5]
  others = [c for c in np.argsort(-s[3]) if c != 3][:2]
  assert shown == [3] + [int(c) for c in others]
  for e in epochs:
    row = reference.algorithm2_gls(s, e + 1, step=4)[3]
    np.testing.assert_allclose(values[e, :3], row[shown], atol=1e-6)
    np.testing.assert_allclose(values[e, 3], 1 - row[shown].sum(), atol=1e-6)
  np.testing.assert_allclose(values[-1], [1, 0, 0, 0], atol=1e-7)


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(
  num=st.integers(3, 9),
  seed=st.integers(0, 2**16),
  ties=st.booleans(),
)
def test_prototype_agreement_matches_numpy(num, seed, ties):
  """Pearson and Spearman of the i != j entries, from float64 sums and the
  tie-averaged ranks above; rounding to 0.1 makes ties."""
  rng = np.random.default_rng(seed)
  a, b = rng.uniform(0, 1, (2, num, num))
  if ties:
    a, b = np.round(a, 1), np.round(b, 1)
  got = report.prototype_agreement(a, b)
  x = np.array([a[i, j] for i in range(num) for j in range(num) if i != j])
  y = np.array([b[i, j] for i in range(num) for j in range(num) if i != j])
  assert got["pairs"] == num * (num - 1)
  assert got["max_abs_difference"] == pytest.approx(np.abs(x - y).max())
  if np.ptp(x) == 0 or np.ptp(y) == 0:
    assert np.isnan(got["pearson"]) and np.isnan(got["spearman"])
    return

  def pearson(u, v):
    u, v = u - u.mean(), v - v.mean()
    return (u * v).sum() / np.sqrt((u * u).sum() * (v * v).sum())

  assert got["pearson"] == pytest.approx(pearson(x, y), abs=1e-12)
  assert got["spearman"] == pytest.approx(
    pearson(_ranks(x), _ranks(y)), abs=1e-12
  )


def test_prototype_report_compares_and_overlays(shared, tmp_path):
  """--compare: the other prototype is matched by class name (a copy with
  its classes shuffled and its entries perturbed gives the agreement of the
  unshuffled arrays); --images/--label_maps: the overlay figure. The CLI
  prints the agreement."""
  from conftest import PROTOTYPES, SASNET

  from scenejax import prototype

  names = prototype.read_class_names(SASNET / "MITIndoor67_scene_names.txt")
  proto = prototype.load_prototype(
    PROTOTYPES / "MIT67_SP_cosine.npz", class_names=names
  )
  s = proto.similarity
  rng = np.random.default_rng(4)
  noisy = np.clip(s + rng.normal(0, 0.05, s.shape), 0, 1)
  noisy = (noisy + noisy.T) / 2
  np.fill_diagonal(noisy, 1.0)
  perm = rng.permutation(len(names))
  this, other = tmp_path / "this.npz", tmp_path / "other.npz"
  prototype.save_prototype(this, prototype.Prototype(s, "cosine", tuple(names)))
  prototype.save_prototype(
    other,
    prototype.Prototype(
      noisy[np.ix_(perm, perm)], "cosine", tuple(names[i] for i in perm)
    ),
  )
  images, maps = tmp_path / "images", tmp_path / "maps"
  images.mkdir()
  maps.mkdir()
  for k, (h, w) in enumerate([(48, 64), (40, 40), (30, 50)]):
    Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(
      images / f"{k}.jpg"
    )
    if k < 2:  # the third image has no map: left out
      ids = rng.integers(0, 151, (h, w)).astype(np.uint8)
      Image.fromarray(ids).save(maps / f"{k}.png")
  proc = run_cli(
    "scenejax.report",
    f"--prototype={this}",
    f"--compare={other}",
    "--compare_label=ground truth",
    f"--images={images}",
    f"--label_maps={maps}",
    f"--out={tmp_path / 'report'}",
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  want = report.prototype_agreement(s, noisy)
  assert 0.5 < want["pearson"] < 0.999
  assert f"Pearson r = {want['pearson']:.4f}" in proc.stdout
  assert f"Spearman rho = {want['spearman']:.4f}" in proc.stdout
  out = tmp_path / "report"
  for name in ("prototype_comparison.png", "overlays.png"):
    _assert_png(out / name)
  text = open(out / "report.html", encoding="utf-8").read()
  assert "Against ground truth" in text and "0.jpg" in text
  assert "2.jpg" not in text
  assert_user_error(
    run_cli(
      "scenejax.report",
      f"--prototype={this}",
      f"--images={images}",
      f"--label_maps={tmp_path / 'nothing'}",
      f"--out={tmp_path / 'r2'}",
    ),
    "holds no map of the images",
  )
