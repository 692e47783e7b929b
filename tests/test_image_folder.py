"""Your own images as a dataset (`config.dataset = "image_folder"`): the
listing, the held-out split, the errors, and the documented journey
(prototype -> train -> kill -9 and resume -> evaluate -> export -> predict)
through the command lines, on folders of real JPEG files the tests write."""

import hashlib
import json
import os
import time

import numpy as np
import pytest
from conftest import REPO, assert_user_error, kill_at_first_checkpoint, run_cli
from PIL import Image

from scenejax import datasets
from scenejax.datasets import synthetic
from scenejax.errors import ConfigError, DatasetError


def write_folder(root, splits=("train", "test"), per_class=(12, 4), size=40):
  """The synthetic scenes as DIR/SPLIT/CLASS/IMAGE JPEGs (upscaled from 32
  px, so the pipeline resizes), one class folder per scene class."""
  spec, train, test = synthetic.load(
    train_per_class=per_class[0], test_per_class=per_class[1]
  )
  for split, data in zip(("train", "test"), (train, test)):
    if split not in splits:
      continue
    for i, (image, label) in enumerate(zip(data.images, data.labels)):
      folder = root / split / spec.class_names[label]
      folder.mkdir(parents=True, exist_ok=True)
      Image.fromarray(image).resize((size, size), Image.BILINEAR).save(
        folder / f"{i:05d}.jpg", quality=92
      )
  return spec


