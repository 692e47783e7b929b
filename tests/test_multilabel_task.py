"""The multi-label task: presence labels of every dataset against
independent readings of their records, the step's loss composition, the
EMA prototypes and the per-label confusion against float64 / scikit-learn
references, and the config checks."""

import dataclasses
import functools
import io
import types

import hypothesis
import hypothesis.strategies as st
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from scenejax import config_lib, datasets, tasks
from scenejax import metrics as metrics_lib
from scenejax.datasets import common
from scenejax.datasets import multilabel as ml_data
from scenejax.errors import ConfigError, DatasetError
from scenejax.models import sadcl
from scenejax.tasks import multilabel


def _png(array):
  out = io.BytesIO()
  Image.fromarray(np.asarray(array, np.uint8)).save(out, format="PNG")
  return out.getvalue()


# ----------------------------------------------------------------------------
# Presence labels.


def test_synthetic_presence_is_the_set_of_ids_in_each_map():
  data = ml_data.load(
    "synthetic_scenes",
    synthetic_options=dict(train_per_class=3, test_per_class=1),
  )
  assert data.class_names == tuple(f"object_{i:02d}" for i in range(1, 33))
  for split in (data.train, data.test):
    raw = split._split
    for i in range(len(split)):
      want = np.zeros(32, np.uint8)
      for obj in set(raw.label_maps[i].ravel().tolist()) - {0}:
        want[obj - 1] = 1
      record = split[i]
      np.testing.assert_array_equal(record["label"], want)
      assert set(record) == {"image", "label"}  # arrays only: no decoding
    np.testing.assert_array_equal(
      split.labels(), np.stack([split[i]["label"] for i in range(len(split))])
    )


def test_presence_from_label_map_ignores_unlabeled_and_foreign_ids():
  label_map = np.array([[0, 3, 3], [150, 151, 255]])
  got = ml_data.presence_from_label_map(label_map, 150)
  assert got.dtype == np.uint8 and got.shape == (150,)
  assert np.flatnonzero(got).tolist() == [2, 149]
  with pytest.raises(DatasetError, match=r"label index 20 outside \[0, 20\)"):
    ml_data.presence_from_indices([3, 20], 20)


def test_voc_and_coco_records_in_tfds_form():
  """TFDS's voc/2007 record: "labels" (every object, difficult ones
  included), beside "labels_no_difficult"; coco/2014: objects/label."""
  voc = {
    "labels": np.array([14, 8, 14, 3]),
    "labels_no_difficult": np.array([14, 3]),
  }
  got = ml_data.voc_presence(voc)
  assert {k: int(got[k]) for k in np.flatnonzero(got)} == {
    3: 1,
    8: ml_data.DIFFICULT,  # only a difficult object: left out of evaluation
    14: 1,  # a difficult and a clear one: an ordinary positive
  }
  coco = {"objects": {"label": np.array([0, 79, 0], np.int64)}}
  assert np.flatnonzero(ml_data.coco_presence(coco)).tolist() == [0, 79]
  empty = {"objects": {"label": np.zeros((0,), np.int64)}}
  assert ml_data.coco_presence(empty).sum() == 0


class _FakeTfds:
  """Stands in for `datasets.TfdsSource` over coco/2014 or voc/2007
  records (what `tfds.data_source` yields, images encoded)."""

  splits: dict = {}

  def __init__(self, name, split, data_dir, *, registry_name):
    self.records = self.splits[split]
    label = types.SimpleNamespace(names=[f"c{i}" for i in range(80)])
    voc_label = types.SimpleNamespace(names=[f"v{i}" for i in range(20)])
    features = {
      "objects": {"label": label},
      "labels": types.SimpleNamespace(feature=voc_label),
    }
    self.builder = types.SimpleNamespace(
      info=types.SimpleNamespace(features=features), data_dir=data_dir
    )
    self.split = split

  def __len__(self):
    return len(self.records)

  def raw(self, i):
    return self.records[i]

  def image_and_name(self, i):
    return self.records[i]["image"], f"{self.split}[{i}]"


def test_coco_and_voc_loading_join_splits_drop_unlabeled_and_cache(
  tmp_path, monkeypatch
):
  image = _png(np.zeros((4, 4, 3)))

  def coco(labels):
    return {"image": image, "objects": {"label": np.array(labels, np.int64)}}

  _FakeTfds.splits = {
    "train": [coco([1, 2]), coco([]), coco([79])],
    "validation": [coco([]), coco([5])],
  }
  monkeypatch.setattr(datasets, "TfdsSource", _FakeTfds)
  data = ml_data.load("coco2014", data_dir=str(tmp_path))
  assert len(data.class_names) == 80 and data.class_names[79] == "c79"
  assert [data.train[i]["name"] for i in range(2)] == ["train[0]", "train[2]"]
  np.testing.assert_array_equal(np.flatnonzero(data.train.labels()[1]), [79])
  assert len(data.test) == 1 and data.test[0]["label"][5] == 1
  assert (tmp_path / "presence-train.npy").exists()  # cached beside data
  kept = ml_data.load("coco2014", data_dir=str(tmp_path), drop_unlabeled=False)
  assert len(kept.train) == 3 and kept.train[1]["label"].sum() == 0

  def voc(labels):
    labels = np.array(labels, np.int64)
    return {"image": image, "labels": labels, "labels_no_difficult": labels}

  voc_dir = tmp_path / "voc"
  voc_dir.mkdir()
  _FakeTfds.splits = {
    "train": [voc([0]), voc([3, 3])],
    "validation": [voc([19])],
    "test": [voc([7])],
  }
  data = ml_data.load("voc2007", data_dir=str(voc_dir))
  assert len(data.train) == 3  # train + validation
  assert data.train[2]["name"] == "validation[0]"
  np.testing.assert_array_equal(
    [np.flatnonzero(r).tolist() for r in data.train.labels()],
    [[0], [3], [19]],
  )


