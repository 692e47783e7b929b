"""SAS-Net against the official PyTorch module (`SASceneNet.py` from
../shared/reference/sasnet_code, its torchvision ResNet served by a small
torchvision-layout ResNet written here), the semantic score tensor against
a float64 NumPy reading of `make_one_hot`, and the .pth.tar conversion."""

import fractions
import importlib.util
import sys
import types

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_user_error, run_cli, write_top3_files
from hypothesis import given, settings
from hypothesis import strategies as st

from scenejax import convert, models, tasks
from scenejax.errors import CheckpointError, ConfigError, UserError
from scenejax.models import pretrained, sasnet


def _make_one_hot(ids, scores, channels=152):
  """The official make_one_hot, pixel by pixel in float64: the loaders add
  1 to the stored 0-based ids; scatter_ per n in order (last wins); ids
  outside the tensor are dropped here (the official scatter would fail)."""
  ids = np.asarray(ids, np.int64) + 1
  out = np.zeros(ids.shape[:-1] + (channels,))
  for index in np.ndindex(*ids.shape[:-1]):
    for n in range(ids.shape[-1]):
      if 0 <= ids[index][n] < channels:
        out[index][ids[index][n]] = scores[index][n]
  return out


@settings(deadline=None)
@given(seed=st.integers(0, 2**31), k=st.integers(1, 4))
def test_semantic_tensor_is_make_one_hot(seed, k):
  rng = np.random.default_rng(seed)
  ids = rng.integers(-2, 153, (2, 3, 4, k))  # duplicates and strays too
  scores = rng.random((2, 3, 4, k))
  got = np.asarray(sasnet.semantic_tensor(ids, scores))
  np.testing.assert_allclose(got, _make_one_hot(ids, scores), atol=1e-7)


