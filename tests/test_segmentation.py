"""The segmentation task ([SEG]): DeepLabV3+ against PyTorch, the aligned
augmentation, the class weights, the eval counts, and the trainer on the
synthetic scenes' label maps (learning, resume after kill -9, the trained
workdir as a segmenter)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, assert_user_error, kill_at_first_checkpoint, run_cli
from flax import nnx
from hypothesis import given
from hypothesis import strategies as st

from scenejax import input_pipeline, metrics, segment
from scenejax.errors import CheckpointError, ConfigError, DatasetError
from scenejax.models import deeplab, resnet
from scenejax.segment import __main__ as segment_command
from scenejax.tasks import segmentation
from scenejax.training import loop


def _torch_conv(conv, dilation=1, stride=1):
  torch = pytest.importorskip("torch")

  kernel = np.asarray(conv.kernel[...])
  out = torch.nn.Conv2d(
    kernel.shape[2],
    kernel.shape[3],
    kernel.shape[:2],
    stride=stride,
    padding=dilation * (kernel.shape[0] // 2),
    dilation=dilation,
    bias=conv.bias is not None,
  )
  with torch.no_grad():
    out.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1)))
    if conv.bias is not None:
      out.bias.copy_(torch.from_numpy(np.asarray(conv.bias[...])))
  return out


def _torch_bn(bn):
  torch = pytest.importorskip("torch")

  out = torch.nn.BatchNorm2d(bn.num_features, eps=bn.epsilon)
  with torch.no_grad():
    out.weight.copy_(torch.from_numpy(np.asarray(bn.scale[...])))
    out.bias.copy_(torch.from_numpy(np.asarray(bn.bias[...])))
    out.running_mean.copy_(torch.from_numpy(np.asarray(bn.mean[...])))
    out.running_var.copy_(torch.from_numpy(np.asarray(bn.var[...])))
  return out.eval()


def _torch_cbr(block, dilation=1):
  torch = pytest.importorskip("torch")

  return torch.nn.Sequential(
    _torch_conv(block.conv, dilation),
    _torch_bn(block.batch_norm),
    torch.nn.ReLU(),
  )


def _randomise_batch_stats(model, seed=0):
  """Non-trivial BatchNorm statistics, so eval-mode BN is really tested."""
  rng = np.random.default_rng(seed)
  for _, bn in nnx.iter_graph(model):
    if isinstance(bn, nnx.BatchNorm):
      n = bn.num_features
      bn.mean[...] = jnp.asarray(rng.normal(0, 0.5, n), jnp.float32)
      bn.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, n), jnp.float32)
      bn.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, n), jnp.float32)
      bn.bias[...] = jnp.asarray(rng.normal(0, 0.2, n), jnp.float32)


def _nchw(x):
  torch = pytest.importorskip("torch")

  return torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())


def test_decoder_and_heads_match_pytorch():
  """ASPP (dilated 3x3s + image pooling) -> fuse with the shallow map ->
  refine -> classifier and embedding head, against the same layers in
  PyTorch (torch's own dilated convolutions, eval-mode BatchNorm, bilinear
  upsampling with align_corners=False)."""
  torch = pytest.importorskip("torch")

  model = deeplab.deeplabv3plus_resnet_tiny(
    7,
    aspp_rates=(1, 2, 3),
    aspp_width=8,
    low_level_width=4,
    decoder_width=8,
    embedding_dim=5,
    rngs=nnx.Rngs(1),
  )
  _randomise_batch_stats(model)
  model.eval()
  rng = np.random.default_rng(0)
  low = rng.normal(0, 1, (2, 12, 10, 16)).astype(np.float32)
  high = rng.normal(0, 1, (2, 3, 3, 64)).astype(np.float32)
  features = model.decoder_features(jnp.asarray(low), jnp.asarray(high))
  logits, embeddings = model.head(features), model.embedding(features)

  aspp = model.aspp
  branches = [_torch_cbr(aspp.branches[0])] + [
    _torch_cbr(b, r) for b, r in zip(aspp.branches[1:], (1, 2, 3))
  ]
  with torch.no_grad():
    h = _nchw(high)
    outs = [b(h) for b in branches]
    pooled = _torch_cbr(aspp.pool)(h.mean(dim=(2, 3), keepdim=True))
    outs.append(pooled.expand_as(outs[0]))
    h = _torch_cbr(aspp.project)(torch.cat(outs, 1))
    h = torch.nn.functional.interpolate(
      h, size=(12, 10), mode="bilinear", align_corners=False
    )
    fused = torch.cat([h, _torch_cbr(model.low_level)(_nchw(low))], 1)
    for block in model.refine.layers:
      fused = _torch_cbr(block)(fused)
    want_logits = _torch_conv(model.head)(fused)
    emb = _torch_cbr(model.embedding.layers[0])(fused)
    want_emb = _torch_conv(model.embedding.layers[1])(emb)
  np.testing.assert_allclose(
    np.asarray(logits),
    want_logits.numpy().transpose(0, 2, 3, 1),
    rtol=1e-4,
    atol=1e-4,
  )
  np.testing.assert_allclose(
    np.asarray(embeddings),
    want_emb.numpy().transpose(0, 2, 3, 1),
    rtol=1e-4,
    atol=1e-4,
  )


def test_dilated_bottleneck_matches_pytorch():
  """The first block of ResNet-50's last stage at output stride 16: stride
  1, dilation 1 on its 3x3 (the stage's later blocks dilate by 2)."""
  torch = pytest.importorskip("torch")

  net = resnet.resnet50(0, output_stride=16, rngs=nnx.Rngs(0))
  assert net.stage_strides == (4, 8, 16, 16) and net.head is None
  assert resnet.resnet50(
    0, output_stride=8, rngs=nnx.Rngs(0)
  ).stage_strides == (
    4,
    8,
    8,
    8,
  )
  _randomise_batch_stats(net)
  net.eval()
  rng = np.random.default_rng(0)
  for index, dilation in ((0, 1), (1, 2)):
    block = net.stages[3].layers[index]
    width = 1024 if index == 0 else 2048
    x = rng.normal(0, 1, (1, 5, 6, width)).astype(np.float32)
    ours = np.asarray(block(jnp.asarray(x)))
    with torch.no_grad():
      t = _nchw(x)
      y = torch.relu(_torch_bn(block.bn1)(_torch_conv(block.conv1)(t)))
      y = torch.relu(
        _torch_bn(block.bn2)(_torch_conv(block.conv2, dilation)(y))
      )
      y = _torch_bn(block.bn3)(_torch_conv(block.conv3)(y))
      if block.downsample is not None:
        conv, bn = block.downsample.layers
        t = _torch_bn(bn)(_torch_conv(conv)(t))
      want = torch.relu(y + t).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_backbone_loads_imagenet_resnet_weights(tmp_path):
  """A Hugging Face ResNet-50 checkpoint (random weights, saved by
  transformers) fills the dilated backbone exactly; the decoder keeps its
  initialisation; another architecture is refused, naming the mismatch."""
  torch = pytest.importorskip("torch")
  import transformers

  from scenejax import models

  config = transformers.ResNetConfig(
    layer_type="bottleneck", depths=[3, 4, 6, 3], downsample_in_bottleneck=False
  )
  torch.manual_seed(0)
  hf = transformers.ResNetForImageClassification(config)
  hf.save_pretrained(tmp_path)
  model = models.create("deeplabv3plus_resnet50", 5, init_from=str(tmp_path))
  want = hf.resnet.encoder.stages[3].layers[2].layer[1].convolution.weight
  np.testing.assert_array_equal(
    np.asarray(model.backbone.stages[3].layers[2].conv2.kernel[...]),
    want.detach().numpy().transpose(2, 3, 1, 0),
  )
  assert model.backbone.stage_strides[-1] == 16
  with pytest.raises(CheckpointError, match="does not fit ResNet|depths"):
    models.create("deeplabv3plus_resnet101", 5, init_from=str(tmp_path))


@pytest.mark.slow
def test_convnext_backbone_loads_hugging_face_weights(tmp_path):
  """ConvNeXt-T (transformers, random weights) fills the backbone of
  deeplabv3plus_convnext_tiny; its head and head norm are left out; the
  ASPP sees the stride-16 map and the decoder the stride-4 one."""
  torch = pytest.importorskip("torch")
  import transformers

  from scenejax import models

  torch.manual_seed(0)
  hf = transformers.ConvNextForImageClassification(
    transformers.ConvNextConfig(depths=[3, 3, 9, 3])
  )
  hf.save_pretrained(tmp_path)
  model = models.create(
    "deeplabv3plus_convnext_tiny", 6, init_from=str(tmp_path),
    aspp_width=16, decoder_width=16,
  )  # fmt: skip
  want = hf.convnext.encoder.stages[2].layers[4].dwconv.weight
  np.testing.assert_array_equal(
    np.asarray(model.backbone.stages[2].blocks[4].dwconv.kernel[...]),
    want.detach().numpy().transpose(2, 3, 1, 0),
  )
  model.eval()
  logits, emb = model.decode_with_embeddings(jnp.zeros((1, 64, 96, 3)))
  assert logits.shape == (1, 16, 24, 6) and emb.shape == (1, 16, 24, 64)
  with pytest.raises(CheckpointError, match="Hugging Face resnet checkpoint"):
    models.create("deeplabv3plus_resnet50", 6, init_from=str(tmp_path))


@pytest.mark.slow
def test_dilated_convnext_keeps_the_undilated_outputs():
  """The a-trous rule: ConvNeXt at output stride 16 (8) with the weights
  of the stride-32 network computes, at every 2nd (2nd, 4th) row and
  column, exactly the stride-32 network's stage maps."""
  from scenejax.models import convnext

  def trunk(stride):
    return convnext.Trunk(
      "atto", layer_scale_init=0.5, output_stride=stride,
      dtype=jnp.float32, rngs=nnx.Rngs(0),
    )  # fmt: skip

  plain = trunk(32)
  x = jax.random.normal(jax.random.key(1), (2, 64, 96, 3))
  want = [np.asarray(m) for m in plain.stage_maps(x)]
  assert [m.shape[1] for m in want] == [16, 8, 4, 2]
  assert plain.stage_strides == (4, 8, 16, 32)
  for stride, steps, strides in (
    (16, (1, 1, 1, 2), (4, 8, 16, 16)),
    (8, (1, 1, 2, 4), (4, 8, 8, 8)),
  ):
    dilated = trunk(stride)
    nnx.update(dilated, nnx.state(plain, nnx.Param))
    assert dilated.stage_strides == strides
    got = dilated.stage_maps(x)
    for g, w, step in zip(got, want, steps):
      assert g.shape[1:3] == (w.shape[1] * step, w.shape[2] * step)
      np.testing.assert_allclose(
        np.asarray(g)[:, ::step, ::step], w, rtol=1e-4, atol=1e-4
      )


@given(seed=st.integers(0, 2**31), train=st.booleans())
def test_augmentation_keeps_image_and_map_aligned(seed, train):
  """Each label is drawn in its own colour; after scale, crop, pad and flip
  every labelled pixel away from a boundary still has its label's colour,
  and padding is unlabeled."""
  rng = np.random.default_rng(seed)
  h, w = rng.integers(20, 60, 2)
  label = np.zeros((h, w), np.uint8)
  for k in range(1, 5):  # four blocks
    top, left = rng.integers(0, h - 8), rng.integers(0, w - 8)
    label[top : top + 8, left : left + 8] = k
  colours = np.array(
    [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]],
    np.uint8,
  )
  image = colours[label]
  pre = input_pipeline.SegmentationPreprocess(
    train=train, crop_size=32, base_size=32, jitter=False
  )
  out = pre(
    {"image": image, "label": label, "name": "x"},
    np.random.default_rng(seed),
  )
  img, lab = out["image"].astype(int), out["label"]
  assert img.shape == (32, 32, 3) and lab.shape == (32, 32)
  assert lab.dtype == np.uint8 and set(np.unique(lab)) <= set(range(5))
  # Interior pixels: the label's 9x9 neighbourhood agrees (bilinear
  # upscaling by up to 3.2x blends colours within 4 px of a boundary, which
  # may lie just outside the crop).
  r = 4
  padded = np.pad(lab, r, constant_values=255)  # the crop's border: unknown
  interior = np.ones_like(lab, bool)
  for dy in range(-r, r + 1):
    for dx in range(-r, r + 1):
      interior &= padded[r + dy : 32 + r + dy, r + dx : 32 + r + dx] == lab
  check = interior & (lab > 0)
  np.testing.assert_array_equal(img[check], colours[lab[check]].astype(int))


