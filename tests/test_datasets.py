"""Dataset builders on fake trees of real JPEG/PNG files, the registry, and
the decode/augment pipeline (determinism, exact resume, corrupt images)."""

import io
import os
import zipfile

import numpy as np
import pytest
from conftest import write_top3_files
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import scenejax.datasets as datasets
from scenejax import input_pipeline
from scenejax.datasets import common

tfds = pytest.importorskip("tensorflow_datasets")


def _jpeg(rng, h, w):
  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(
    buf, format="JPEG"
  )
  return buf.getvalue()


def _mit67_tree(root, rng, per_class=3, corrupt="airport_inside/img0.jpg"):
  from scenejax.datasets import mit67

  classes = list(mit67.CLASS_NAMES)
  train, test = [], []
  for c in classes:
    os.makedirs(root / "Images" / c)
    for j in range(per_class):
      rel = f"{c}/img{j}.jpg"
      (root / "Images" / rel).write_bytes(_jpeg(rng, 24 + j, 32))
      (train if j < per_class - 1 else test).append(rel)
  (root / "Images" / corrupt).write_bytes(b"not a jpeg")
  (root / "TrainImages.txt").write_text("\n".join(train) + "\n")
  (root / "TestImages.txt").write_text("\n".join(test) + "\n")
  return sorted(classes)


def _prepare(builder_cls, data_dir, manual_dir):
  builder = builder_cls(data_dir=str(data_dir))
  builder.download_and_prepare(
    file_format="array_record",
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
  )
  return builder


def test_mit67_builder(tmp_path):
  from scenejax.datasets import mit67

  rng = np.random.default_rng(0)
  classes = _mit67_tree(tmp_path / "manual", rng)
  builder = _prepare(mit67.Mit67, tmp_path / "tfds", tmp_path / "manual")
  assert builder.info.features["label"].names == classes
  # 67 x 2 train images, one corrupt one skipped; 67 test.
  assert builder.info.splits["train"].num_examples == 133
  assert builder.info.splits["test"].num_examples == 67
  data = datasets.load("mit67", data_dir=str(tmp_path / "tfds"))
  assert data.num_classes == 67 and len(data.train) == 133
  names = {
    data.train[i]["name"].split(" ")[1]: data.train[i]["label"]
    for i in range(len(data.train))
  }
  assert "airport_inside/img0.jpg" not in names
  assert names["bar/img1.jpg"] == classes.index("bar") == 4
  record = data.test[0]
  assert isinstance(record["image"], bytes)  # decoded by the pipeline


def test_mit67_missing_file_names_it(tmp_path):
  from scenejax.datasets import mit67

  _mit67_tree(tmp_path / "manual", np.random.default_rng(0))
  os.remove(tmp_path / "manual" / "TestImages.txt")
  with pytest.raises(
    common.DatasetError,
    match=r"TestImages.txt not found: looked for .*manual"
    r"/TestImages.txt\. Download it from https://web.mit",
  ):
    _prepare(mit67.Mit67, tmp_path / "tfds", tmp_path / "manual")


def test_mit67_class_names_match_the_official_lists(shared):
  """SAS-Net's list of the 67 classes (the TrainImages folders, indexed)
  is our label order."""
  from scenejax.datasets import mit67

  names = [
    line.split()[0].split("/")[-1]
    for line in open(
      shared / "reference" / "sasnet_lists" / "MITIndoor67_scene_names.txt"
    )
  ]
  assert tuple(names) == mit67.CLASS_NAMES
  assert names == sorted(names)


def test_mit67_builder_refuses_other_class_folders(tmp_path):
  from scenejax.datasets import mit67

  root = tmp_path / "manual"
  _mit67_tree(root, np.random.default_rng(0), per_class=2)
  os.rename(root / "Images" / "bar", root / "Images" / "pub")
  for name in mit67.LIST_FILES.values():
    text = (root / name).read_text().replace("bar/", "pub/")
    (root / name).write_text(text)
  with pytest.raises(common.DatasetError, match=r"official list: \['pub'\]"):
    _prepare(mit67.Mit67, tmp_path / "tfds", root)