def _torchvision_resnet():
  """A `torchvision.models.resnet` stand-in: torchvision's ResNet layout
  (conv1/bn1/.../layer1..4, blocks with conv1..3, bn1..3, downsample.0/1),
  which SASceneNet takes its encoder stages from."""
  from torch import nn

  class Basic(nn.Module):
    expansion = 1

    def __init__(self, inp, planes, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(inp, planes, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(planes)
      self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(planes)
      self.downsample = _shortcut(inp, planes, stride, 1)

    def forward(self, x):
      y = self.bn2(self.conv2(nn.functional.relu(self.bn1(self.conv1(x)))))
      skip = x if self.downsample is None else self.downsample(x)
      return nn.functional.relu(y + skip)

  class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inp, planes, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(inp, planes, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(planes)
      self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(planes)
      self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
      self.bn3 = nn.BatchNorm2d(planes * 4)
      self.downsample = _shortcut(inp, planes, stride, 4)

    def forward(self, x):
      relu = nn.functional.relu
      y = relu(self.bn1(self.conv1(x)))
      y = relu(self.bn2(self.conv2(y)))
      y = self.bn3(self.conv3(y))
      skip = x if self.downsample is None else self.downsample(x)
      return relu(y + skip)

  def _shortcut(inp, planes, stride, expansion):
    if stride == 1 and inp == planes * expansion:
      return None
    return nn.Sequential(
      nn.Conv2d(inp, planes * expansion, 1, stride, bias=False),
      nn.BatchNorm2d(planes * expansion),
    )

  class ResNet(nn.Module):
    def __init__(self, block, sizes):
      super().__init__()
      self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
      self.bn1 = nn.BatchNorm2d(64)
      inp = 64
      for i, (size, planes) in enumerate(zip(sizes, (64, 128, 256, 512))):
        layers = []
        for j in range(size):
          layers.append(block(inp, planes, 2 if i and not j else 1))
          inp = planes * block.expansion
        setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
      self.fc = nn.Linear(inp, 1000)

  module = types.ModuleType("torchvision.models.resnet")
  module.resnet18 = lambda pretrained=False: ResNet(Basic, (2, 2, 2, 2))
  module.resnet50 = lambda pretrained=False: ResNet(Bottleneck, (3, 4, 6, 3))
  return module


@pytest.fixture
def official(shared, monkeypatch):
  """The official SASceneNet class, imported from the shared source."""
  resnet = _torchvision_resnet()
  package = types.ModuleType("torchvision")
  package.models = types.ModuleType("torchvision.models")
  package.models.resnet = resnet
  monkeypatch.setitem(sys.modules, "torchvision", package)
  monkeypatch.setitem(sys.modules, "torchvision.models", package.models)
  monkeypatch.setitem(sys.modules, "torchvision.models.resnet", resnet)
  path = shared / "reference" / "sasnet_code" / "SASceneNet.py"
  spec = importlib.util.spec_from_file_location("official_sasnet", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.SASceneNet


def _randomise_batch_norms(net):
  """Non-trivial BN statistics and affine parameters (fresh ones are an
  identity, which would hide a mis-mapped BN)."""
  torch = pytest.importorskip("torch")

  generator = torch.Generator().manual_seed(1)
  for m in net.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      n = m.num_features
      m.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
      m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
      m.weight.data.copy_(1 + torch.randn(n, generator=generator) * 0.1)
      m.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


def _parity(official, arch, name, tmp_path, batch=2):
  import jax.numpy as jnp

  torch = pytest.importorskip("torch")

  torch.manual_seed(0)
  net = official(arch, scene_classes=7, semantic_classes=151)
  with torch.no_grad():
    _randomise_batch_norms(net)
  net.eval()
  # The model zoo's layout: a checkpoint dict around the state dict, saved
  # from nn.DataParallel ("module." prefixes).
  state = {f"module.{k}": v for k, v in net.state_dict().items()}
  torch.save(
    {"epoch": 3, "best_prec1": 50.0, "state_dict": state},
    tmp_path / "zoo.pth.tar",
  )
  target = str(tmp_path / "sasnet.safetensors")
  assert convert.convert(str(tmp_path / "zoo.pth.tar"), target) == len(state)
  model = models.create(name, 7, init_from=target)
  model.eval()

  rng = np.random.default_rng(0)
  images = rng.normal(size=(batch, 224, 224, 3)).astype(np.float32)
  ids = np.stack(
    [rng.permutation(150)[:3] for _ in range(batch * 224 * 224)]
  ).reshape(batch, 224, 224, 3)
  scores = np.sort(rng.random((batch, 224, 224, 3)), -1)[..., ::-1]
  semantic = _make_one_hot(ids, scores).astype(np.float32)
  with torch.no_grad():
    want = net(
      torch.from_numpy(images.transpose(0, 3, 1, 2)),
      torch.from_numpy(semantic.transpose(0, 3, 1, 2)),
    )
  got = model(jnp.asarray(images), jnp.asarray(semantic))
  pairs = {
    "logits": want[0].numpy(),
    "features": want[1].numpy().transpose(0, 2, 3, 1),
    "rgb_logits": want[2].numpy(),
    "semantic_logits": want[3].numpy(),
  }
  for key, reference in pairs.items():
    scale = np.abs(reference).max()
    np.testing.assert_allclose(
      np.asarray(got[key]), reference, rtol=1e-4, atol=1e-4 * scale,
      err_msg=key,
    )  # fmt: skip
  np.testing.assert_allclose(
    np.asarray(model.rgb_logits(jnp.asarray(images))),
    pairs["rgb_logits"],
    rtol=1e-4,
    atol=1e-4 * np.abs(pairs["rgb_logits"]).max(),
  )
  return model


@pytest.mark.slow
def test_resnet18_matches_the_official_module(official, tmp_path):
  """All four outputs of SASceneNet('ResNet-18'), random weights and BN
  statistics, loaded through the .pth.tar -> safetensors conversion."""
  model = _parity(official, "ResNet-18", "sasnet_resnet18", tmp_path)
  assert models.num_params(model) == _official_param_count(
    official, "ResNet-18"
  )
  with pytest.raises(ConfigError, match="gives 4x4 maps"):
    model(jnp.zeros((1, 128, 128, 3)), jnp.zeros((1, 128, 128, 152)))


def _official_param_count(official, arch):
  net = official(arch, scene_classes=7, semantic_classes=151)
  return sum(p.numel() for p in net.parameters())


@pytest.mark.slow
def test_resnet50_loads_the_official_layout(official, tmp_path):
  """SASceneNet('ResNet-50'): every tensor of its state dict lands on a
  parameter of the same shape (`assign` is all or nothing) and the
  parameter counts agree. Its forward shares everything but the widths
  and the bottleneck blocks with ResNet-18's, tested above; the bottleneck
  is tested against transformers' ResNet-50 in test_models."""
  torch = pytest.importorskip("torch")

  net = official("ResNet-50", scene_classes=7, semantic_classes=151)
  torch.save({"state_dict": net.state_dict()}, tmp_path / "r50.pth.tar")
  target = str(tmp_path / "r50.safetensors")
  convert.convert(str(tmp_path / "r50.pth.tar"), target)
  model = models.create("sasnet_resnet50", 7, init_from=target)
  assert models.num_params(model) == sum(p.numel() for p in net.parameters())
  np.testing.assert_array_equal(
    np.asarray(model.rgb_attention[0].conv.kernel[...]),
    net.lastConvRGB1[0].weight.detach().numpy().transpose(2, 3, 1, 0),
  )


@pytest.mark.slow
def test_wrong_weights_are_refused(official, tmp_path):
  """A SAS-Net state dict of the other depth, a non-SAS-Net file, and files
  the restricted unpickler refuses, each named."""
  torch = pytest.importorskip("torch")
  from safetensors.numpy import save_file

  net = official("ResNet-18", scene_classes=7, semantic_classes=151)
  torch.save(net.state_dict(), tmp_path / "r18.pth")
  convert.convert(str(tmp_path / "r18.pth"), str(tmp_path / "r18.safetensors"))
  with pytest.raises(CheckpointError, match="r18.safetensors does not fit"):
    models.create(
      "sasnet_resnet_tiny", 7, init_from=str(tmp_path / "r18.safetensors")
    )
  save_file(
    {"fc.weight": np.zeros((7, 4), np.float32)}, tmp_path / "x.safetensors"
  )
  with pytest.raises(CheckpointError, match="not a SAS-Net state dict"):
    models.create(
      "sasnet_resnet18", 7, init_from=str(tmp_path / "x.safetensors")
    )

  # Any class beyond tensors and plain containers stands for a payload.
  torch.save(
    {"state_dict": {"w": fractions.Fraction(1, 3)}}, tmp_path / "evil.pth"
  )
  with pytest.raises(CheckpointError, match="weights_only=True"):
    convert.read_torch_state_dict(str(tmp_path / "evil.pth"))
  torch.save({"epoch": 3}, tmp_path / "meta.pth")
  with pytest.raises(CheckpointError, match="'epoch' is a int"):
    convert.read_torch_state_dict(str(tmp_path / "meta.pth"))
  out = tmp_path / "out.safetensors"
  assert_user_error(
    run_cli(
      "scenejax.convert", f"--from={tmp_path / 'evil.pth'}", f"--to={out}"
    ),
    "evil.pth: not a PyTorch weights file",
  )
  assert not out.exists()


def test_semantic_input_is_the_quantised_top3_of_the_segmenter():
  """On-the-fly semantics: the segmenter's softmax top-3, scores rounded to
  k/255 as SAS-Net's score PNGs store them, through make_one_hot (float64
  reference from the segmenter's own logits)."""
  import jax.numpy as jnp

  from scenejax import input_pipeline, segment
  from scenejax.tasks import semantic_aware

  segmenter = segment.load_segmenter("deeplabv3plus_resnet_tiny", None)
  images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), np.uint8)
  got = np.asarray(
    semantic_aware.semantic_input(segmenter, jnp.asarray(images))
  )
  x = input_pipeline.normalize(
    jnp.asarray(images), segmenter.pixel_mean, segmenter.pixel_std
  )
  logits = np.asarray(segmenter(x), np.float64)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  ids = np.argsort(-probs, axis=-1)[..., :3]
  scores = np.round(np.take_along_axis(probs, ids, -1) * 255) / 255
  np.testing.assert_allclose(got, _make_one_hot(ids, scores), atol=1e-6)
  assert got.shape == (2, 16, 16, 152) and (got > 0).sum(-1).max() <= 3


def _flat(workdir):
  from flax import nnx

  from scenejax.models import pretrained
  from scenejax.training import checkpoints

  _, graphdef, state, _ = checkpoints.restore_workdir(str(workdir))
  model = nnx.merge(graphdef, state)[0]
  return {
    k: np.asarray(v.get_value())
    for k, v in pretrained.flat_params(model).items()
  }


@pytest.mark.slow
def test_staged_training_trains_only_what_each_stage_names(tmp_path):
  """The demo's segmenter (1 epoch) feeds the semantic input on the fly.
  rgb -> semantic -> attention, each from the previous workdir: what a
  stage does not train - weights and BatchNorm statistics - stays bit for
  bit, what it trains moves; the one-run `:sasnet` stage reports the
  three heads' terms; from SAS-Net's top-3 files it gives the same numbers
  as on the fly."""
  import json

  from configs import demo, demo_segmentation
  from scenejax.training import loop

  def tiny(config):
    config.data.update(dict(train_per_class=8, test_per_class=2))
    config.num_epochs, config.batch_size, config.eval_batch_size = 1, 32, 16
    config.progress_bar = False
    return config

  seg = tiny(demo_segmentation.get_config())
  seg.segmentation.update(
    aspp_width=8, decoder_width=8, low_level_width=4, embedding_dim=4,
    num_samples=64,
  )  # fmt: skip
  loop.train_and_evaluate(seg, str(tmp_path / "seg"))

  def stage(variant, workdir, init_from=""):
    config = tiny(demo.get_config(variant))
    config.sasnet.segmenter_init_from = str(tmp_path / "seg")
    config.init_from = init_from
    result = loop.train_and_evaluate(config, str(tmp_path / workdir))
    assert result["num_examples"] == 16
    return _flat(tmp_path / workdir)

  def same(a, b, prefixes):
    keys = [k for k in a if k.startswith(prefixes)]
    assert keys
    for k in keys:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)

  def moved(a, b, prefixes):
    return any(
      not np.array_equal(a[k], b[k]) for k in a if k.startswith(prefixes)
    )

  config = demo.get_config("sasnet_rgb")
  initial = tasks.build_model(config, 8)  # the rgb run's initialisation
  init = {
    k: np.asarray(v.get_value())
    for k, v in pretrained.flat_params(initial).items()
  }
  rgb = stage("sasnet_rgb", "rgb")
  rest = ("semantic/", "rgb_attention/", "semantic_attention/", "head/")
  same(rgb, init, rest + ("semantic_head/",))
  for part in ("rgb/", "rgb_head/"):
    assert moved(rgb, init, (part,)), part
  sem = stage("sasnet_semantic", "sem", str(tmp_path / "rgb"))
  same(sem, rgb, ("rgb/", "rgb_head/", "rgb_attention/", "head/"))
  same(sem, rgb, ("semantic_attention/",))
  for part in ("semantic/", "semantic_head/"):
    assert moved(sem, rgb, (part,)), part
  with pytest.raises(ConfigError, match="starts from the workdir of the 'se"):
    stage("sasnet_attention", "bad", str(tmp_path / "rgb"))
  att = stage("sasnet_attention", "att", str(tmp_path / "sem"))
  same(att, sem, ("rgb/", "semantic/", "rgb_head/", "semantic_head/"))
  for part in ("head/", "rgb_attention/", "semantic_attention/"):
    assert moved(att, sem, (part,)), part
  from scenejax import evaluate, export

  # `scenejax.evaluate` scores each head as the trainer did: the combined
  # one as the attention run's last epoch, the RGB one (no semantic input)
  # as the rgb run's, whose frozen branch the attention workdir holds.
  def last(workdir):
    lines = (tmp_path / workdir / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])

  keys = ("top1", "top2", "top5", "mean_class_accuracy")
  for head, workdir in ((None, "att"), ("rgb", "rgb"), ("semantic", "sem")):
    got = evaluate.evaluate_workdir(str(tmp_path / "att"), head=head)
    assert [got[k] for k in keys] == [last(workdir)[k] for k in keys], head
  with pytest.raises(ConfigError, match="--head=both; .* which has trained r"):
    evaluate.evaluate_workdir(str(tmp_path / "att"), head="both")
  with pytest.raises(ConfigError, match="'rgb' stage, which has trained rgb$"):
    evaluate.evaluate_workdir(str(tmp_path / "rgb"), head="semantic")
  with pytest.raises(UserError, match="takes a semantic input"):
    export.export(str(tmp_path / "att"), str(tmp_path / "exported"))

  stage("sasnet", "all")
  row = json.loads(
    (tmp_path / "all" / "metrics.jsonl").read_text().splitlines()[-1]
  )
  for term in ("train_ce", "train_rgb_ce", "train_semantic_ce"):
    assert np.isfinite(row[term]), term

  # The same run from SAS-Net's top-3 files, written by the segment
  # command's code at the scenes' size: the same numbers (the scenes are
  # not augmented, so the segmenter saw the same pixels; measured equal
  # bit for bit, 2026-11-23).
  from scenejax import datasets, segment

  config = tiny(demo.get_config("sasnet,semantic_files"))
  config.sasnet.semantic_dir = str(tmp_path / "top3")
  data = datasets.from_config(config)
  predictor = segment.Predictor(
    segment.load_segmenter("deeplabv3plus_resnet_tiny", str(tmp_path / "seg")),
    batch_size=16,
    top_k=3,
    resize=segment.Resize(32, 2048),
  )
  for split in ("train", "test"):
    segment.write_split_files(
      predictor, data, split, config.sasnet.semantic_dir
    )
  loop.train_and_evaluate(config, str(tmp_path / "files"))
  rows = [
    [json.loads(line) for line in (tmp_path / w / "metrics.jsonl").open()]
    for w in ("all", "files")
  ]
  for on_the_fly, from_files in zip(*rows, strict=True):
    for key, value in on_the_fly.items():
      if key != "seconds":
        np.testing.assert_allclose(
          from_files[key], value, rtol=1e-5, err_msg=key
        )