def test_augmentation_decodes_jpeg_and_png_records():
  import io

  from PIL import Image

  image = np.full((40, 50, 3), 128, np.uint8)
  label = np.zeros((40, 50), np.uint8)
  label[10:30, 5:45] = 7
  jpeg, png = io.BytesIO(), io.BytesIO()
  Image.fromarray(image).save(jpeg, "JPEG")
  Image.fromarray(label).save(png, "PNG")
  pre = input_pipeline.SegmentationPreprocess(train=False, crop_size=64)
  out = pre({"image": jpeg.getvalue(), "label": png.getvalue(), "name": "r"})
  np.testing.assert_array_equal(out["label"][:40, :50], label)
  assert not out["label"][40:].any() and not out["label"][:, 50:].any()
  bad = {"image": b"not a jpeg", "label": png.getvalue(), "name": "bad"}
  assert pre(bad) is None and pre.skipped == 1
  broken = {"image": jpeg.getvalue(), "label": b"not a png", "name": "b"}
  assert pre(broken) is None and pre.skipped == 2
  rgb = io.BytesIO()
  Image.fromarray(image).save(rgb, "PNG")  # a colour picture as the map
  colour = {"image": jpeg.getvalue(), "label": rgb.getvalue(), "name": "c"}
  assert pre(colour) is None and pre.skipped == 3
  strict = input_pipeline.SegmentationPreprocess(
    train=False, crop_size=64, on_corrupt="raise"
  )
  with pytest.raises(DatasetError, match="c: label map unreadable .*RGB"):
    strict(colour)
  small = io.BytesIO()
  Image.fromarray(label[:30]).save(small, "PNG")
  wrong = {"image": jpeg.getvalue(), "label": small.getvalue(), "name": "w"}
  with pytest.raises(DatasetError, match="w: label map .* differ in size"):
    pre(wrong)


