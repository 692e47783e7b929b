"""The multi-label demo end to end: SADCL learns object presence on the
synthetic scenes (mAP against the constant predictor, scikit-learn's AP),
and its predicted presence builds a scene prototype that agrees with the
one from the ground-truth label maps (float64 reference), from the
workdir, the export and the command line alike."""

import json

import numpy as np
import pytest
from conftest import run_cli

from scenejax import datasets, export, prototype
from scenejax.errors import ConfigError
from scenejax.prototype import presence
from scenejax.training import checkpoints, loop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
  from configs import demo_multilabel

  config = demo_multilabel.get_config()
  config.data.update(train_per_class=80, test_per_class=30)
  config.num_epochs = 4
  config.progress_bar = False
  workdir = tmp_path_factory.mktemp("ml") / "run"
  result = loop.train_and_evaluate(config, str(workdir))
  return config, workdir, result


def _ground_truth_representation(data):
  """Algorithm 1 in float64 loops: per class, the fraction of its training
  images whose label map contains each object."""
  spec = data.spec
  rep = np.zeros((spec.num_classes, spec.num_semantic_classes))
  counts = np.zeros(spec.num_classes)
  for label_map, c in zip(data.train.label_maps, data.train.labels):
    for obj in set(label_map.ravel().tolist()) - {0}:
      rep[c, obj - 1] += 1
    counts[c] += 1
  return rep / counts[:, None]


def _cosine(rep):
  unit = rep / np.linalg.norm(rep, axis=1, keepdims=True)
  return unit @ unit.T


def _off_diagonal(matrix):
  return matrix[~np.eye(len(matrix), dtype=bool)]


def test_demo_learns_presence_beyond_the_constant_predictor(demo_run):
  from sklearn.metrics import average_precision_score

  config, workdir, result = demo_run
  data = datasets.multilabel_from_config(config)
  targets = data.test.labels()
  # The constant predictor: every image the same scores; its AP per label
  # is the label's frequency (all images tie).
  constant = np.mean(
    [
      average_precision_score(targets[:, k], np.full(len(targets), 0.5))
      for k in range(targets.shape[1])
      if targets[:, k].any()
    ]
  )
  assert constant < 0.25
  assert result["mAP"] > constant + 0.3, (result["mAP"], constant)
  confusion = np.asarray(result["confusion"])
  assert confusion.shape == (32, 2, 2)
  np.testing.assert_array_equal(confusion.sum(axis=2)[:, 1], targets.sum(0))
  assert len(result["per_class_ap"]) == 32
  saved = json.loads((workdir / "results.json").read_text())
  assert saved["mAP"] == result["mAP"]
  best = checkpoints.best_step(checkpoints.directory(str(workdir)))
  history = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  best_row = max(history, key=lambda row: row["mAP"])
  assert best == best_row["epoch"] * (len(data.train) // config.batch_size)
  # The evaluate command scores the best checkpoint as training did.
  from scenejax import evaluate, report

  scored = evaluate.evaluate_workdir(str(workdir))
  assert scored["step"] == best
  np.testing.assert_allclose(scored["mAP"], best_row["mAP"], rtol=1e-6)
  figures = report.workdir_report(str(workdir))
  assert set(figures) == {"curves", "label_ap", "html"}


def test_presence_prototype_agrees_with_the_ground_truth(demo_run, tmp_path):
  config, workdir, _ = demo_run
  data = datasets.from_config(config)
  truth = _cosine(_ground_truth_representation(data))
  built = {}
  for mode in ("thresholded", "expected"):
    out = tmp_path / f"{mode}.npz"
    proto, stats = presence.build_for_dataset(
      data,
      dataset="synthetic_scenes",
      presence_model=str(workdir),
      out=str(out),
      metric="cosine",
      mode=mode,
      batch_size=64,
      progress=False,
    )
    assert stats["images"] == len(data.train) and out.exists()
    assert not (tmp_path / f"{mode}.npz.partial").exists()
    assert proto.semantic_class_names == data.spec.semantic_class_names
    r = np.corrcoef(_off_diagonal(proto.similarity), _off_diagonal(truth))
    assert r[0, 1] > 0.8, (mode, r[0, 1])
    built[mode] = proto
  # Thresholded presence is Algorithm 1's binary s: the representation of
  # a class is a fraction of its images.
  rep = (
    built["thresholded"].representation
    * built["thresholded"].image_counts[:, None]
  )
  np.testing.assert_allclose(rep, np.round(rep), atol=1e-9)

  # The export predicts the same presence as the workdir it came from.
  exported = tmp_path / "export"
  description = export.export(str(workdir), str(exported))
  assert description["task"] == "multilabel"
  from_export, _ = presence.build_for_dataset(
    data,
    dataset="synthetic_scenes",
    presence_model=str(exported),
    out=str(tmp_path / "from_export.npz"),
    metric="cosine",
    batch_size=64,
    progress=False,
  )
  np.testing.assert_array_equal(
    from_export.representation, built["thresholded"].representation
  )

  # The command line: the same file.
  proc = run_cli(
    "scenejax.prototype",
    "build",
    "--dataset=synthetic_scenes",
    f"--presence_model={workdir}",
    f"--out={tmp_path / 'cli.npz'}",
    "--batch_size=64",
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "thresholded presence" in proc.stdout
  # --dataset=synthetic_scenes: the default rendering, 150 images a class.
  cli = prototype.load_prototype(tmp_path / "cli.npz")
  default = datasets.load("synthetic_scenes")
  default_truth = _ground_truth_representation(default)
  np.testing.assert_array_equal(cli.image_counts, np.full(8, 150))
  r = np.corrcoef(
    _off_diagonal(cli.similarity), _off_diagonal(_cosine(default_truth))
  )
  assert r[0, 1] > 0.8
  # The ground-truth side of that comparison, by the same command.
  proc = run_cli(
    "scenejax.prototype",
    "build",
    "--dataset=synthetic_scenes",
    f"--out={tmp_path / 'gt.npz'}",
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  gt = prototype.load_prototype(tmp_path / "gt.npz")
  np.testing.assert_allclose(gt.representation, default_truth, atol=1e-12)
  assert gt.semantic_class_names == default.spec.semantic_class_names
  bad = run_cli(
    "scenejax.prototype",
    "build",
    "--dataset=synthetic_scenes",
    f"--presence_model={tmp_path}",
    f"--out={tmp_path / 'bad.npz'}",
  )
  assert bad.returncode == 2 and "Traceback" not in bad.stderr
  assert "neither a training workdir" in bad.stderr


def test_presence_model_refuses_other_tasks(tmp_path):
  (tmp_path / "checkpoints").mkdir()
  (tmp_path / "config.json").write_text(
    json.dumps({"task": "segmentation", "model": "x", "init_from": ""})
  )
  with pytest.raises(ConfigError, match="is a segmentation run"):
    presence.load_presence_model(str(tmp_path))