def test_listing_matches_the_folders(tmp_path):
  spec = write_folder(tmp_path)
  (tmp_path / "train" / spec.class_names[0] / "notes.txt").write_text("x")
  (tmp_path / "train" / spec.class_names[0] / ".hidden.jpg").write_bytes(b"")
  data = datasets.load("image_folder", image_folder=str(tmp_path))
  assert data.class_names == tuple(sorted(spec.class_names))
  assert (len(data.train), len(data.test)) == (8 * 12, 8 * 4)
  # Each record: the file's own bytes, its class from its folder.
  for source in (data.train, data.test):
    for i in (0, len(source) // 2, len(source) - 1):
      record = source[i]
      folder = os.path.basename(os.path.dirname(record["name"]))
      assert data.class_names[record["label"]] == folder
      with open(record["name"], "rb") as f:
        assert record["image"] == f.read()
  assert data.split_record == dict(
    image_folder=str(tmp_path),
    classes=8,
    eval_split="test",
    train_images=96,
    test_images=32,
  )


def test_held_out_split_is_stratified_seeded_and_stable(tmp_path):
  write_folder(tmp_path, splits=("train",), per_class=(20, 1))
  a = datasets.load("image_folder", image_folder=str(tmp_path), holdout=0.25)
  b = datasets.load("image_folder", image_folder=str(tmp_path), holdout=0.25)
  other = datasets.load(
    "image_folder", image_folder=str(tmp_path), holdout=0.25, holdout_seed=1
  )
  assert a.test.paths == b.test.paths != other.test.paths
  assert not set(a.test.paths) & set(a.train.paths)
  assert len(a.train) + len(a.test) == 160
  # 5 of each class's 20 images: stratified.
  assert np.bincount(a.test.labels()).tolist() == [5] * 8
  # Independently: per class, the 5 names of smallest blake2b(seed:relpath).
  root = tmp_path / "train"
  expected = []
  for name in a.class_names:
    files = sorted(os.listdir(root / name))
    key = lambda f: hashlib.blake2b(
      f"0:{name}/{f}".encode(), digest_size=8
    ).digest()
    expected += [str(root / name / f) for f in sorted(files, key=key)[:5]]
  assert sorted(a.test.paths) == sorted(expected)
  assert a.split_record["held_out"] == sorted(
    os.path.relpath(p, root) for p in expected
  )


def test_folder_errors_name_the_folder(tmp_path):
  with pytest.raises(DatasetError, match="does not exist"):
    datasets.load("image_folder", image_folder=str(tmp_path / "nowhere"))
  with pytest.raises(DatasetError, match="has no train/ folder"):
    datasets.load("image_folder", image_folder=str(tmp_path))
  write_folder(tmp_path, splits=("train",), per_class=(3, 1))
  (tmp_path / "train" / "empty_class").mkdir()
  with pytest.raises(DatasetError, match="empty_class holds no images"):
    datasets.load("image_folder", image_folder=str(tmp_path))
  (tmp_path / "train" / "empty_class").rmdir()
  with pytest.raises(DatasetError, match="no test/ or val/ folder"):
    datasets.load("image_folder", image_folder=str(tmp_path), holdout=0.0)
  (tmp_path / "val" / "not_a_train_class").mkdir(parents=True)
  with pytest.raises(DatasetError, match="not_a_train_class.*not a class"):
    datasets.load("image_folder", image_folder=str(tmp_path))


def test_listing_100000_files_streams(tmp_path):
  """The listing of 100,000 files (50 classes x 2,000): names only, no file
  opened; printed for the docs. Nothing is decoded or held but the names."""
  root = tmp_path / "train"
  for c in range(50):
    folder = root / f"class_{c:02d}"
    folder.mkdir(parents=True)
    for i in range(2000):
      (folder / f"{i:05d}.jpg").touch()
  start = time.perf_counter()
  data = datasets.load("image_folder", image_folder=str(tmp_path))
  seconds = time.perf_counter() - start
  assert len(data.train) + len(data.test) == 100_000
  assert len(data.test) == 50 * 200
  print(f"listed and split 100,000 files in {seconds:.2f} s")


def _journey_config(folder):
  return (
    "--config=configs/image_folder.py:ce,tiny",
    f"--config.data.image_folder={folder}",
    "--config.num_epochs=2",
    "--config.progress_bar=False",
  )


_RUN = """
import sys
sys.path.insert(0, {repo!r})
from configs import image_folder
from scenejax.training import loop
config = image_folder.get_config("ce,tiny")
config.data.image_folder = {folder!r}
config.num_epochs = 2
config.progress_bar = False
loop.train_and_evaluate(config, sys.argv[1])
"""


@pytest.mark.slow
def test_training_skips_bad_files_resumes_and_refuses_a_changed_folder(
  tmp_path,
):
  """The documented training command on a generated folder names and skips
  a corrupt image; a run killed with SIGKILL resumes to the uninterrupted
  run's parameters bit for bit; a later run on a folder whose splits
  changed is refused. (Evaluate, export and predict on an image-folder run:
  the docs' page, tests/test_docs.py.)"""
  import test_trainer

  folder = tmp_path / "scenes"
  write_folder(folder, per_class=(8, 2))
  bad = folder / "train" / "scene_a1" / "zz_corrupt.jpg"
  bad.write_bytes(b"not a jpeg")
  run = tmp_path / "run"
  proc = run_cli("scenejax.main", *_journey_config(folder), f"--workdir={run}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "zz_corrupt.jpg" in proc.stderr  # named, skipped
  results = json.loads((run / "results.json").read_text())
  assert results["epoch"] == 2 and results["num_examples"] == 16
  record = json.loads((run / "dataset_split.json").read_text())
  assert record["train_images"] == 65 and record["image_folder"] == str(folder)

  killed = tmp_path / "killed"
  script = _RUN.format(repo=str(REPO), folder=str(folder))
  kill_at_first_checkpoint(script, str(killed))
  proc = run_cli(
    "scenejax.main", *_journey_config(folder), f"--workdir={killed}"
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  test_trainer._assert_same_params(str(killed), str(run))

  # Another image in train/: the workdir's split record refuses it.
  Image.new("RGB", (40, 40)).save(folder / "train" / "scene_a1" / "new.jpg")
  proc = run_cli(
    "scenejax.main",
    *_journey_config(folder),
    "--config.num_epochs=3",
    f"--workdir={run}",
  )
  assert_user_error(proc, "dataset_split.json", "train_images = 65")


def test_config_needs_the_folder():
  from configs import image_folder as recipe
  from scenejax import config_lib

  config = recipe.get_config("ce,tiny")
  config.data.image_folder = ""
  with pytest.raises(ConfigError, match="config.data.image_folder = ''"):
    config_lib.validate(config)


@pytest.mark.slow
def test_one_command_prototype_from_a_folder_trains(tmp_path):
  """`prototype build --images=DIR/train --segmenter=...` on a generated
  folder with a random-init segmenter: the prototype equals the literal
  Algorithm 1 over the segmenter's own maps of the decoded files (classes
  from the folder names); a run then trains with it (GLS + BCL)."""
  import reference
  from test_segment import SEGMENTER, _direct_label_maps, save_random_segmenter

  from scenejax import prototype, segment

  checkpoint = save_random_segmenter(tmp_path / "segmenter")
  folder = tmp_path / "scenes"
  write_folder(folder, splits=("train", "test"), per_class=(3, 1), size=32)
  out = tmp_path / "scenes_cosine.npz"
  proc = run_cli(
    "scenejax.prototype",
    "build",
    f"--images={folder / 'train'}",
    f"--segmenter={SEGMENTER}",
    f"--init_from={checkpoint}",
    "--size=32",
    "--batch_size=8",
    f"--out={out}",
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert not os.path.exists(str(out) + ".partial")
  built = prototype.load_prototype(out)

  model = segment.load_segmenter(SEGMENTER, checkpoint)  # inference mode
  names = sorted(os.listdir(folder / "train"))
  maps, labels = [], []
  for c, name in enumerate(names):
    for file in sorted(os.listdir(folder / "train" / name)):
      with Image.open(folder / "train" / name / file) as image:
        pixels = np.asarray(image.convert("RGB"))
      maps.append(_direct_label_maps(model, pixels[None])[0])
      labels.append(c)
  reps = reference.algorithm1_class_representation(maps, labels, 8, 150)
  assert list(built.class_names) == names
  np.testing.assert_allclose(built.representation, reps, atol=1e-6)
  np.testing.assert_allclose(
    built.similarity, reference.similarity(reps, "cosine"), atol=1e-5
  )

  proc = run_cli(
    "scenejax.main",
    "--config=configs/image_folder.py:tiny",
    f"--config.data.image_folder={folder}",
    f"--config.prototype.path={out}",
    "--config.num_epochs=1",
    "--config.data.resize_size=32",
    f"--workdir={tmp_path / 'run'}",
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  assert "train_bcl" in results and results["epoch"] == 1