def test_class_weights_from_counts():
  counts = np.array([100, 0, 10, 1000, 50])
  present = counts > 0
  f = counts[present] / counts.sum()
  median = np.median(f)
  got = segmentation.class_weights_from_counts(counts, "median_frequency")
  np.testing.assert_allclose(got[present], median / f, rtol=1e-6)
  assert got[1] == 0
  got = segmentation.class_weights_from_counts(counts, "inverse")
  np.testing.assert_allclose(got[present], 1 / np.log(1.02 + f), rtol=1e-6)
  assert np.all(segmentation.class_weights_from_counts(counts, "uniform") == 1)
  maps = [np.array([[0, 1, 1], [3, 3, 3]]), np.array([[5, 0, 200]])]
  np.testing.assert_array_equal(
    segmentation.class_frequencies(maps, 5), [2, 0, 3, 0, 1]
  )


def test_class_weights_command_and_file(tmp_path):
  """`prototype class_weights` over the synthetic training maps equals
  median-frequency weights counted here with NumPy; the trainer reads the
  file; bad input is one line naming the flag or the file."""
  from scenejax import datasets
  from scenejax.datasets import synthetic

  out = tmp_path / "weights.npz"
  proc = run_cli(
    "scenejax.prototype",
    "class_weights",
    "--dataset=synthetic_scenes",
    f"--out={out}",
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  _, train_split, _ = synthetic.load()
  counts = np.bincount(train_split.label_maps.ravel(), minlength=33)[1:]
  freq = counts / counts.sum()
  want = np.median(freq[counts > 0]) / np.where(counts > 0, freq, np.inf)
  with np.load(out) as f:
    np.testing.assert_allclose(f["class_weights"], want, rtol=1e-6)
    np.testing.assert_array_equal(f["pixel_counts"], counts)
  config = _seg_config()
  config.segmentation.class_weights = str(out)
  data = datasets.segmentation_from_config(config)
  got = segmentation.class_weights_for(config, data, str(tmp_path))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  config.segmentation.class_weights = str(tmp_path / "missing.npz")
  with pytest.raises(ConfigError, match="missing.npz.*no such file"):
    segmentation.class_weights_for(config, data, str(tmp_path))
  proc = run_cli(
    "scenejax.prototype", "class_weights", "--dataset=mit67", f"--out={out}"
  )
  assert_user_error(proc, "--dataset=mit67 has no label maps")


def test_eval_step_counts_equal_the_confusion_of_the_maps():
  model = deeplab.deeplabv3plus_resnet_tiny(
    6, aspp_rates=(1, 2, 3), aspp_width=8, low_level_width=4,
    decoder_width=8, embedding_dim=4, rngs=nnx.Rngs(0),
  )  # fmt: skip
  graphdef, state = nnx.split((model,))  # the trainer's (model, optimizer)
  rng = np.random.default_rng(0)
  batch = {
    "image": rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8),
    "label": rng.integers(0, 8, (3, 16, 16)).astype(np.uint8),  # 7 > K
    "mask": np.array([True, True, False]),
  }
  counts = segmentation.eval_step(
    graphdef, state, batch, num_classes=6, mean=(0.5,) * 3, std=(0.25,) * 3
  )
  model.eval()
  x = (batch["image"] / 255.0 - 0.5) / 0.25
  predicted = np.asarray(jnp.argmax(model(jnp.asarray(x, jnp.float32)), -1))
  want = metrics.segmentation_confusion(
    predicted[:2] + 1, batch["label"][:2], num_classes=6
  )
  np.testing.assert_array_equal(np.asarray(counts), want)