def _ade20k_zip(manual, rng, scenes=("bedroom", "street", "kitchen")):
  lines, maps = [], {}
  with zipfile.ZipFile(manual / "ADEChallengeData2016.zip", "w") as z:
    for folder, prefix, n in (
      ("training", "ADE_train", 4),
      ("validation", "ADE_val", 2),
    ):
      for i in range(1, n + 1):
        stem = f"{prefix}_{i:08d}"
        h, w = 20 + i, 30
        z.writestr(
          f"ADEChallengeData2016/images/{folder}/{stem}.jpg", _jpeg(rng, h, w)
        )
        label_map = rng.integers(0, 151, (h, w)).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(label_map, mode="L").save(buf, format="PNG")
        z.writestr(
          f"ADEChallengeData2016/annotations/{folder}/{stem}.png",
          buf.getvalue(),
        )
        maps[stem] = label_map
        lines.append(f"{stem} {scenes[i % len(scenes)]}")
  (manual / "sceneCategories.txt").write_text("\n".join(lines) + "\n")
  return maps, dict(line.split() for line in lines)


def test_ade20k_scenes_builder(tmp_path):
  from scenejax.datasets import ade20k_scenes

  manual = tmp_path / "manual"
  manual.mkdir()
  maps, scenes = _ade20k_zip(manual, np.random.default_rng(0))
  builder = _prepare(ade20k_scenes.Ade20kScenes, tmp_path / "tfds", manual)
  names = builder.info.features["label"].names
  assert names == ["bedroom", "kitchen", "street"]
  source = builder.as_data_source("train")
  assert len(source) == 4 and len(builder.as_data_source("validation")) == 2
  for i in range(len(source)):
    record = source[i]
    stem = os.path.splitext(record["file_name"].decode())[0]
    # PNG is lossless: the 150-class map comes back exactly.
    np.testing.assert_array_equal(record["segmentation"][..., 0], maps[stem])
    assert names[record["label"]] == scenes[stem]


def test_ade20k_scenes_missing_annotation_is_an_error(tmp_path):
  from scenejax.datasets import ade20k_scenes

  manual = tmp_path / "manual"
  manual.mkdir()
  _ade20k_zip(manual, np.random.default_rng(0))
  (manual / "sceneCategories.txt").write_text("ADE_train_00000001\n")
  with pytest.raises(
    common.DatasetError,
    match=r"sceneCategories.txt:1: expected 'image_id scene'",
  ):
    _prepare(ade20k_scenes.Ade20kScenes, tmp_path / "tfds", manual)


def test_unknown_and_unprepared_datasets(tmp_path):
  with pytest.raises(common.DatasetError, match="unknown dataset 'sun398'"):
    datasets.load("sun398")
  with pytest.raises(
    common.DatasetError,
    match="'mit67' is not prepared under data_dir=.*Prepare it first",
  ):
    datasets.load("mit67", data_dir=str(tmp_path))


def test_places_subsets_remap_labels():
  places = datasets.PLACES365_14
  with tfds.testing.mock_data(
    num_examples=400, policy=(tfds.testing.MockPolicy.USE_CODE)
  ):
    data = datasets.load("places365_14")
  all_names = tfds.builder("places365_small").info.features["label"].names
  assert data.class_names == places and data.num_classes == 14
  assert set(datasets.PLACES365_7) <= set(all_names)
  assert len(data.train) > 0
  for i in range(len(data.train)):
    assert 0 <= data.train[i]["label"] < 14


def test_subset_source_relabels_in_order():
  base = [
    {"image": b"", "label": y, "name": str(i)}
    for i, y in enumerate([5, 2, 9, 2, 7, 5])
  ]
  sub = datasets.SubsetSource.of_classes(
    base, keep=[2, 5], labels=np.array([r["label"] for r in base])
  )
  assert [
    (r["name"], r["label"]) for r in (sub[i] for i in range(len(sub)))
  ] == [("0", 1), ("1", 0), ("3", 0), ("5", 1)]