def test_multilabel_only_datasets_refuse_the_scene_tasks():
  with pytest.raises(DatasetError, match="object labels, not scene labels"):
    datasets.load("voc2007")
  config = config_lib.base()
  config.dataset = "coco2014"
  with pytest.raises(ConfigError, match="set config.task = 'multilabel'"):
    config_lib.validate(config)
  config.task = "multilabel"
  config.model = "deeplabv3plus_resnet50"
  with pytest.raises(ConfigError, match="config.model = 'deeplabv3plus"):
    config_lib.validate(config)
  config.model = "resnet50"
  config.multilabel.num_heads = 3
  with pytest.raises(ConfigError, match="multiple of config.multilabel.num"):
    config_lib.validate(config)
  config.multilabel.num_heads = 8
  config.dataset = "sun397"
  with pytest.raises(ConfigError, match="config.dataset = 'sun397'"):
    config_lib.validate(config)
  config.dataset = "voc2007"
  config.multilabel.prototypes = "fixed"
  with pytest.raises(ConfigError, match="prototypes = 'fixed'; allowed"):
    config_lib.validate(config)


# ----------------------------------------------------------------------------
# The step's pieces.


def _loss_cfg(**overrides):
  config = config_lib.base()
  config.multilabel.update(overrides)
  return multilabel.MultilabelLoss.from_config(config)


def test_loss_terms_compose_bce_and_the_weighted_contrastive_terms():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(4, 5))
  targets = (rng.random((4, 5)) < 0.5).astype(np.float64)
  reps = rng.normal(size=(4, 5, 8))
  protos = rng.normal(size=(5, 8))
  cfg = _loss_cfg(classification_loss="bce", sscl_weight=0.5, pscl_weight=2.0)
  terms = multilabel.loss_terms(
    jnp.asarray(logits, jnp.float32),
    jnp.asarray(reps, jnp.float32),
    jnp.asarray(targets, jnp.float32),
    jnp.asarray(protos, jnp.float32),
    cfg,
  )
  p = 1 / (1 + np.exp(-logits))
  bce = -(targets * np.log(p) + (1 - targets) * np.log(1 - p)).sum(1).mean()
  np.testing.assert_allclose(float(terms["cls"]), bce, rtol=1e-5)
  from scenejax import losses

  sscl = losses.label_contrastive_loss(reps, targets, temperature=0.1)
  pscl = losses.prototype_contrastive_loss(reps, targets, protos)
  np.testing.assert_allclose(float(terms["sscl"]), 0.5 * sscl, rtol=1e-5)
  np.testing.assert_allclose(float(terms["pscl"]), 2.0 * pscl, rtol=1e-5)
  off = multilabel.loss_terms(
    logits, reps, targets, protos, _loss_cfg(sscl_weight=0.0, pscl_weight=0)
  )
  assert set(off) == {"cls"}


def _ema_reference(p, r, y, m):
  p = np.array(p, np.float64)
  for k in range(p.shape[0]):
    rows = [r[i, k] / np.linalg.norm(r[i, k]) for i in range(len(r)) if y[i, k]]
    if rows:
      p[k] = m * p[k] + (1 - m) * np.mean(rows, axis=0)
  return p


@hypothesis.given(
  b=st.integers(1, 5),
  k=st.integers(1, 5),
  m=st.floats(0.0, 1.0),
  seed=st.integers(0, 2**16),
)
def test_ema_prototypes_match_float64_loop(b, k, m, seed):
  rng = np.random.default_rng(seed)
  p = rng.normal(size=(k, 6))
  r = rng.normal(size=(b, k, 6))
  y = (rng.random((b, k)) < 0.5).astype(np.float32)
  got = sadcl.ema_prototypes(
    jnp.asarray(p, jnp.float32), jnp.asarray(r, jnp.float32), jnp.asarray(y), m
  )
  np.testing.assert_allclose(got, _ema_reference(p, r, y, m), atol=1e-5)


def test_confusion_counts_match_scikit_learn():
  from sklearn.metrics import multilabel_confusion_matrix

  rng = np.random.default_rng(3)
  scores = rng.random((40, 6))
  targets = (rng.random((40, 6)) < 0.3).astype(np.uint8)
  got = metrics_lib.multilabel_confusion(scores, targets, 0.4)
  want = multilabel_confusion_matrix(targets, (scores >= 0.4).astype(int))
  np.testing.assert_array_equal(got, want)