def _seg_config(num_epochs=2, per_class=12):
  from configs import demo_segmentation

  config = demo_segmentation.get_config()
  config.data.update(train_per_class=per_class, test_per_class=5)
  config.update(num_epochs=num_epochs, batch_size=16, eval_batch_size=40)
  config.progress_bar = False
  return config


def test_segmentation_config_errors(tmp_path):
  config = _seg_config()
  config.model = "resnet_tiny"
  with pytest.raises(ConfigError, match="config.model = 'resnet_tiny'"):
    loop.train_and_evaluate(config, str(tmp_path))
  config = _seg_config()
  config.dataset = "mit67"
  with pytest.raises(ConfigError, match="has no label maps"):
    loop.train_and_evaluate(config, str(tmp_path))
  config = _seg_config()
  config.segmentation.class_weights = "median"
  with pytest.raises(ConfigError, match="'median': neither one of uniform"):
    loop.train_and_evaluate(config, str(tmp_path))
  config = _seg_config()
  config.optimizer.backbone_learning_rate = 1e-5
  with pytest.raises(ConfigError, match="only the segmenter's 1x1 classifier"):
    loop.train_and_evaluate(config, str(tmp_path))
  assert not os.listdir(tmp_path)  # refused before anything was written
  proc = run_cli(
    "scenejax.main",
    "--config=configs/demo_segmentation.py:bogus",
    f"--workdir={tmp_path / 'w'}",
  )
  assert_user_error(proc, "bogus", "ce, focal, uniform, supcon")