def test_places365_1k_is_a_seeded_per_class_sample():
  """[PCL]'s Places365-small: at most 1,000 training images of each class,
  drawn without replacement, the same draw every time, and the full
  validation split."""
  labels = np.random.default_rng(1).integers(0, 4, 5000)
  labels[labels == 3] = 2  # class 3 absent, class 2 large
  picked = datasets.per_class_sample(labels, 300, seed=0)
  counts = np.bincount(labels[picked], minlength=4)
  np.testing.assert_array_equal(counts, [300, 300, 300, 0])
  assert len(set(picked.tolist())) == len(picked)
  np.testing.assert_array_equal(picked, np.sort(picked))
  np.testing.assert_array_equal(
    picked, datasets.per_class_sample(labels, 300, seed=0)
  )
  assert not np.array_equal(
    picked, datasets.per_class_sample(labels, 300, seed=1)
  )
  small = np.array([0, 0, 1])  # a class smaller than the quota: all of it
  np.testing.assert_array_equal(
    datasets.per_class_sample(small, 5, 0), [0, 1, 2]
  )
  with tfds.testing.mock_data(
    num_examples=400, policy=(tfds.testing.MockPolicy.USE_CODE)
  ):
    data = datasets.load("places365_1k")
    full = datasets.load("places365")
  assert data.num_classes == 365 and len(data.test) == len(full.test)
  assert len(data.train) == len(full.train)  # 400 mock records: < 1,000 each


def test_label_maps_in_the_zero_based_format_are_converted():
  from scenejax.datasets import label_maps

  ids = label_maps.to_ade20k_ids(np.array([[0, 149, 255]]), "zero_based")
  np.testing.assert_array_equal(ids, [[1, 150, 0]])
  with pytest.raises(common.DatasetError, match="label format 'mmseg'"):
    label_maps.to_ade20k_ids(np.zeros((1, 1)), "mmseg")


# ----------------------------------------------------------------------------
# Pipeline.


def _encoded_source(n=20, corrupt=(5,)):
  rng = np.random.default_rng(0)
  source = [
    {"image": _jpeg(rng, 300 + i, 260), "label": i % 3, "name": f"img{i}.jpg"}
    for i in range(n)
  ]
  for i in corrupt:
    source[i]["image"] = b"garbage"
  return source


def test_preprocess_shapes_and_eval_centre_crop():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 255, (300, 400, 3), np.uint8)
  out = input_pipeline.Preprocess(train=False)({"image": image, "label": 2})
  # Shorter side 300 -> 256: 341x256, centre crop 224 at (16, 58).
  from PIL import Image as PILImage

  resized = np.asarray(
    PILImage.fromarray(image).resize((341, 256), PILImage.BILINEAR)
  )
  np.testing.assert_array_equal(out["image"], resized[16:240, 58:282])
  train = input_pipeline.Preprocess(train=True, random_resized_crop=True)
  out = train({"image": image, "label": 2}, np.random.default_rng(1))
  assert out["image"].shape == (224, 224, 3) and out["label"] == 2


def test_train_crop_and_flip_follow_the_generator():
  """Resize, a random 224 crop at (top, left) and a flip with probability
  1/2, drawn in that order, against the same steps done by hand; over
  seeds both flipped and unflipped crops occur."""
  rng = np.random.default_rng(0)
  image = rng.integers(0, 255, (260, 300, 3), np.uint8)
  resized = np.asarray(
    Image.fromarray(image).resize((295, 256), Image.BILINEAR)
  )
  preprocess = input_pipeline.Preprocess(train=True)
  flips = set()
  for seed in range(8):
    out = preprocess({"image": image, "label": 1}, np.random.default_rng(seed))
    draws = np.random.default_rng(seed)
    top, left = (
      draws.integers(0, 256 - 224 + 1),
      draws.integers(0, 295 - 224 + 1),
    )
    flip = bool(draws.random() < 0.5)
    expected = resized[top : top + 224, left : left + 224]
    expected = expected[:, ::-1] if flip else expected
    np.testing.assert_array_equal(out["image"], expected)
    assert out["image"].flags.c_contiguous and out["image"].flags.writeable
    flips.add(flip)
  assert flips == {False, True}


@settings(max_examples=40, deadline=None)
@given(
  st.integers(1, 12),
  st.integers(1, 12),
  st.sampled_from([(), (1,), (3,), (4,)]),
  st.sampled_from([np.uint8, np.float32]),
  st.booleans(),
  st.data(),
)
def test_copy_is_a_contiguous_copy_mirrored_on_request(
  h, w, channels, dtype, flip, data
):
  """`_copy` of any window of an (H, W[, C]) array equals numpy's own
  [:, ::-1] (or the window itself), as a fresh C-contiguous array."""
  whole = np.arange((h + 3) * (w + 5) * int(np.prod(channels)), dtype=dtype)
  whole = whole.reshape((h + 3, w + 5) + channels)
  top, left = data.draw(st.integers(0, 3)), data.draw(st.integers(0, 5))
  window = whole[top : top + h, left : left + w]
  out = input_pipeline._copy(window, flip)
  np.testing.assert_array_equal(out, window[:, ::-1] if flip else window)
  assert out.flags.c_contiguous and not np.shares_memory(out, whole)