# --------------------------------------------------------------------------
# Precomputed semantic input: SAS-Net's top-3 PNGs.


def _ramp_example(w, h):
  """An image whose R, G channels are the pixel's x, y, with SAS-Net files
  holding the same coordinates: ids (x, y, a 7/200 checkerboard) and
  scores = the image."""
  y, x = np.mgrid[0:h, 0:w]
  image = np.stack([x, y, np.full_like(x, 100)], -1).astype(np.uint8)
  ids = np.stack([x, y, 7 + 193 * ((x + y) % 2)], -1).astype(np.uint8)
  return dict(image=image, label=3, semantic_ids=ids, semantic_scores=image)


@pytest.mark.parametrize(
  "mode", ["train", "random_resized_crop", "eval", "ten_crop"]
)
def test_semantic_maps_take_the_images_crops_and_flips(mode):
  """Resize, crop (one random draw) and flip are the image's: the scores,
  resampled bilinearly like the image, equal it; the ids, by nearest
  neighbour, hold the coordinates the image's bilinear pixels show
  (within 1), the right way round after a flip, and are never blended."""
  from scenejax import input_pipeline

  pre = input_pipeline.Preprocess(
    train=mode in ("train", "random_resized_crop"),
    image_size=48,
    resize_size=64,
    random_resized_crop=mode == "random_resized_crop",
    ten_crop=mode == "ten_crop",
  )
  flips = set()
  for seed in range(8):
    out = pre(_ramp_example(90, 70), np.random.default_rng(seed))
    image, ids = out["image"], out["semantic_ids"]
    assert out["label"] == 3 and image.dtype == ids.dtype == np.uint8
    ids = ids.astype(int)
    np.testing.assert_array_equal(out["semantic_scores"], image)
    assert np.abs(ids[..., :2] - image[..., :2].astype(int)).max() <= 1
    assert set(np.unique(ids[..., 2])) <= {7, 200}  # never blended
    step = np.sign(np.diff(image[..., 0].astype(int), axis=-1).sum())
    flips.add(step < 0)
  if mode == "ten_crop":
    assert image.shape == (10, 48, 48, 3) and ids.shape == (10, 48, 48, 3)
  else:
    assert image.shape == ids.shape == (48, 48, 3)
  if mode in ("train", "random_resized_crop"):
    assert flips == {True, False}  # both ways within 8 draws