_RUN = """
import sys
sys.path.insert(0, {repo!r}); sys.path.insert(0, {tests!r})
import test_segmentation
from scenejax.training import loop
loop.train_and_evaluate(test_segmentation._seg_config(3, per_class=25), sys.argv[1])
"""


@pytest.mark.slow
def test_segmentation_learns_resumes_after_kill_9_and_serves_as_segmenter(
  tmp_path,
):
  """The demo, shortened (200 maps, 3 epochs): it beats the majority-class
  baseline by far; a run killed with SIGKILL once its first checkpoint is
  on disk resumes to the same parameters bit for bit (the contrastive
  sample is keyed by the optimizer step, the crops by (seed, position));
  the workdir then serves `scenejax.segment`, whose maps are the trained
  model's."""
  import test_trainer

  from scenejax import datasets

  config = _seg_config(3, per_class=25)
  reference = tmp_path / "uninterrupted"
  result = loop.train_and_evaluate(config, str(reference))
  data = datasets.segmentation_from_config(config)
  labelled = np.concatenate([m[m > 0] for m in data.test.label_maps()])
  # Predicting the majority class everywhere: pixel accuracy = its share;
  # mIoU = its IoU (= its share) over the classes present.
  baseline_pixacc = np.mean(labelled == np.bincount(labelled).argmax())
  baseline_miou = baseline_pixacc / len(np.unique(labelled))
  assert result["pixel_accuracy"] > baseline_pixacc + 0.2, result
  assert result["mIoU"] > 5 * baseline_miou, (result, baseline_miou)
  assert len(result["confusion"]) == 32 and len(result["per_class_iou"]) == 32
  assert result["compiles"] == 1
  weights = np.load(reference / "class_weights.npz")
  assert str(weights["method"]) == "median_frequency"

  workdir = str(tmp_path / "killed")
  script = _RUN.format(repo=str(REPO), tests=str(REPO / "tests"))
  kill_at_first_checkpoint(script, workdir)
  resumed = loop.train_and_evaluate(config, workdir)
  assert resumed["mIoU"] == result["mIoU"]
  assert resumed["confusion"] == result["confusion"]
  test_trainer._assert_same_params(workdir, str(reference))

  # The run's checkpoint is a segmenter like the imported ones.
  model = segment.load_segmenter("deeplabv3plus_resnet_tiny", str(reference))
  assert segment.checkpoint_label_names(str(reference)) == list(
    data.class_names
  )
  images = np.stack([data.test[i]["image"] for i in range(4)])
  predictor = segment.Predictor(model, batch_size=4, resize=segment.Resize(32))
  maps = [ids[..., 0] for ids, _ in predictor(list(images))]
  x = (images / 255.0 - np.array(model.pixel_mean)) / np.array(model.pixel_std)
  direct = np.asarray(jnp.argmax(model(jnp.asarray(x, jnp.float32)), -1))
  np.testing.assert_array_equal(np.stack(maps), direct)
  with pytest.raises(ConfigError, match="not a segmentation run of"):
    segment.load_segmenter("deeplabv3plus_resnet50", str(reference))

  # Its report: curves, per-class IoU, predictions, pixel-embedding t-SNE.
  from scenejax import report

  figures = report.workdir_report(str(reference), str(tmp_path / "report"))
  for key in ("curves", "class_iou", "examples", "pixel_tsne", "html"):
    assert os.path.getsize(figures[key]) > 1000, key
  html = open(figures["html"]).read()
  assert f"mIoU {max(r['mIoU'] for r in _history(reference)):.4f}" in html