def test_jpeg_draft_decodes_smaller_where_the_resize_allows():
  """A 1024x768 JPEG bound for a 256 resize decodes at 1/2 scale (1/4
  would be 192 < 256); the eval crop from it is close to the full decode's
  (a box filter in the DCT instead of bilinear); PNGs, small JPEGs and
  random-resized crops decode in full."""
  import io

  from PIL import Image as PILImage

  from scenejax.datasets import common

  rng = np.random.default_rng(0)
  smooth = PILImage.fromarray(rng.integers(0, 255, (12, 16, 3), np.uint8))
  smooth = smooth.resize((1024, 768), PILImage.BICUBIC)
  encoded = {}
  for fmt in ("JPEG", "PNG"):
    buffer = io.BytesIO()
    smooth.save(buffer, format=fmt, quality=95)
    encoded[fmt] = buffer.getvalue()
  assert common.open_image(encoded["JPEG"], "a", draft_size=256).size == (
    512,
    384,
  )
  assert common.open_image(encoded["JPEG"], "a", draft_size=400).size == (
    1024,
    768,
  )
  assert common.open_image(encoded["PNG"], "a", draft_size=256).size == (
    1024,
    768,
  )
  example = {"image": encoded["JPEG"], "label": 0}
  full = input_pipeline.Preprocess(train=False)(example)["image"]
  draft = input_pipeline.Preprocess(train=False, jpeg_draft=True)(example)
  difference = np.abs(full.astype(float) - draft["image"])
  assert draft["image"].shape == full.shape == (224, 224, 3)
  assert 0 < difference.mean() < 2.0, difference.mean()
  crops = input_pipeline.Preprocess(
    train=True, random_resized_crop=True, jpeg_draft=True
  )
  assert crops.draft_size is None


def _epoch(source, seed, epoch, batch_size=4, preprocess=None, **kw):
  return input_pipeline.train_batches(
    source,
    batch_size,
    seed=seed,
    epoch=epoch,
    preprocess=preprocess or input_pipeline.Preprocess(train=True),
    process_index=kw.get("process_index", 0),
    process_count=kw.get("process_count", 1),
  )


def test_pipeline_is_deterministic_and_resumes_exactly():
  source = _encoded_source()
  full = list(_epoch(source, 7, 1))
  again = list(_epoch(source, 7, 1))
  other_seed = list(_epoch(source, 8, 1))
  other_epoch = list(_epoch(source, 7, 2))
  # 20 images, one corrupt (replaced by the next in the order): 5 full.
  assert len(full) == 5 and all(len(b["label"]) == 4 for b in full)
  for a, b in zip(full, again):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  for other in (other_seed, other_epoch):
    assert any(
      not np.array_equal(a["image"], b["image"]) for a, b in zip(full, other)
    )
  it = iter(_epoch(source, 7, 1))
  for _ in range(2):
    next(it)
  state = it.get_state()
  resumed = iter(_epoch(source, 7, 1))
  resumed.set_state(state)
  rest = list(resumed)
  assert len(rest) == len(full) - 2
  for a, b in zip(full[2:], rest):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])


def test_device_batches_are_the_batches_on_the_mesh_and_resume_exactly():
  """Through the prefetch threads: the same batches, in order, as jax
  Arrays with the data sharding; a state taken after two batches (with
  more already buffered) resumes at the third."""
  import jax

  source = _encoded_source()
  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  sharding = jax.sharding.NamedSharding(
    mesh, jax.sharding.PartitionSpec("data")
  )
  host = list(_epoch(source, 7, 1))

  def placed():
    return input_pipeline.device_batches(_epoch(source, 7, 1), sharding)

  on_devices = list(placed())
  assert len(on_devices) == len(host) == 5
  for a, b in zip(host, on_devices):
    assert isinstance(b["image"], jax.Array) and b["image"].sharding == sharding
    np.testing.assert_array_equal(a["image"], np.asarray(b["image"]))
    np.testing.assert_array_equal(a["label"], np.asarray(b["label"]))
  it = iter(placed())
  next(it), next(it)
  state = it.get_state()
  resumed = iter(placed())
  resumed.set_state(state)
  rest = list(resumed)
  assert len(rest) == 3
  for a, b in zip(host[2:], rest):
    np.testing.assert_array_equal(a["image"], np.asarray(b["image"]))
  unbuffered = input_pipeline.device_batches(
    _epoch(source, 7, 1), sharding, host_buffer=0, device_buffer=0
  )
  np.testing.assert_array_equal(
    np.asarray(next(iter(unbuffered))["image"]), host[0]["image"]
  )