def test_semantic_files_are_read_and_errors_name_the_file(tmp_path):
  from PIL import Image

  from scenejax.datasets import common
  from scenejax.tasks.semantic_aware import SemanticFiles

  images = [np.zeros((6, 8, 3), np.uint8) + i for i in range(3)]
  source = [dict(image=im, label=i % 2) for i, im in enumerate(images)]
  root = write_top3_files(
    tmp_path / "top3", [im.shape[:2] for im in images], [0, 1, 0]
  )
  files = SemanticFiles(source, str(root), "train")
  record = files[1]
  ids = np.asarray(
    Image.open(root / "noisy_annotations_RGB/train/00000001.png")
  )
  np.testing.assert_array_equal(record["semantic_ids"], ids)
  assert record["semantic_scores"].shape == (6, 8, 3) and len(files) == 3
  np.testing.assert_array_equal(record["image"], images[1])

  import io

  encoded = io.BytesIO()  # an encoded image (TFDS): its size from the header
  Image.fromarray(np.zeros((7, 8, 3), np.uint8)).save(encoded, format="JPEG")
  jpeg = [dict(r, image=encoded.getvalue(), name="im.jpg") for r in source]

  def fails(match, *, split="train", index=1, src=source):
    with pytest.raises(common.DatasetError, match=match):
      SemanticFiles(src, str(root), split)[index]

  fails(
    r"00000001\.png: 8x6 pixels, but its image \(im\.jpg\) is 8x7", src=jpeg
  )
  fails(r"test\.txt not found.*--split=test --top3", split="test")
  fails(r"train\.txt lists 3 records but .* has 2", src=source[:2])
  relabelled = [dict(r, label=5) for r in source]
  fails(
    r"train\.txt:2 gives scene label 1, but record 1 .* has 5", src=relabelled
  )
  ids_png = root / "noisy_annotations_RGB/train/00000001.png"
  Image.fromarray(np.zeros((6, 8), np.uint8)).save(ids_png)  # a label map
  fails(
    r"noisy_annotations_RGB/train/00000001\.png: not a top-3 PNG \(a L image"
  )
  Image.fromarray(np.full((6, 8, 3), 151, np.uint8)).save(ids_png)
  fails(r"00000001\.png: segmenter channel 151 > 150")
  Image.fromarray(np.zeros((5, 8, 3), np.uint8)).save(ids_png)
  fails(r"00000001\.png: 8x5 pixels, but its image \(1\) is 8x6")
  ids_png.write_bytes(b"not a png")
  fails(r"00000001\.png: not a top-3 PNG")
  ids_png.unlink()
  fails(r"00000001\.png not found \(record 1 of .*train\.txt\)")
  # An image the segment command could not decode has no files: the
  # record passes unchanged, for the input pipeline to skip by name.
  broken = [dict(r, image=b"not a jpeg", name="x.jpg") for r in source]
  record = SemanticFiles(broken, str(root), "train")[1]
  assert record["image"] == b"not a jpeg" and "semantic_ids" not in record
  (root / "train.txt").write_text("train/00000000.png zero\n")
  fails(r"train\.txt:1: 'train/00000000\.png zero' is not a 'file label' line")


def test_missing_semantic_files_are_one_line_from_the_trainer(tmp_path):
  proc = run_cli(
    "scenejax.main",
    "--config=configs/demo.py:sasnet,semantic_files",
    f"--config.sasnet.semantic_dir={tmp_path}",
    f"--workdir={tmp_path / 'w'}",
  )
  assert_user_error(proc, f"{tmp_path}/train.txt not found", "--top3")
  assert not (tmp_path / "w" / "config.json").exists()