def _history(workdir):
  import json

  return [json.loads(line) for line in open(workdir / "metrics.jsonl")]


def _cityscapes_zips(manual, rng):
  """The two Cityscapes zips, as downloaded, with 2048x1024 PNGs: per split
  one city of `count` images; labelIds in blocks (road 7, car 26, void 0,
  license plate -1 = 255 as stored) and the expected scenejax ids."""
  import io
  import zipfile

  from PIL import Image

  manual.mkdir(parents=True)
  expected = {}
  with (
    zipfile.ZipFile(manual / "leftImg8bit_trainvaltest.zip", "w") as images,
    zipfile.ZipFile(manual / "gtFine_trainvaltest.zip", "w") as labels,
  ):
    for split, count in (("train", 4), ("val", 2), ("test", 1)):
      for i in range(count):
        image_id = f"aachen_{i:06d}_000019"
        ids = np.zeros((1024, 2048), np.uint8)
        ids[:512] = 7  # road -> trainId 0 -> id 1
        ids[512:, : 1024 + 256 * i] = 26  # car -> trainId 13 -> id 14
        ids[1000:, :100] = 255  # license plate: ignored
        picture = np.zeros((1024, 2048, 3), np.uint8)
        picture[..., 0] = ids  # colour follows the map
        picture[..., 1] = rng.integers(0, 256)
        for archive, data, folder, suffix in (
          (images, picture, "leftImg8bit", "leftImg8bit"),
          (labels, ids, "gtFine", "gtFine_labelIds"),
        ):
          buffer = io.BytesIO()
          Image.fromarray(data).save(buffer, "PNG")
          archive.writestr(
            f"{folder}/{split}/aachen/{image_id}_{suffix}.png",
            buffer.getvalue(),
          )
        want = np.zeros_like(ids)
        want[ids == 7], want[ids == 26] = 1, 14
        expected[(split, image_id)] = want
  return expected