def test_corrupt_image_is_skipped_counted_or_raises():
  source = _encoded_source(n=8, corrupt=(2, 6))
  preprocess = input_pipeline.Preprocess(train=False)
  batches = list(
    input_pipeline.eval_batches(
      source, 4, preprocess=preprocess, process_index=0, process_count=1
    )
  )
  assert preprocess.skipped == 2
  labels = np.concatenate([b["label"][b["mask"]] for b in batches])
  # Labels i % 3 of images 0..7 without images 2 and 6.
  np.testing.assert_array_equal(labels, [0, 1, 0, 1, 2, 1])
  assert [int(b["mask"].sum()) for b in batches] == [4, 2]
  strict = input_pipeline.Preprocess(train=False, on_corrupt="raise")
  with pytest.raises(common.DatasetError, match="img2.jpg: cannot decode"):
    list(
      input_pipeline.eval_batches(
        source, 4, preprocess=strict, process_index=0, process_count=1
      )
    )


def test_shards_partition_the_source():
  source = [
    {"image": np.zeros((224, 224, 3), np.uint8), "label": i, "name": str(i)}
    for i in range(12)
  ]
  seen_train, seen_eval = [], []
  for shard in range(3):
    for b in _epoch(
      source, 0, 0, batch_size=6, process_index=shard, process_count=3
    ):
      seen_train.extend(b["label"].tolist())
    for b in input_pipeline.eval_batches(
      source,
      3,
      preprocess=input_pipeline.Preprocess(train=False),
      process_index=shard,
      process_count=3,
    ):
      seen_eval.extend(b["label"][b["mask"]].tolist())
  assert sorted(seen_train) == sorted(seen_eval) == list(range(12))


def test_catalogue_datasets_through_the_pipeline():
  """sun397 and places365 from TFDS (mocked records, the real metadata)."""
  with tfds.testing.mock_data(
    num_examples=12, policy=(tfds.testing.MockPolicy.USE_CODE)
  ):
    for name, classes in (("sun397", 397), ("places365", 365)):
      data = datasets.load(name)
      assert data.num_classes == classes and len(data.train) == 12
      batch = next(
        iter(
          input_pipeline.train_batches(
            data.train,
            4,
            seed=0,
            epoch=0,
            preprocess=input_pipeline.Preprocess(train=True),
            process_index=0,
            process_count=1,
          )
        )
      )
      assert batch["image"].shape == (4, 224, 224, 3)
      assert batch["image"].dtype == np.uint8
      assert ((0 <= batch["label"]) & (batch["label"] < classes)).all()


@pytest.mark.slow
def test_trainer_runs_on_a_prepared_builder(tmp_path):
  """mit67 prepared from a fake tree, a prototype NPZ, one epoch of the
  trainer: the real-data path end to end (decode, crop, pad, evaluate)."""
  from configs import demo
  from scenejax import prototype
  from scenejax.datasets import mit67
  from scenejax.training import loop

  classes = _mit67_tree(tmp_path / "manual", np.random.default_rng(0))
  _prepare(mit67.Mit67, tmp_path / "tfds", tmp_path / "manual")
  similarity = np.full((67, 67), 0.2) + 0.8 * np.eye(67)
  prototype.save_prototype(
    tmp_path / "proto.npz",
    prototype.Prototype(similarity, "cosine", tuple(classes)),
  )
  config = demo.get_config()
  config.dataset = "mit67"
  config.data.update(
    dict(
      data_dir=str(tmp_path / "tfds"),
      image_size=32,
      resize_size=40,
      ten_crop=True,
    )
  )
  config.prototype.path = str(tmp_path / "proto.npz")
  config.num_epochs = 1
  config.batch_size = 32
  config.eval_batch_size = 48
  config.progress_bar = False
  result = loop.train_and_evaluate(config, str(tmp_path / "work"))
  assert result["num_examples"] == 67  # the whole test split, padded
  assert np.asarray(result["confusion"]).sum() == 67
  assert result["class_names"] == classes
  # The builder already dropped the corrupt file at prepare time.
  assert result["skipped_images"] == 0

  # SAS-Net from its top-3 files on the same data: the maps follow the
  # images' crops, flips and ten crops; plain CE needs no prototype.
  data = datasets.from_config(config)
  for split, source in (("train", data.train), ("test", data.test)):
    records = [source[i] for i in range(len(source))]
    sizes = [Image.open(io.BytesIO(r["image"])).size[::-1] for r in records]
    write_top3_files(
      tmp_path / "top3", sizes, [r["label"] for r in records], split
    )
  sas = demo.get_config("sasnet,semantic_files,ce")
  sas.dataset, sas.data = "mit67", config.data
  sas.sasnet.semantic_dir = str(tmp_path / "top3")
  sas.update(dict(num_epochs=1, batch_size=32, eval_batch_size=48))
  sas.progress_bar = False
  # No segmenter is loaded: the semantic input can only come from the files.
  result = loop.train_and_evaluate(sas, str(tmp_path / "sasnet"))
  assert result["num_examples"] == 67 and np.isfinite(result["train_loss"])
  assert not (tmp_path / "sasnet" / "prototype.npz").exists()


