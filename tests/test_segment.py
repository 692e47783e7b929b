"""Segmenting: label maps, SAS-Net's top-3 files, the streaming prototype
build (and its resume after kill -9), mIoU.

The segmenter is a random-init transformers UperNet-ConvNeXt (atto
backbone, decoder width 32, 150 classes) saved with `save_pretrained`, so
the real loading path runs. References: the model called directly on the
same pixels (the pipeline's resize/pad/crop/write must not change a map),
the existing label-map route of `prototype build` (Algorithm 1 from PNGs),
and float64 loops for the metrics.
"""

import json
import os
import signal
import subprocess
import sys
import time
import types

import hypothesis
import jax.numpy as jnp
import numpy as np
import pytest
import reference as reference_lib
from conftest import REPO, assert_user_error, run_cli
from hypothesis import strategies as st
from PIL import Image
from test_models import _randomize

from scenejax import config_lib, datasets, prototype, segment
from scenejax import metrics as metrics_lib
from scenejax.datasets import synthetic
from scenejax.errors import ConfigError
from scenejax.tasks import classification
from scenejax.training import loop

SEGMENTER = "upernet_convnext_atto"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  return save_random_segmenter(tmp_path_factory.mktemp("segmenter"))


def save_random_segmenter(path):
  """A random-init transformers UperNet-ConvNeXt (atto widths) saved with
  `save_pretrained` in `path` (the test extra; skipped without it)."""
  transformers = pytest.importorskip("transformers")
  backbone = transformers.ConvNextConfig(
    depths=[2, 2, 6, 2],
    hidden_sizes=[40, 80, 160, 320],
    out_features=["stage1", "stage2", "stage3", "stage4"],
  )
  hf = _randomize(
    transformers.UperNetForSemanticSegmentation(
      transformers.UperNetConfig(
        backbone_config=backbone,
        hidden_size=32,
        auxiliary_in_channels=160,
        auxiliary_channels=32,
        num_labels=150,
      )
    )
  )
  hf.save_pretrained(path)
  return str(path)


@pytest.fixture(scope="module")
def model(checkpoint):
  """The checkpoint loaded once for the module (building a model compiles
  every initialiser: seconds on 2 cores)."""
  return segment.load_segmenter(SEGMENTER, checkpoint)


def _direct_label_maps(model, images):
  """argmax + 1 of the model called directly on normalised pixels (images
  already a multiple of 32: no resize, no padding)."""
  mean, std = np.array(model.pixel_mean), np.array(model.pixel_std)
  x = (images.astype(np.float32) / 255 - mean) / std
  return np.asarray(jnp.argmax(model(jnp.asarray(x, jnp.float32)), -1)) + 1


def _png(path):
  with Image.open(path) as image:
    return np.asarray(image)


def test_predictor_matches_direct_call_at_any_size(model):
  """Resize (shorter side 64), pad to 32, crop, nearest back to the
  original size: on an image already 64 x 96 nothing may change; a
  37 x 50 image comes back at 37 x 50 with ids 1..150 only."""
  predictor = segment.Predictor(
    model, batch_size=2, top_k=3, resize=segment.Resize(64)
  )
  rng = np.random.default_rng(0)
  exact = rng.integers(0, 256, (64, 96, 3), np.uint8)
  odd = rng.integers(0, 256, (37, 50, 3), np.uint8)
  results = predictor([exact, None, odd])
  assert results[1] is None
  ids, scores = results[0]
  np.testing.assert_array_equal(
    segment.label_map(ids), _direct_label_maps(model, exact[None])[0]
  )
  assert ids.shape == scores.shape == (64, 96, 3)
  assert np.all(scores[..., 0] >= scores[..., 1])
  assert np.all(scores[..., 1] >= scores[..., 2])
  odd_map = segment.label_map(results[2][0])
  assert odd_map.shape == (37, 50) and odd_map.min() >= 1
  assert odd_map.max() <= 150


def _mmseg_starts(length, window, stride):
  """mmsegmentation's slide_inference crop offsets along one axis."""
  grids = max(length - window + stride - 1, 0) // stride + 1
  starts = []
  for i in range(grids):
    end = min(i * stride + window, length)
    starts.append(max(end - window, 0))
  return starts