@pytest.mark.slow
def test_cityscapes_through_tfds_and_the_trainer(tmp_path):
  """TFDS's own Cityscapes builder prepared from zips laid out as the
  download; labelIds become ids 1..19 (trainId + 1), others 0; one epoch
  of the segmentation trainer on it (decode, scale, crop, evaluate)."""
  import tensorflow_datasets as tfds

  from scenejax import datasets
  from scenejax.datasets import cityscapes

  expected = _cityscapes_zips(tmp_path / "manual", np.random.default_rng(0))
  builder = tfds.builder(cityscapes.TFDS_NAME, data_dir=str(tmp_path / "tfds"))
  builder.download_and_prepare(
    file_format="array_record",
    download_config=tfds.download.DownloadConfig(
      manual_dir=str(tmp_path / "manual")
    ),
  )
  config = _seg_config(num_epochs=1)
  config.dataset = "cityscapes"
  config.data.data_dir = str(tmp_path / "tfds")
  config.update(batch_size=2, eval_batch_size=2)
  config.segmentation.update(crop_size=64, base_size=64)
  data = datasets.segmentation_from_config(config)
  assert data.class_names[0] == "road" and len(data.class_names) == 19
  assert (len(data.train), len(data.test)) == (4, 2)
  for i, got in enumerate(data.test.label_maps()):
    image_id = data.test[i]["name"].split()[-1]
    np.testing.assert_array_equal(got, expected[("val", image_id)])
  prepare = input_pipeline.SegmentationPreprocess(train=False, crop_size=512)
  out = prepare(data.test[0])
  assert set(np.unique(out["label"])) <= {0, 1, 14}
  # 2048x1024 fits 512x512 as 512x256: road above, car / void below,
  # then padding.
  assert (out["label"][:128] == 1).all() and not out["label"][256:].any()
  assert (out["label"][128:256] == 14).any()
  result = loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert result["epoch"] == 1 and len(result["per_class_iou"]) == 19
  # Only road and car occur: the other classes have no IoU.
  present = [i for i, v in enumerate(result["per_class_iou"]) if v is not None]
  assert present == [0, 13]
  config.task = "classification"
  with pytest.raises(ConfigError, match="set config.task = 'segmentation'"):
    loop.train_and_evaluate(config, str(tmp_path / "bad"))