def test_prototype_from_ade20k_scenes_label_maps(tmp_path):
  """`prototype build --dataset=ade20k_scenes` equals Algorithm 1 run
  literally (tests/reference.py) on the maps written into the zip."""
  import reference

  from scenejax import prototype
  from scenejax.datasets import ade20k_scenes

  manual = tmp_path / "manual"
  manual.mkdir()
  maps, scenes = _ade20k_zip(manual, np.random.default_rng(0))
  _prepare(ade20k_scenes.Ade20kScenes, tmp_path / "tfds", manual)
  out = tmp_path / "ade.npz"
  from conftest import run_cli

  proc = run_cli(
    "scenejax.prototype",
    "build",
    "--dataset=ade20k_scenes",
    f"--data_dir={tmp_path / 'tfds'}",
    f"--out={out}",
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  proto = prototype.load_prototype(out)
  names = ["bedroom", "kitchen", "street"]
  assert list(proto.class_names) == names
  train = sorted(s for s in maps if s.startswith("ADE_train"))
  reps = reference.algorithm1_class_representation(
    [maps[s] for s in train], [names.index(scenes[s]) for s in train], 3, 150
  )
  np.testing.assert_allclose(
    proto.similarity, reference.similarity(reps, "cosine"), atol=1e-6
  )


def test_ten_crop_is_corners_centre_and_flips():
  image = np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8)
  out = input_pipeline.Preprocess(train=False, ten_crop=True)(
    {"image": image, "label": 1}
  )["image"]
  resized = np.asarray(
    Image.fromarray(image).resize((341, 256), Image.BILINEAR)
  )
  expected = [
    resized[:224, :224],
    resized[:224, -224:],
    resized[-224:, :224],
    resized[-224:, -224:],
    resized[16:240, 58:282],
  ]
  expected += [e[:, ::-1] for e in expected]
  np.testing.assert_array_equal(out, np.stack(expected))


@pytest.mark.slow
def test_ten_crop_eval_step_averages_softmax():
  import jax
  import optax
  from flax import nnx

  from scenejax import models
  from scenejax.tasks import classification

  model = models.create("resnet_tiny", 5)
  graphdef, state = nnx.split(
    (model, nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param))
  )
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, (3, 10, 32, 32, 3), np.uint8)
  predictions = np.asarray(
    jax.jit(
      lambda s, b: classification.eval_step(
        graphdef,
        s,
        b,
        mean=input_pipeline.IMAGENET_MEAN,
        std=input_pipeline.IMAGENET_STD,
      )
    )(
      state,
      {
        "image": images,
        "label": np.zeros(3, np.int32),
        "mask": np.ones(3, bool),
      },
    )["top"]
  )
  model.eval()
  logits = np.asarray(
    model(input_pipeline.normalize(images.reshape(30, 32, 32, 3))), np.float64
  ).reshape(3, 10, 5)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  expected = np.argsort(-probs.mean(1), axis=-1)
  np.testing.assert_array_equal(predictions[:, 0], expected[:, 0])
  np.testing.assert_array_equal(
    np.sort(predictions, -1), np.sort(expected[:, :5], -1)
  )