def test_sliding_window_averages_the_logits_of_overlapping_crops(model):
  """`window`: crops every `stride` (2/3 of the window by default), the last
  flush with the border, logits averaged where crops overlap, as
  mmsegmentation's slide mode; an image shorter than the window is padded
  with the mean colour first. Reference: the model on each crop, float64
  sums and counts."""
  from flax import nnx

  window, stride = 64, 42
  predictor = segment.Predictor(
    model,
    batch_size=2,
    top_k=2,
    resize=segment.Resize(80, max_size=160),
    window=window,
  )
  assert predictor.stride == stride
  rng = np.random.default_rng(3)
  # 80 x 120 (twice: one batch of two, so crops must stay with their
  # image): padded to 96 x 128, 2 x 3 crops; 24 x 160: padded to 32, then
  # to the window's 64 rows, 1 x 4 crops. All already at the resized size,
  # so no resampling enters the comparison.
  images = [
    rng.integers(0, 256, (80, 120, 3), np.uint8),
    rng.integers(0, 256, (24, 160, 3), np.uint8),
    rng.integers(0, 256, (80, 120, 3), np.uint8),
  ]
  results = predictor(images)
  mean, std = np.array(model.pixel_mean), np.array(model.pixel_std)
  canvases, corners = [], []
  for image in images:
    h, w = image.shape[:2]
    padded = (max(-(-h // 32) * 32, window), max(-(-w // 32) * 32, window))
    canvas = np.empty((*padded, 3), np.uint8)
    canvas[...] = np.round(mean * 255).astype(np.uint8)
    canvas[:h, :w] = image
    canvases.append((canvas.astype(np.float32) / 255 - mean) / std)
    corners.append(
      [
        (y, x0)
        for y in _mmseg_starts(canvas.shape[0], window, stride)
        for x0 in _mmseg_starts(canvas.shape[1], window, stride)
      ]
    )
  assert [len(c) for c in corners] == [6, 4, 6]
  crops = np.stack(
    [
      x[y : y + window, x0 : x0 + window]
      for x, cs in zip(canvases, corners)
      for y, x0 in cs
    ]
  )
  logits = nnx.jit(lambda m, x: m(x))(model, jnp.asarray(crops))
  logits = list(np.asarray(logits, np.float64))  # one call for all crops
  for image, x, cs, (ids, scores) in zip(images, canvases, corners, results):
    h, w = image.shape[:2]
    total = np.zeros((*x.shape[:2], logits[0].shape[-1]))
    count = np.zeros(x.shape[:2])
    for y, x0 in cs:
      total[y : y + window, x0 : x0 + window] += logits.pop(0)
      count[y : y + window, x0 : x0 + window] += 1
    assert count.min() >= 1 and count.max() >= 2
    mean_logits = (total / count[..., None])[:h, :w]
    p = np.exp(mean_logits - mean_logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    top = np.sort(p, -1)[..., ::-1]
    clear = top[..., 0] - top[..., 1] > 1e-4  # no near-tie at the top
    np.testing.assert_array_equal(ids[..., 0][clear], p.argmax(-1)[clear])
    np.testing.assert_allclose(scores, top[..., :2], atol=1e-5)
  with pytest.raises(ConfigError, match="stride"):
    segment.Predictor(model, window=64, stride=65)
  with pytest.raises(ConfigError, match="a stride needs a window"):
    segment.Predictor(model, stride=10)


@pytest.mark.slow
def test_images_folder_maps_and_sasnet_top3(checkpoint, tmp_path):
  """`--images`: one label map per image at its own size, nested folders
  kept; `--top3`: SAS-Net's files (ids 0-based, +1 = the label map;
  scores round(255 p), top-1 >= top-2 >= top-3); an undecodable file is
  skipped and counted; a rerun skips finished images."""
  images = tmp_path / "images"
  (images / "sub").mkdir(parents=True)
  rng = np.random.default_rng(1)
  Image.fromarray(rng.integers(0, 256, (40, 56, 3), np.uint8)).save(
    images / "a.jpg"
  )
  Image.fromarray(rng.integers(0, 256, (33, 33, 3), np.uint8)).save(
    images / "sub" / "b.png"
  )
  (images / "broken.jpg").write_bytes(b"not a jpeg")
  out = tmp_path / "maps"
  args = (
    f"--segmenter={SEGMENTER}",
    f"--init_from={checkpoint}",
    f"--images={images}",
    f"--out={out}",
    "--size=32",
    "--batch_size=2",
    "--top3",
  )
  proc = run_cli("scenejax.segment", *args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "wrote 2 label map(s)" in proc.stdout
  assert "1 undecodable image(s) skipped" in proc.stdout
  assert "broken.jpg" in proc.stderr
  for rel, shape in (("a.png", (40, 56)), ("sub/b.png", (33, 33))):
    labels = _png(out / rel)
    ids = _png(out / "noisy_annotations_RGB" / rel)
    scores = _png(out / "noisy_scores_RGB" / rel).astype(int)
    assert labels.shape == shape and ids.shape == scores.shape == (*shape, 3)
    np.testing.assert_array_equal(ids[..., 0].astype(int) + 1, labels)
    assert np.all(scores[..., 0] >= scores[..., 1])
    assert np.all(scores[..., 1] >= scores[..., 2])
    assert len({tuple(p) for p in ids.reshape(-1, 3) if len(set(p)) < 3}) == 0
  before = os.path.getmtime(out / "a.png")
  proc = run_cli("scenejax.segment", *args)
  assert proc.returncode == 0 and "wrote 0 label map(s)" in proc.stdout
  assert os.path.getmtime(out / "a.png") == before


def test_segmenter_errors_are_one_line(checkpoint, tmp_path):
  assert_user_error(
    run_cli(
      "scenejax.segment",
      "--segmenter=resnet50",
      f"--images={tmp_path}",
      f"--out={tmp_path / 'o'}",
    ),
    "--segmenter='resnet50' is not a segmenter",
  )
  assert_user_error(
    run_cli(
      "scenejax.segment",
      f"--segmenter={SEGMENTER}",
      f"--images={tmp_path / 'nope'}",
      f"--out={tmp_path / 'o'}",
    ),
    "nope: not a directory",
  )
  model = segment.load_segmenter(SEGMENTER, None, num_classes=19)
  with pytest.raises(Exception, match="19 classes, not ADE20K's 150"):
    segment.check_ade20k_output(model, None)
  segment.check_ade20k_output(model, "cityscapes_names.txt")


def test_checkpoint_label_names_in_id_order(checkpoint, tmp_path):
  """id2label as config.json stores it (string keys, "10" after "9"); the
  placeholder names transformers writes when none were given are no
  names."""
  assert segment.checkpoint_label_names(checkpoint) is None  # LABEL_i
  named = tmp_path / "named"
  named.mkdir()
  labels = {str(i): f"class{i}" for i in range(12)}
  (named / "config.json").write_text(json.dumps({"id2label": labels}))
  assert segment.checkpoint_label_names(str(named)) == [
    f"class{i}" for i in range(12)
  ]
  assert segment.checkpoint_label_names(None) is None


def _prototype_cli(*args):
  proc = run_cli("scenejax.prototype", "build", *args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


@pytest.mark.slow
def test_segment_build_and_kill9_resume_on_synthetic(
  checkpoint, model, tmp_path
):
  """The issue's whole path on the synthetic scenes (1,200 training images):
  segment -> PNGs equal to the model's own maps -> the prototype streamed
  from the segmenter (by the trainer's config.prototype.segmenter) equals
  the one built from those PNGs; a `prototype build --segmenter` killed
  with SIGKILL after it saved partial sums resumes to the same prototype."""
  maps = tmp_path / "maps"
  common = (
    f"--segmenter={SEGMENTER}",
    f"--init_from={checkpoint}",
    "--size=32",
  )
  proc = run_cli(
    "scenejax.segment",
    *common,
    "--dataset=synthetic_scenes",
    "--split=train",
    f"--out={maps}",
    "--batch_size=16",
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  _, train_split, _ = synthetic.load()
  for start in (0, 600, 1184):
    direct = _direct_label_maps(model, train_split.images[start : start + 16])
    for i, expected in enumerate(direct, start):
      np.testing.assert_array_equal(_png(maps / f"train/{i:08d}.png"), expected)

  from_pngs = tmp_path / "from_pngs.npz"
  _prototype_cli(
    f"--label_maps={maps}",
    f"--list={maps / 'train.txt'}",
    f"--class_names={maps / 'class_names.txt'}",
    "--label_format=ade20k",
    f"--out={from_pngs}",
  )
  # The trainer's config.prototype.segmenter: the same streamed build,
  # in-process, into WORKDIR/prototype.npz.
  config = config_lib.base()
  config.dataset, config.progress_bar = "synthetic_scenes", False
  config.data.image_size = 32  # as the CLI's synthetic_scenes
  config.prototype.update(
    segmenter=SEGMENTER, init_from=checkpoint, size=32, batch_size=8
  )
  config_lib.validate(config)
  data = datasets.from_config(config)
  assert len(data.train) == 1200
  workdir = tmp_path / "run"
  ours = classification.prototype_for(config, data, str(workdir))
  reference = prototype.load_prototype(from_pngs)
  assert ours.class_names == reference.class_names
  np.testing.assert_array_equal(ours.image_counts, reference.image_counts)
  np.testing.assert_allclose(ours.representation, reference.representation)
  np.testing.assert_allclose(ours.similarity, reference.similarity, atol=1e-7)
  saved = prototype.load_prototype(workdir / "prototype.npz")
  np.testing.assert_array_equal(saved.similarity, ours.similarity)
  assert not (workdir / "prototype.npz.partial").exists()
  # A later run of the workdir reuses the file, under another metric too
  # (Eq. 3-4 from the stored representations, float64 reference); other
  # segmenter settings are refused, not silently reused.
  reused = classification.prototype_for(config, data, str(workdir))
  np.testing.assert_array_equal(reused.similarity, ours.similarity)
  config.prototype.metric = "euclidean"
  other_metric = classification.prototype_for(config, data, str(workdir))
  np.testing.assert_allclose(
    other_metric.similarity,
    reference_lib.similarity(
      np.asarray(reference.representation, np.float64), "euclidean"
    ),
    atol=1e-6,
  )
  config.prototype.size = 64
  with pytest.raises(ConfigError, match="was not built by"):
    classification.prototype_for(config, data, str(workdir))

  # The one command: segment -> build -> train, through train_and_evaluate
  # (the build runs after the run's checks, under the workdir lock).
  from configs import demo

  run = demo.get_config()
  run.data.update(train_per_class=12, test_per_class=4)
  run.update(num_epochs=1, batch_size=32, eval_batch_size=16)
  run.progress_bar = False
  run.prototype.update(
    segmenter=SEGMENTER, init_from=checkpoint, size=32, batch_size=8
  )
  one_command = tmp_path / "one_command"
  result = loop.train_and_evaluate(run, str(one_command))
  assert result["epoch"] == 1
  built = prototype.load_prototype(one_command / "prototype.npz")
  assert int(built.image_counts.sum()) == 96  # 8 classes x 12 images
  record = json.loads((one_command / "prototype_build.json").read_text())
  assert record["segmenter"] == SEGMENTER and record["records"] == 96

  build = ("--dataset=synthetic_scenes", *common, "--batch_size=8")
  resumed = tmp_path / "resumed.npz"
  state = tmp_path / "resumed.npz.partial" / "process0-of-1.npz"
  argv = ["prototype", "build", *build, f"--out={resumed}"]
  child = subprocess.Popen(
    [sys.executable, "-m", "scenejax.prototype", *argv[1:], "--save_every_s=0"],
    cwd=REPO,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  try:
    deadline = time.monotonic() + 300
    position = 0
    while time.monotonic() < deadline and position < 100:
      time.sleep(0.2)
      if state.exists():
        try:
          with np.load(state) as saved:
            position = int(saved["position"])
        except (OSError, ValueError, KeyError):
          pass  # mid-rename: read again
    os.kill(child.pid, signal.SIGKILL)
  finally:
    child.wait()
  with np.load(state) as saved:
    assert 100 <= int(saved["position"]) < 1200
  proc = _prototype_cli(*build, f"--out={resumed}")
  assert "resuming the build" in proc.stderr
  again = prototype.load_prototype(resumed)
  np.testing.assert_array_equal(again.image_counts, ours.image_counts)
  np.testing.assert_array_equal(again.representation, ours.representation)
  np.testing.assert_array_equal(again.similarity, ours.similarity)


def test_partial_build_of_another_configuration_is_refused(tmp_path):
  from scenejax.prototype import segmented

  state_dir = tmp_path / "p.npz.partial"
  state_dir.mkdir()
  np.savez(
    segmented.state_file(str(state_dir)),
    fingerprint='{"size": 512}',
    presence_sums=np.zeros((8, 150), np.int64),
  )
  with pytest.raises(Exception, match="partial build of another configuration"):
    segmented.build_from_segmenter(
      types.SimpleNamespace(num_classes=150),
      [],
      ["a"] * 8,
      metric="cosine",
      state_dir=str(state_dir),
      fingerprint={"size": 256},
    )


# ----------------------------------------------------------------------------
# Metrics from exact confusion counts.


def _reference_metrics(predicted, truth, k):
  """float64 loops: IoU over labelled pixels, classes absent from the truth
  left out of the mean."""
  predicted, truth = predicted.ravel(), truth.ravel()
  labelled = truth > 0
  ious = []
  for c in range(1, k + 1):
    t, p = (truth == c) & labelled, (predicted == c) & labelled
    if t.sum() == 0:
      ious.append(np.nan)
      continue
    ious.append((t & p).sum() / float((t | p).sum()))
  accuracy = ((predicted == truth) & labelled).sum() / float(labelled.sum())
  return np.nanmean(ious), accuracy, ious


@hypothesis.given(
  seed=st.integers(0, 2**31 - 1),
  k=st.integers(1, 6),
  pixels=st.integers(1, 300),
)
def test_segmentation_metrics_match_loops(seed, k, pixels):
  rng = np.random.default_rng(seed)
  truth = rng.integers(0, k + 1, pixels)
  truth[0] = 1  # at least one labelled pixel
  predicted = rng.integers(1, k + 1, pixels)
  metrics = metrics_lib.segmentation_metrics(
    metrics_lib.segmentation_confusion(predicted, truth, k)
  )
  miou, accuracy, ious = _reference_metrics(predicted, truth, k)
  np.testing.assert_allclose(metrics["mIoU"], miou, rtol=1e-12)
  np.testing.assert_allclose(metrics["pixel_accuracy"], accuracy, rtol=1e-12)
  for ours, ref in zip(metrics["per_class_iou"], ious):
    assert (ours is None) == bool(np.isnan(ref))
    if ours is not None:
      np.testing.assert_allclose(ours, ref, rtol=1e-12)


@pytest.mark.slow
def test_evaluate_on_ade20k_scenes(checkpoint, tmp_path):
  """`--evaluate` on a prepared (fake) ade20k_scenes: the printed mIoU is
  the loops' mIoU of the maps `segment` writes for the same split."""
  from test_datasets import _ade20k_zip, _prepare

  from scenejax.datasets import ade20k_scenes

  manual = tmp_path / "manual"
  manual.mkdir()
  _ade20k_zip(manual, np.random.default_rng(0))
  _prepare(ade20k_scenes.Ade20kScenes, tmp_path / "tfds", manual)
  common = (
    f"--segmenter={SEGMENTER}",
    f"--init_from={checkpoint}",
    "--dataset=ade20k_scenes",
    f"--data_dir={tmp_path / 'tfds'}",
    "--size=32",
    "--batch_size=2",
  )
  proc = run_cli(
    "scenejax.segment", *common, "--evaluate", f"--out={tmp_path / 'e'}"
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  printed = proc.stdout

  result = json.loads((tmp_path / "e" / "segmentation_eval.json").read_text())
  proc = run_cli(
    "scenejax.segment", *common, "--split=test", f"--out={tmp_path / 'm'}"
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  from scenejax import datasets

  source = datasets.load("ade20k_scenes", data_dir=str(tmp_path / "tfds")).test
  predicted = np.concatenate(
    [
      _png(tmp_path / "m" / f"test/{i:08d}.png").ravel()
      for i in range(len(source))
    ]
  )
  truth = np.concatenate(
    [source.label_map(i).ravel() for i in range(len(source))]
  )
  miou, accuracy, _ = _reference_metrics(predicted, truth, 150)
  np.testing.assert_allclose(result["mIoU"], miou, rtol=1e-12)
  np.testing.assert_allclose(result["pixel_accuracy"], accuracy, rtol=1e-12)
  assert f"mIoU {100 * miou:.2f}" in printed
