"""Backbones and pretrained loading against the reference implementations.

Hugging Face transformers (PyTorch, CPU) is the reference for ViT, ResNet
and ConvNeXt: a random-init model is saved as safetensors, loaded with
`init_from`, and both are run on the same input. The big_vision .npz path
is checked against an independent float64 NumPy ViT written below.
"""

import json
import os

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
from flax import nnx
from hypothesis import strategies as st
from parity import assert_close as _assert_close
from parity import images as _images
from parity import logits as _logits

from scenejax import models
from scenejax.models import pretrained, resnet, vit

# The PyTorch references (the test extra); skipped where torch is absent.
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# Published parameter counts with a 1000-class head (torchvision / timm /
# the papers). big_vision's ViT adds the position embedding before the
# class token is prepended, so it has no position embedding for the class
# token: one vector (width) fewer than timm/HF count for the same network.
PUBLISHED = {
  "resnet18": 11_689_512,
  "resnet34": 21_797_672,
  "resnet50": 25_557_032,
  "vit_ti16": 5_717_416 - 192,
  "vit_s16": 22_050_664 - 384,
  "vit_b16": 86_567_656 - 768,
  "vit_l16": 304_326_632 - 1024,
  "convnext_tiny": 28_589_128,
  "convnext_small": 50_223_688,
  "convnext_base": 88_591_464,
  "mobilenetv3_large": 5_483_032,
  "vgg16": 138_357_544,
  "vgg16_bn": 138_365_992,
  "densenet121": 7_978_856,
  "densenet161": 28_681_000,
  "densenet169": 14_149_480,
  "densenet201": 20_013_928,
  "shufflenet_v2_x0_5": 1_366_792,
  "shufflenet_v2_x1_0": 2_278_604,
  "shufflenet_v2_x1_5": 3_503_624,
  "shufflenet_v2_x2_0": 7_393_996,
  "swin_t": 28_288_354,
  "swin_s": 49_606_258,
  "swin_b": 87_768_224,
  "mobilevit_s": 5_578_632,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_match_published(name):
  model = nnx.eval_shape(lambda: models.create(name, 1000))
  assert models.num_params(model) == PUBLISHED[name]


def _randomize(hf):
  """Non-trivial weights everywhere: BN statistics, norms, layer scales."""
  torch.manual_seed(0)
  with torch.no_grad():
    for module in hf.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.running_mean.uniform_(-0.5, 0.5)
        module.running_var.uniform_(0.5, 2.0)
        module.weight.uniform_(0.5, 1.5)
        module.bias.uniform_(-0.5, 0.5)
      elif isinstance(module, torch.nn.LayerNorm):
        module.weight.uniform_(0.5, 1.5)
        module.bias.uniform_(-0.5, 0.5)
    for name, p in hf.named_parameters():
      if "layer_scale" in name:
        p.uniform_(0.5, 1.0)
  return hf.eval()


def _save(hf, path):
  hf.save_pretrained(path)
  return str(path)


def _torch_logits(hf, x, **kw):
  with torch.no_grad():
    out = hf(torch.from_numpy(x.transpose(0, 3, 1, 2)), **kw)
  return out


@nnx.jit
def _embed(model, x):
  return model.embed(x)


@nnx.jit
def _forward_features(model, x):
  return model.forward_features(x)


def _small_vit(**kw):
  config = dict(
    hidden_size=192,
    num_hidden_layers=12,
    num_attention_heads=3,
    intermediate_size=768,
    image_size=32,
    patch_size=16,
    num_labels=5,
  )
  config.update(kw)
  return _randomize(
    transformers.ViTForImageClassification(transformers.ViTConfig(**config))
  )


def _resnet(kind, num_labels=7):
  widths = (
    [256, 512, 1024, 2048] if kind == "bottleneck" else [64, 128, 256, 512]
  )
  depths = [3, 4, 6, 3] if kind == "bottleneck" else [2, 2, 2, 2]
  return _randomize(
    transformers.ResNetForImageClassification(
      transformers.ResNetConfig(
        embedding_size=64,
        hidden_sizes=widths,
        depths=depths,
        layer_type=kind,
        num_labels=num_labels,
      )
    )
  )


def _convnext(variant="tiny", num_labels=7):
  depths, widths = {
    "tiny": ([3, 3, 9, 3], [96, 192, 384, 768]),
    "base": ([3, 3, 27, 3], [128, 256, 512, 1024]),
  }[variant]
  return _randomize(
    transformers.ConvNextForImageClassification(
      transformers.ConvNextConfig(
        depths=depths, hidden_sizes=widths, num_labels=num_labels
      )
    )
  )


@pytest.mark.parametrize(
  "act", ["gelu", pytest.param("gelu_pytorch_tanh", marks=pytest.mark.slow)]
)
def test_vit_matches_transformers(tmp_path, act):
  hf = _small_vit(
    hidden_act=act, layer_norm_eps=1e-6 if act == "gelu" else 1e-12
  )
  model = models.create(
    "vit_ti16", 5, init_from=_save(hf, tmp_path), image_size=32
  )
  assert model.blocks[0].gelu_approximate == (act != "gelu")
  x = _images(32)
  _assert_close(_logits(model, jnp.asarray(x)), _torch_logits(hf, x).logits)


def test_vit_resized_posemb_matches_transformers_interpolation_shape(tmp_path):
  """A 32 px checkpoint fine-tuned at 64 px: posemb grid 2x2 -> 4x4."""
  hf = _small_vit()
  model = models.create(
    "vit_ti16", 5, init_from=_save(hf, tmp_path), image_size=64
  )
  assert model.pos_embedding[...].shape == (1, 16, 192)
  out = _logits(model, jnp.asarray(_images(64)))
  assert out.shape == (2, 5) and np.isfinite(out).all()


@pytest.mark.parametrize(
  "kind,name",
  [
    pytest.param("bottleneck", "resnet50", marks=pytest.mark.slow),
    pytest.param("basic", "resnet18", marks=pytest.mark.slow),
  ],
)
def test_resnet_matches_transformers(tmp_path, kind, name):
  hf = _resnet(kind)
  model = models.create(name, 7, init_from=_save(hf, tmp_path))
  model.eval()
  x = _images(64)
  ref = _torch_logits(hf, x, output_hidden_states=True)
  _assert_close(_logits(model, jnp.asarray(x)), ref.logits)
  # The CAM module's input, stage 3, is HF's hidden state 3 (NCHW).
  _, maps = _forward_features(model, jnp.asarray(x))
  _assert_close(
    maps[model.default_cam_stage],
    ref.hidden_states[3].numpy().transpose(0, 2, 3, 1),
  )


@pytest.mark.slow
def test_convnext_matches_transformers(tmp_path):
  hf = _convnext()
  model = models.create("convnext_tiny", 7, init_from=_save(hf, tmp_path))
  x = _images(64)
  _assert_close(_logits(model, jnp.asarray(x)), _torch_logits(hf, x).logits)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_b16", "resnet50", "convnext_base"])
def test_full_size_matches_transformers(tmp_path, name):
  """Once each at full size and 224 px, with a 1000-class head."""
  if name == "vit_b16":
    hf = _randomize(
      transformers.ViTForImageClassification(
        transformers.ViTConfig(num_labels=1000)
      )
    )
  elif name == "resnet50":
    hf = _resnet("bottleneck", num_labels=1000)
  else:
    hf = _convnext("base", num_labels=1000)
  model = models.create(name, 1000, init_from=_save(hf, tmp_path))
  model.eval()
  x = _images(224, n=1)
  _assert_close(_logits(model, jnp.asarray(x)), _torch_logits(hf, x).logits)


def test_feature_extractor_checkpoint_keeps_fresh_head(tmp_path):
  """ViTModel (no classifier, with pooler): backbone loads, head stays."""
  hf = transformers.ViTModel(
    transformers.ViTConfig(
      hidden_size=192,
      num_hidden_layers=12,
      num_attention_heads=3,
      intermediate_size=768,
      image_size=32,
    ),
    add_pooling_layer=True,
  )
  _randomize(hf)
  model = models.create(
    "vit_ti16", 9, init_from=_save(hf, tmp_path), image_size=32
  )
  x = _images(32)
  ref = _torch_logits(hf, x).last_hidden_state[:, 0]
  _assert_close(_embed(model, jnp.asarray(x)), ref)
  assert not np.any(model.head.kernel[...])  # ViT's zero-initialised head


def test_head_of_other_class_count_is_reinitialised(tmp_path):
  hf = _resnet("basic", num_labels=7)
  model = models.create("resnet18", 3, init_from=_save(hf, tmp_path))
  model.eval()
  x = _images(64)
  ref = _torch_logits(hf, x, output_hidden_states=True)
  pooled = ref.hidden_states[-1].numpy().mean(axis=(2, 3))
  _assert_close(_embed(model, jnp.asarray(x)), pooled)
  assert model.head.kernel[...].shape == (512, 3)


# ----------------------------------------------------------------------------
# big_vision / vit_jax .npz, against an independent float64 NumPy ViT.


def _random_vit_jax_arrays(
  width=192, depth=12, heads=3, mlp=768, grid=2, num_classes=5, seed=0
):
  """A random ViT in the AugReg (pre-Linen) key layout, posemb incl. cls."""
  rng = np.random.default_rng(seed)
  hd = width // heads

  def r(*shape, scale=0.1):
    return (scale * rng.standard_normal(shape)).astype(np.float32)

  a = {
    "embedding/kernel": r(16, 16, 3, width, scale=0.05),
    "embedding/bias": r(width),
    "cls": r(1, 1, width),
    "Transformer/posembed_input/pos_embedding": r(1, grid * grid + 1, width),
    "Transformer/encoder_norm/scale": 1 + r(width),
    "Transformer/encoder_norm/bias": r(width),
    "head/kernel": r(width, num_classes),
    "head/bias": r(num_classes),
  }
  for i in range(depth):
    b = f"Transformer/encoderblock_{i}/"
    a[b + "LayerNorm_0/scale"], a[b + "LayerNorm_0/bias"] = (
      1 + r(width),
      r(width),
    )
    a[b + "LayerNorm_2/scale"], a[b + "LayerNorm_2/bias"] = (
      1 + r(width),
      r(width),
    )
    for p in ("query", "key", "value"):
      a[b + f"MultiHeadDotProductAttention_1/{p}/kernel"] = r(width, heads, hd)
      a[b + f"MultiHeadDotProductAttention_1/{p}/bias"] = r(heads, hd)
    a[b + "MultiHeadDotProductAttention_1/out/kernel"] = r(heads, hd, width)
    a[b + "MultiHeadDotProductAttention_1/out/bias"] = r(width)
    a[b + "MlpBlock_3/Dense_0/kernel"] = r(width, mlp)
    a[b + "MlpBlock_3/Dense_0/bias"] = r(mlp)
    a[b + "MlpBlock_3/Dense_1/kernel"] = r(mlp, width)
    a[b + "MlpBlock_3/Dense_1/bias"] = r(width)
  return a


def _numpy_vit(a, x, depth=12, eps=1e-6):
  """Float64 forward of the vit_jax layout: tanh GELU, cls + posemb."""
  a = {k: v.astype(np.float64) for k, v in a.items()}
  x = x.astype(np.float64)
  n, h, w, _ = x.shape
  k = a["embedding/kernel"]
  p = k.shape[0]
  patches = (
    x.reshape(n, h // p, p, w // p, p, 3)
    .transpose(0, 1, 3, 2, 4, 5)
    .reshape(n, (h // p) * (w // p), -1)
  )
  tok = patches @ k.reshape(-1, k.shape[-1]) + a["embedding/bias"]
  cls = np.broadcast_to(a["cls"], (n, 1, tok.shape[-1]))
  tok = (
    np.concatenate([cls, tok], 1)
    + a["Transformer/posembed_input/pos_embedding"]
  )

  def ln(v, prefix):
    mu = v.mean(-1, keepdims=True)
    var = ((v - mu) ** 2).mean(-1, keepdims=True)
    return (v - mu) / np.sqrt(var + eps) * a[prefix + "/scale"] + a[
      prefix + "/bias"
    ]

  def gelu_tanh(v):
    return 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v**3)))

  for i in range(depth):
    b = f"Transformer/encoderblock_{i}/"
    att = b + "MultiHeadDotProductAttention_1/"
    y = ln(tok, b + "LayerNorm_0")
    q, kk, v = (
      np.einsum("nld,dhk->nlhk", y, a[att + f"{t}/kernel"])
      + a[att + f"{t}/bias"]
      for t in ("query", "key", "value")
    )
    logits = np.einsum("nqhk,nlhk->nhql", q, kk) / np.sqrt(q.shape[-1])
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    o = np.einsum("nhql,nlhk->nqhk", weights, v)
    tok = (
      tok
      + np.einsum("nqhk,hkd->nqd", o, a[att + "out/kernel"])
      + a[att + "out/bias"]
    )
    y = ln(tok, b + "LayerNorm_2")
    mlp = b + "MlpBlock_3/"
    y = gelu_tanh(y @ a[mlp + "Dense_0/kernel"] + a[mlp + "Dense_0/bias"])
    tok = tok + y @ a[mlp + "Dense_1/kernel"] + a[mlp + "Dense_1/bias"]
  tok = ln(tok, "Transformer/encoder_norm")
  return tok[:, 0] @ a["head/kernel"] + a["head/bias"]


def _linen_names(arrays):
  """The same weights under big_vision's Linen names (posemb without cls)."""
  out = {}
  for k, v in arrays.items():
    k = (
      k.replace(
        "MultiHeadDotProductAttention_1", "MultiHeadDotProductAttention_0"
      )
      .replace("LayerNorm_2", "LayerNorm_1")
      .replace("MlpBlock_3", "MlpBlock_0")
    )
    out[k] = v
  pe = out.pop("Transformer/posembed_input/pos_embedding")
  out["pos_embedding"] = pe[:, 1:]
  out["cls"] = out["cls"] + pe[:, :1]
  return out


def _scanned(arrays):
  """Linen names with the blocks stacked on a leading axis (scan layout)."""
  out, stacked = {}, {}
  for k, v in arrays.items():
    if k.startswith("Transformer/encoderblock_"):
      i, rest = k[len("Transformer/encoderblock_") :].split("/", 1)
      stacked.setdefault(rest, {})[int(i)] = v
    else:
      out[k] = v
  for rest, blocks in stacked.items():
    out["Transformer/encoderblock/" + rest] = np.stack(
      [blocks[i] for i in sorted(blocks)]
    )
  return out


@pytest.mark.parametrize("layout", ["vit_jax", "linen", "scanned"])
def test_big_vision_npz_matches_numpy_reference(tmp_path, layout):
  arrays = _random_vit_jax_arrays()
  x = _images(32)
  expected = _numpy_vit(arrays, x)
  stored = {
    "vit_jax": arrays,
    "linen": _linen_names(arrays),
    "scanned": _scanned(_linen_names(arrays)),
  }[layout]
  path = tmp_path / "B_16-i21k-300ep-lr_0.001-aug_medium1.npz"
  np.savez(path, **stored)
  model = models.create("vit_ti16", 5, init_from=str(path), image_size=32)
  assert (model.pixel_mean, model.pixel_std) == vit.SIGNED_UNIT
  assert model.blocks[0].gelu_approximate
  _assert_close(_logits(model, jnp.asarray(x)), expected)


def test_big_vision_pre_logits_dropped_and_head_reinitialised(tmp_path):
  arrays = _random_vit_jax_arrays(num_classes=21843)
  arrays["pre_logits/kernel"] = np.zeros((192, 192), np.float32)
  arrays["pre_logits/bias"] = np.zeros((192,), np.float32)
  np.savez(tmp_path / "i21k.npz", **arrays)
  model = models.create(
    "vit_ti16", 5, init_from=str(tmp_path / "i21k.npz"), image_size=32
  )
  assert not np.any(model.head.kernel[...])


def test_resample_posemb():
  rng = np.random.default_rng(0)
  pe = rng.standard_normal((1, 16, 8)).astype(np.float32)
  assert vit.resample_posemb(pe, 4) is pe
  const = np.ones((1, 4, 8), np.float32) * np.arange(8)
  np.testing.assert_allclose(
    vit.resample_posemb(const, 5), np.ones((1, 25, 8)) * np.arange(8), atol=1e-6
  )
  with pytest.raises(pretrained.CheckpointError, match="square"):
    vit.resample_posemb(pe[:, :15], 4)


# ----------------------------------------------------------------------------
# Bad checkpoints: each a clear error, never a partial load.


def _edit_safetensors(path, edit):
  file = os.path.join(path, "model.safetensors")
  tensors = safetensors.numpy.load_file(file)
  edit(tensors)
  safetensors.numpy.save_file(tensors, file)


def test_missing_key_is_an_error_and_model_untouched(tmp_path):
  path = _save(_resnet("basic"), tmp_path)
  _edit_safetensors(
    path,
    lambda t: t.pop(
      "resnet.encoder.stages.2.layers.1.layer.0.convolution.weight"
    ),
  )
  with pytest.raises(
    pretrained.CheckpointError,
    match=r"1 missing keys: stages/2/layers/1/conv1/kernel",
  ):
    models.create("resnet18", 7, init_from=path)
  model = models.create("resnet18", 7)
  before = np.array(model.stem_conv.kernel[...])
  with pytest.raises(pretrained.CheckpointError):
    pretrained.assign(
      model, resnet.from_hf(pretrained.read_hf(path)[1]), source=path
    )
  np.testing.assert_array_equal(model.stem_conv.kernel[...], before)


@pytest.mark.slow
def test_unexpected_key_is_an_error(tmp_path):
  path = _save(_convnext(), tmp_path)
  _edit_safetensors(
    path,
    lambda t: t.update(
      {
        "convnext.encoder.stages.0.layers.0.extra.weight": np.zeros(
          (3, 3), np.float32
        )
      }
    ),
  )
  with pytest.raises(
    pretrained.CheckpointError, match=r"1 unexpected keys: .*extra/kernel"
  ):
    models.create("convnext_tiny", 7, init_from=path)


def test_wrong_shape_is_an_error(tmp_path):
  path = _save(_small_vit(), tmp_path)
  _edit_safetensors(
    path,
    lambda t: t.update(
      {
        "vit.encoder.layer.3.intermediate.dense.bias": np.zeros(
          (700,), np.float32
        )
      }
    ),
  )
  with pytest.raises(
    pretrained.CheckpointError,
    match=r"shape mismatches: blocks/3/mlp1/bias: "
    r"checkpoint \(700,\) vs model \(768,\)",
  ):
    models.create("vit_ti16", 5, init_from=path, image_size=32)


def test_integer_tensor_is_refused_not_cast(tmp_path):
  """Issue 13: an int64 tensor of the right shape was cast to float and
  loaded as a weight."""
  path = _save(_small_vit(), tmp_path)
  _edit_safetensors(
    path,
    lambda t: t.update(
      {"vit.encoder.layer.3.intermediate.dense.bias": np.arange(768)}
    ),
  )
  with pytest.raises(
    pretrained.CheckpointError,
    match=r"1 non-floating-point tensors .*: blocks/3/mlp1/bias: int64",
  ):
    models.create("vit_ti16", 5, init_from=path, image_size=32)


@pytest.mark.slow
def test_wrong_architecture_is_an_error(tmp_path):
  vit_path = _save(_small_vit(), tmp_path / "vit")
  with pytest.raises(
    pretrained.CheckpointError, match="'vit' checkpoint.*not 'resnet'"
  ):
    models.create("resnet50", 7, init_from=vit_path)
  res_path = _save(_resnet("basic"), tmp_path / "r18")
  with pytest.raises(
    pretrained.CheckpointError,
    match=r"depths=\[2, 2, 2, 2\] \(model has \[3, 4, 6, 3\]\)",
  ):
    models.create("resnet34", 7, init_from=res_path)
  with pytest.raises(
    pretrained.CheckpointError, match="hidden_size=192 \\(model has 384\\)"
  ):
    models.create("vit_s16", 5, init_from=vit_path, image_size=32)


def test_unreadable_files_are_errors(tmp_path):
  with pytest.raises(pretrained.CheckpointError, match="does not exist"):
    models.create("resnet18", 3, init_from=str(tmp_path / "nope"))
  (tmp_path / "bad.npz").write_bytes(b"not a zip")
  with pytest.raises(pretrained.CheckpointError, match="bad.npz: not an .npz"):
    models.create("vit_ti16", 3, init_from=str(tmp_path / "bad.npz"))
  np.savez(tmp_path / "pickled.npz", obj=np.array([{"a": 1}], dtype=object))
  with pytest.raises(pretrained.CheckpointError, match="pickled.npz"):
    models.create("vit_ti16", 3, init_from=str(tmp_path / "pickled.npz"))
  torch_only = tmp_path / "torch_only"
  torch_only.mkdir()
  (torch_only / "config.json").write_text(json.dumps({"model_type": "resnet"}))
  (torch_only / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
  with pytest.raises(
    pretrained.CheckpointError, match="model.safetensors does not exist.*pickle"
  ):
    models.create("resnet18", 3, init_from=str(torch_only))
  no_config = tmp_path / "no_config"
  no_config.mkdir()
  with pytest.raises(pretrained.CheckpointError, match="no config.json"):
    models.create("resnet18", 3, init_from=str(no_config))
  with pytest.raises(
    pretrained.CheckpointError, match="no_config/model.safetensors does not"
  ):
    models.create("mobilenetv3_large", 3, init_from=str(no_config))
  (tmp_path / "w.pth").write_bytes(b"\x80\x04pickle")
  for name in ("vgg16", "swin_t", "shufflenet_v2_x1_0", "mobilenetv3_large"):
    with pytest.raises(
      pretrained.CheckpointError, match=r"w\.pth is a PyTorch pickle.*convert"
    ):
      models.create(name, 3, init_from=str(tmp_path / "w.pth"))


@pytest.mark.slow
@pytest.mark.parametrize(
  "name",
  [
    "resnet18",
    "swin_t",
    "mobilevit_xxs",
    "vgg16_bn",
    "densenet121",
    "shufflenet_v2_x0_5",
    "mobilenetv3_large",
  ],
)
def test_bf16_compute_keeps_fp32_params(name):
  """bf16 compute: bf16 logits close to the fp32 model's (same weights),
  every parameter still fp32."""
  model = models.create(name, 4, dtype=jnp.bfloat16)
  fp32 = models.create(name, 4)
  model.eval()
  fp32.eval()
  x = jnp.asarray(_images(64, n=1))
  out = _logits(model, x)
  assert out.dtype == jnp.bfloat16
  ref = np.asarray(_logits(fp32, x))
  assert np.isfinite(np.asarray(out, np.float32)).all()
  # bf16 keeps ~3 significant digits; deep nets accumulate some more error.
  err = np.abs(np.asarray(out, np.float32) - ref).max()
  assert err <= 0.1 * np.abs(ref).max() + 1e-3, (err, np.abs(ref).max())
  dtypes = {p.dtype for p in jax.tree.leaves(nnx.state(model, nnx.Param))}
  assert dtypes == {jnp.dtype(jnp.float32)}


@pytest.mark.slow
@pytest.mark.parametrize(
  "name",
  [
    "mobilenetv3_large",
    "convnext_tiny",
    "vit_ti16",
    "resnet34",
    "swin_t",
    "mobilevit_xxs",
    "vgg16",
    "densenet121",
    "shufflenet_v2_x0_5",
  ],
)
def test_forward_features_interface(name):
  kw = {"image_size": 64} if name.startswith("vit") else {}
  model = models.create(name, 6, **kw)
  model.eval()
  x = jnp.asarray(_images(64))
  embedding, maps = _forward_features(model, x)
  assert embedding.shape == (2, model.num_features)
  assert [m.shape[-1] for m in maps] == list(model.feature_widths)
  cam_map = maps[model.default_cam_stage]
  assert cam_map.shape[1] == 64 // 16  # the input of the last stride-2
  np.testing.assert_allclose(
    _logits(model, x), model.head(embedding), atol=1e-5
  )


@pytest.mark.slow
# Each example compiles new shapes (~1.3 s). 20 draw every kernel size
# and both strides with probability > 0.98 and keep the suite inside its CI
# budget (40 before).
@hypothesis.settings(max_examples=20)
@hypothesis.given(
  kernel=st.sampled_from([1, 3, 5, 7]),
  stride=st.sampled_from([1, 2]),
  dilation=st.sampled_from([1, 2]),
  size=st.integers(1, 9),
  channels=st.integers(1, 5),
  bias=st.booleans(),
  seed=st.integers(0, 2**16),
)
def test_depthwise_conv_matches_float64_loop(
  kernel, stride, dilation, size, channels, bias, seed
):
  """The CPU shifted-sum depthwise conv against a direct float64 loop of
  y[n,h,w,c] = b[c] + Σ_ij pad(x)[n, s·h+d·i, s·w+d·j, c] · K[i,j,0,c]."""
  from scenejax.models.conv import depthwise_conv

  pad = dilation * (kernel - 1) // 2
  conv = nnx.Conv(
    channels,
    channels,
    (kernel, kernel),
    strides=stride,
    padding=pad,
    kernel_dilation=dilation,
    feature_group_count=channels,
    use_bias=bias,
    rngs=nnx.Rngs(seed),
  )
  if bias:
    conv.bias[...] = jnp.asarray(
      np.random.default_rng(seed + 1).normal(size=channels), jnp.float32
    )
  x = np.random.default_rng(seed).normal(size=(2, size, size + 1, channels))
  got = np.asarray(depthwise_conv(conv, jnp.asarray(x, jnp.float32)))
  k = np.asarray(conv.kernel[...], np.float64)
  b = np.asarray(conv.bias[...], np.float64) if bias else np.zeros(channels)
  padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  span = dilation * (kernel - 1) + 1
  out_h = (padded.shape[1] - span) // stride + 1
  out_w = (padded.shape[2] - span) // stride + 1
  want = np.zeros((2, out_h, out_w, channels))
  for h in range(out_h):
    for w in range(out_w):
      for i in range(kernel):
        for j in range(kernel):
          want[:, h, w, :] += (
            padded[:, stride * h + dilation * i, stride * w + dilation * j]
            * k[i, j, 0, :]
          )
  want += b
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@hypothesis.settings(max_examples=10, deadline=None)
@hypothesis.given(
  st.integers(1, 3),  # batch
  st.integers(1, 9),  # query length
  st.integers(1, 9),  # key length
  st.integers(1, 3),  # heads
  st.sampled_from([1, 4, 8]),  # head size
  st.integers(0, 2**31 - 1),
)
def test_fused_attention_is_scaled_dot_product_softmax(b, t, s, n, h, seed):
  """`vit.fused_attention` (the ViTs' and MobileViT's attention) against
  softmax(q kᵀ / √d) v in float64 NumPy."""
  rng = np.random.default_rng(seed)
  q, k, v = (
    rng.normal(size=(b, length, n, h)).astype(np.float32)
    for length in (t, s, s)
  )
  got = np.asarray(vit.fused_attention(q, k, v))
  q64, k64, v64 = (x.astype(np.float64) for x in (q, k, v))
  logits = np.einsum("btnh,bsnh->bnts", q64, k64) / np.sqrt(h)
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  want = np.einsum("bnts,bsnh->btnh", weights, v64)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