def test_global_batches_do_not_depend_on_the_process_count():
  """Concatenating the processes' parts gives the single-process batches,
  crops and flips included."""
  source = _encoded_source(n=24, corrupt=(3,))
  single = list(_epoch(source, 5, 1, batch_size=6))
  parts = [
    list(_epoch(source, 5, 1, batch_size=6, process_index=p, process_count=3))
    for p in range(3)
  ]
  assert len(single) == 4
  for step, batch in enumerate(single):
    joined = np.concatenate([parts[p][step]["image"] for p in range(3)])
    np.testing.assert_array_equal(joined, batch["image"])


def _nus_wide_tree(root, rng):
  """3 concepts; train: 4 listed images (one missing on disk, one
  corrupt, one with no concept); test: 2."""
  concepts = ["animal", "sky", "water"]
  (root / "ConceptsList").mkdir(parents=True)
  (root / "ConceptsList" / "Concepts81.txt").write_text("\n".join(concepts))
  lists = {
    "Train": [
      "actor\\a.jpg",
      "actor\\gone.jpg",
      "beach\\b.jpg",
      "beach\\bad.jpg",
    ],
    "Test": ["actor\\c.jpg", "beach\\d.jpg"],
  }
  truth = {
    "Train": [[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 1]],
    "Test": [[0, 1, 0], [1, 0, 1]],
  }
  (root / "ImageList").mkdir()
  labels_dir = root / "Groundtruth" / "TrainTestLabels"
  labels_dir.mkdir(parents=True)
  for split, rels in lists.items():
    (root / "ImageList" / f"{split}Imagelist.txt").write_text(
      "\r\n".join(rels) + "\r\n"  # the release's Windows lines
    )
    for k, concept in enumerate(concepts):
      column = [str(row[k]) for row in truth[split]]
      (labels_dir / f"Labels_{concept}_{split}.txt").write_text(
        "\n".join(column) + "\n"
      )
    for rel in rels:
      path = root / "Flickr" / rel.replace("\\", "/")
      path.parent.mkdir(parents=True, exist_ok=True)
      if "gone" in rel:
        continue
      path.write_bytes(b"not a jpeg" if "bad" in rel else _jpeg(rng, 20, 24))
  return concepts


def test_nus_wide_builder_and_its_presence_labels(tmp_path):
  from scenejax.datasets import multilabel, nus_wide

  concepts = _nus_wide_tree(tmp_path / "manual", np.random.default_rng(0))
  builder = _prepare(nus_wide.NusWide, tmp_path / "tfds", tmp_path / "manual")
  assert builder.info.features["labels"].feature.names == concepts
  # The missing and the corrupt train images are left out.
  assert builder.info.splits["train"].num_examples == 2
  assert builder.info.splits["test"].num_examples == 2
  data = multilabel.load("nus_wide", data_dir=str(tmp_path / "tfds"))
  assert data.class_names == tuple(concepts)
  # drop_unlabeled: beach/b.jpg (no concept) leaves the training split.
  assert len(data.train) == 1
  assert data.train[0]["name"].endswith("actor/a.jpg")
  np.testing.assert_array_equal(data.train[0]["label"], [1, 0, 1])
  by_name = {
    data.test[i]["name"].split(" ")[-1]: data.test[i]["label"].tolist()
    for i in range(len(data.test))
  }
  assert by_name == {"actor/c.jpg": [0, 1, 0], "beach/d.jpg": [1, 0, 1]}
  kept = multilabel.load(
    "nus_wide", data_dir=str(tmp_path / "tfds"), drop_unlabeled=False
  )
  assert len(kept.train) == 2


def test_nus_wide_label_file_errors_name_the_file(tmp_path):
  from scenejax.datasets import nus_wide

  root = tmp_path / "manual"
  _nus_wide_tree(root, np.random.default_rng(0))
  short = root / "Groundtruth" / "TrainTestLabels" / "Labels_sky_Test.txt"
  short.write_text("0\n")
  with pytest.raises(
    common.DatasetError, match=r"Labels_sky_Test.txt: expected 2 lines"
  ):
    _prepare(nus_wide.NusWide, tmp_path / "tfds", root)
  os.remove(short)
  with pytest.raises(
    common.DatasetError, match=r"Labels_sky_Test.txt not found.*Download it"
  ):
    _prepare(nus_wide.NusWide, tmp_path / "tfds2", root)