def test_loss_config_has_no_defaults_of_its_own():
  assert all(
    f.default is dataclasses.MISSING
    for f in dataclasses.fields(multilabel.MultilabelLoss)
  )


def test_presence_cache_of_another_shape_names_the_file(tmp_path):
  path = tmp_path / "presence-train.npy"
  np.save(path, np.zeros((3, 4), np.uint8))
  with pytest.raises(
    DatasetError, match=r"presence-train.npy: cached .*delete"
  ):
    common.cached_array(str(path), None, (5, 4))
  path.write_bytes(b"junk")
  with pytest.raises(DatasetError, match=r"presence-train.npy: unreadable"):
    common.cached_array(str(path), None, (5, 4))


def test_ignored_pairs_leave_every_count_and_ap():
  """VOC's difficult pairs: AP from the kept images of each label
  (scikit-learn), precision/recall counts from float64 loops over the kept
  pairs; `split_metrics` reads them from the stored `DIFFICULT` targets."""
  from sklearn.metrics import average_precision_score

  rng = np.random.default_rng(5)
  scores = rng.random((30, 4))
  targets = (rng.random((30, 4)) < 0.4).astype(np.uint8)
  targets[:, 0] = 0
  targets[:3, 0] = 1  # label 0: three positives, two of them ignored below
  ignore = rng.random((30, 4)) < 0.2
  ignore[:3, 0] = [True, True, False]
  stored = np.where(ignore, ml_data.DIFFICULT, targets)
  got = metrics_lib.multilabel_metrics(scores, targets, ignore=ignore)
  keep = ~ignore
  want_ap = np.mean(
    [
      average_precision_score(targets[keep[:, k], k], scores[keep[:, k], k])
      for k in range(4)
      if targets[keep[:, k], k].any()
    ]
  )
  np.testing.assert_allclose(got["mAP"], want_ap, rtol=1e-12)
  correct = made = truth = 0
  for i in range(30):
    for k in range(4):
      if ignore[i, k]:
        continue
      hit = scores[i, k] >= 0.5
      correct += hit and targets[i, k] == 1
      made += hit
      truth += targets[i, k] == 1
  np.testing.assert_allclose(got["OP"], correct / made, rtol=1e-12)
  np.testing.assert_allclose(got["OR"], correct / truth, rtol=1e-12)
  # From stored targets: a DIFFICULT pair is neither positive nor counted.
  metrics, confusion = multilabel.split_metrics(scores, stored, 0.5)
  np.testing.assert_allclose(metrics["mAP"], want_ap, rtol=1e-12)
  assert confusion.sum() == keep.sum()
  np.testing.assert_allclose(
    metrics["per_class_ap"][0],
    average_precision_score(targets[keep[:, 0], 0], scores[keep[:, 0], 0]),
  )


@pytest.mark.slow
def test_ema_prototypes_follow_the_step_s_own_representations():
  """One jitted train step with `prototypes = "ema"`: the prototypes
  become the float64 EMA of the representations the step computed (from
  zero), the parameters train, and the prototypes stay outside the
  optimizer."""
  import jax
  from flax import nnx

  from configs import demo_multilabel
  from scenejax import input_pipeline
  from scenejax.training import optim

  config = demo_multilabel.get_config("ema")
  config.multilabel.update(dim=16, num_heads=2)
  graphdef, state = optim.create_train_state(
    tasks.build_model(config, 6), config, 10
  )
  model, optimizer = nnx.merge(graphdef, state)
  assert not np.any(np.asarray(model.prototypes[...]))  # from zero
  assert "prototypes" not in jax.tree.leaves_with_path(optimizer.opt_state)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, (8, 32, 32, 3), np.uint8)
  labels = (rng.random((8, 6)) < 0.4).astype(np.uint8)
  labels[0, 5] = ml_data.DIFFICULT  # trains as a positive
  x = input_pipeline.normalize(images, model.pixel_mean, model.pixel_std)
  reps = nnx.jit(lambda m, x: m.label_outputs(x)["representations"])(model, x)
  reps = np.asarray(reps, np.float64)
  before = jax.tree.map(np.array, nnx.state(model, nnx.Param))
  step = jax.jit(
    functools.partial(
      multilabel.train_step,
      graphdef,
      cfg=multilabel.MultilabelLoss.from_config(config),
      mean=model.pixel_mean,
      std=model.pixel_std,
    )
  )
  new_state, metrics = step(
    state, {"image": images, "label": labels}, 0.0, None
  )
  trained, _ = nnx.merge(graphdef, new_state)
  want = _ema_reference(np.zeros((6, 16)), reps, labels > 0, 0.99)
  np.testing.assert_allclose(trained.prototypes[...], want, atol=1e-5)
  after = nnx.state(trained, nnx.Param)
  assert "prototypes" not in after
  moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), before, after)
  assert max(jax.tree.leaves(moved)) > 0  # the parameters did train
  assert np.isfinite(float(metrics["loss"]))