def _softmax64(logits):
  logits = np.asarray(logits, np.float64)
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _tiny_deeplab():
  model = deeplab.deeplabv3plus_resnet_tiny(
    5, aspp_rates=(1, 2, 3), aspp_width=8, low_level_width=4,
    decoder_width=8, embedding_dim=4, rngs=nnx.Rngs(2),
  )  # fmt: skip
  model.eval()
  return model


def _top5_probabilities(ids, scores):
  got = np.zeros(ids.shape[:2] + (5,))
  np.put_along_axis(got, ids.astype(int), scores, -1)
  return got


def test_flip_evaluation_averages_mirrored_probabilities():
  """`Predictor(flip=True)`: the mean of the softmax of the image and of
  the mirrored image mirrored back, mmsegmentation's convention
  (reference written here)."""
  model = _tiny_deeplab()
  image = np.random.default_rng(0).integers(0, 256, (32, 64, 3), np.uint8)
  predictor = segment.Predictor(
    model, batch_size=1, top_k=5, resize=segment.Resize(32), flip=True
  )
  [(ids, scores)] = predictor([image])
  x = (image / 255.0 - np.array(model.pixel_mean)) / np.array(model.pixel_std)
  x = jnp.asarray(x[None], jnp.float32)
  probs = _softmax64(model(x)[0])
  mirrored = _softmax64(model(x[:, :, ::-1])[0, :, ::-1])
  want = (probs + mirrored) / 2
  np.testing.assert_allclose(_top5_probabilities(ids, scores), want, atol=1e-5)
  assert not np.allclose(want, probs, atol=1e-3)  # the flip did something


@pytest.mark.slow
def test_multi_scale_evaluation_averages_rescaled_probabilities():
  """`Predictor(scales=...)`: for each factor the normalised image resized
  (torch's bilinear, antialiased when shrinking: PIL's filter), padded
  with 0 to the multiple of 32, the softmax cropped and resized back
  (not antialiased, as mmsegmentation), and the factors' probabilities
  averaged (float64 reference here)."""
  torch = pytest.importorskip("torch")
  F = pytest.importorskip("torch.nn.functional")

  model = _tiny_deeplab()
  image = np.random.default_rng(1).integers(0, 256, (64, 96, 3), np.uint8)
  scales = (0.75, 1.0, 1.5)
  predictor = segment.Predictor(
    model, batch_size=1, top_k=5, resize=segment.Resize(64), scales=scales
  )
  [(ids, scores)] = predictor([image])
  x = (image / 255.0 - np.array(model.pixel_mean)) / np.array(model.pixel_std)
  nchw = torch.from_numpy(x.transpose(2, 0, 1)[None])
  total = np.zeros((64, 96, 5))
  for r in scales:
    h, w = round(64 * r), round(96 * r)
    scaled = F.interpolate(
      nchw, (h, w), mode="bilinear", align_corners=False, antialias=r < 1
    )
    padded = F.pad(scaled, (0, -(-w // 32) * 32 - w, 0, -(-h // 32) * 32 - h))
    logits = model(jnp.asarray(padded[0].numpy().transpose(1, 2, 0)[None],
                               jnp.float32))  # fmt: skip
    probs = torch.from_numpy(_softmax64(logits[0])[:h, :w].transpose(2, 0, 1))
    back = F.interpolate(
      probs[None], (64, 96), mode="bilinear", align_corners=False
    )
    total += back[0].numpy().transpose(1, 2, 0)
  want = total / len(scales)
  np.testing.assert_allclose(_top5_probabilities(ids, scores), want, atol=1e-4)
  single = segment.Predictor(
    model, batch_size=1, top_k=5, resize=segment.Resize(64)
  )([image])[0]
  assert not np.allclose(_top5_probabilities(*single), want, atol=1e-3)
  with pytest.raises(ConfigError, match="--scales=0.0"):
    segment.Predictor(model, scales=(0.0,))
  with pytest.raises(ConfigError, match="--scales=1,x: need numbers"):
    segment_command._factors(["1", "x"])
