"""Segmenters against transformers (PyTorch, CPU), the reference.

A random-init `UperNetForSemanticSegmentation` / `SegformerForSemanticSegmentation`
is saved with `save_pretrained`, loaded by scenejax with `init_from`, and
both run on the same input; logits within 1e-4 relative. Small configs in
the fast lane, one full-size model of each family in the slow lane. The two
resampling ops are property-tested against PyTorch's.
"""

import json
import os

import hypothesis
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
from flax import nnx
from hypothesis import strategies as st
from test_models import _randomize, _save

from scenejax import models
from scenejax.models import pretrained, segformer, upernet
from scenejax.models.segmenter import adaptive_avg_pool, resize_bilinear

# The PyTorch references (the test extra); skipped where torch is absent.
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

RTOL = 1e-4


def _upernet(variant="atto", num_labels=9, hidden_size=32):
  depths, widths = {
    "atto": ([2, 2, 6, 2], [40, 80, 160, 320]),
    "tiny": ([3, 3, 9, 3], [96, 192, 384, 768]),
  }[variant]
  backbone = transformers.ConvNextConfig(
    depths=depths,
    hidden_sizes=widths,
    out_features=["stage1", "stage2", "stage3", "stage4"],
  )
  return _randomize(
    transformers.UperNetForSemanticSegmentation(
      transformers.UperNetConfig(
        backbone_config=backbone,
        hidden_size=hidden_size,
        auxiliary_in_channels=widths[2],
        auxiliary_channels=min(256, hidden_size),
        num_labels=num_labels,
      )
    )
  )


def _segformer(variant="b0", num_labels=9):
  depths, widths, heads, decoder = segformer.VARIANTS[variant]
  return _randomize(
    transformers.SegformerForSemanticSegmentation(
      transformers.SegformerConfig(
        depths=list(depths),
        hidden_sizes=list(widths),
        num_attention_heads=list(heads),
        decoder_hidden_size=decoder,
        num_labels=num_labels,
      )
    )
  )


def _images(height, width, n=2, seed=0):
  rng = np.random.default_rng(seed)
  return rng.uniform(-1, 1, (n, height, width, 3)).astype(np.float32)


@nnx.jit
def _logits(model, x):
  return model(x)


def _reference(hf, x):
  """transformers' logits (NHWC) at the input resolution: UperNet returns
  them there; SegFormer at stride 4, upsampled as its docs advise."""
  with torch.no_grad():
    logits = hf(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).logits
    logits = torch.nn.functional.interpolate(
      logits, size=x.shape[1:3], mode="bilinear", align_corners=False
    )
  return logits.numpy().transpose(0, 2, 3, 1)


def _assert_close(ours, ref):
  ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
  assert ours.shape == ref.shape
  err = np.abs(ours - ref).max()
  assert err <= RTOL * np.abs(ref).max(), (err, np.abs(ref).max())


def _load(name, num_classes, path):
  model = models.create(name, num_classes, init_from=path)
  model.eval()
  return model


def test_upernet_matches_transformers(tmp_path):
  """Odd sizes too: 75 x 61 px gives stage maps 18x15 ... 2x1, so the
  floor of the stem, the overlapping adaptive-pool bins and the upsampling
  of non-integer ratios are all exercised."""
  hf = _upernet()
  model = _load("upernet_convnext_atto", 9, _save(hf, tmp_path))
  x = _images(75, 61)
  _assert_close(_logits(model, jnp.asarray(x)), _reference(hf, x))
  with torch.no_grad():
    aux = hf.auxiliary_head(
      hf.backbone(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).feature_maps
    )
    aux = torch.nn.functional.interpolate(
      aux, size=x.shape[1:3], mode="bilinear", align_corners=False
    )
  _assert_close(
    nnx.jit(lambda m, x: m.auxiliary_logits(x))(model, jnp.asarray(x)),
    aux.numpy().transpose(0, 2, 3, 1),
  )


def test_segformer_matches_transformers_in_both_key_layouts(tmp_path):
  """`save_pretrained` writes the Hub's original names
  (encoder.block.0.0.attention.self.query); the module's own state dict
  has transformers 5's (stages.0.blocks.0.attention.q_proj). Both load."""
  hf = _segformer()
  original = _save(hf, tmp_path / "original")
  keys = safetensors.numpy.load_file(
    os.path.join(original, "model.safetensors")
  )
  assert any(".encoder.block.0.0.attention.self.query." in k for k in keys)
  current = tmp_path / "current"
  current.mkdir()
  (current / "config.json").write_text(
    (tmp_path / "original" / "config.json").read_text()
  )
  safetensors.numpy.save_file(
    {k: v.numpy() for k, v in hf.state_dict().items()},
    str(current / "model.safetensors"),
  )
  x = _images(67, 80)
  ref = _reference(hf, x)
  for path in (original, str(current)):
    _assert_close(_logits(_load("segformer_b0", 9, path), jnp.asarray(x)), ref)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["upernet_convnext_tiny", "segformer_b2"])
def test_full_size_matches_transformers(tmp_path, name):
  """Once per family at full size: the checkpoints' decoder widths, 150
  ADE20K classes, 128 px."""
  if name.startswith("upernet"):
    hf = _upernet("tiny", num_labels=150, hidden_size=512)
  else:
    hf = _segformer("b2", num_labels=150)
  model = _load(name, 150, _save(hf, tmp_path))
  x = _images(128, 128, n=1)
  _assert_close(_logits(model, jnp.asarray(x)), _reference(hf, x))


# Full-size configs as the ADE20K checkpoints have them.
_HF_FULL_SIZE = {
  **{
    f"upernet_convnext_{v}": (depths, widths)
    for v, (depths, widths) in {
      "tiny": ([3, 3, 9, 3], [96, 192, 384, 768]),
      "small": ([3, 3, 27, 3], [96, 192, 384, 768]),
      "base": ([3, 3, 27, 3], [128, 256, 512, 1024]),
      "large": ([3, 3, 27, 3], [192, 384, 768, 1536]),
      "xlarge": ([3, 3, 27, 3], [256, 512, 1024, 2048]),
    }.items()
  },
  # B3-B5 are B2 with deeper stages; tracing them abstractly costs 10-30 s
  # (JAX's tracer is quadratic in the number of variables set), for no
  # code path B2 does not take.
  **{f"segformer_b{i}": f"b{i}" for i in range(3)},
}


def _hf_full_size(name):
  spec = _HF_FULL_SIZE[name]
  with torch.device("meta"):  # shapes only: nothing is allocated
    if name.startswith("upernet"):
      depths, widths = spec
      return transformers.UperNetForSemanticSegmentation(
        transformers.UperNetConfig(
          backbone_config=transformers.ConvNextConfig(
            depths=depths,
            hidden_sizes=widths,
            out_features=["stage1", "stage2", "stage3", "stage4"],
          ),
          auxiliary_in_channels=widths[2],
          num_labels=150,
        )
      )
    depths, widths, heads, decoder = segformer.VARIANTS[spec]
    return transformers.SegformerForSemanticSegmentation(
      transformers.SegformerConfig(
        depths=list(depths),
        hidden_sizes=list(widths),
        num_attention_heads=list(heads),
        decoder_hidden_size=decoder,
        num_labels=150,
      )
    )


@pytest.mark.parametrize(
  "name",
  [
    pytest.param(n, marks=pytest.mark.slow)
    if n not in ("upernet_convnext_tiny", "segformer_b0")
    else n
    for n in sorted(_HF_FULL_SIZE)
  ],
)
def test_parameter_counts_match_transformers(name):
  """Every full-size segmenter has exactly transformers' parameter count
  (UperNet's auxiliary head included; batch statistics excluded)."""
  expected = sum(p.numel() for p in _hf_full_size(name).parameters())
  model = nnx.eval_shape(lambda: models.create(name, 150))
  assert models.num_params(model) == expected


def test_head_of_other_class_count_is_reinitialised(tmp_path):
  """Both UperNet classifiers (decoder and auxiliary) are the head: another
  class count re-initialises them and loads everything else."""
  hf = _upernet(num_labels=9)
  path = _save(hf, tmp_path)
  model = _load("upernet_convnext_atto", 4, path)
  assert model.head.kernel[...].shape == (1, 1, 32, 4)
  assert model.auxiliary_head.classifier.kernel[...].shape == (1, 1, 32, 4)
  np.testing.assert_array_equal(
    model.fpn_bottleneck.conv.kernel[...],
    hf.decode_head.fpn_bottleneck.conv.weight.detach()
    .numpy()
    .transpose(2, 3, 1, 0),
  )


def test_sharded_checkpoint_loads(tmp_path):
  hf = _segformer()
  hf.save_pretrained(tmp_path, max_shard_size="1MB")
  assert (tmp_path / "model.safetensors.index.json").exists()
  x = _images(32, 32)
  model = _load("segformer_b0", 9, str(tmp_path))
  _assert_close(_logits(model, jnp.asarray(x)), _reference(hf, x))


def test_classifier_or_other_segmenter_checkpoint_is_refused(tmp_path):
  """A checkpoint that is not a segmentation checkpoint of the family is
  refused naming the model_type and architecture found."""
  convnext = transformers.ConvNextForImageClassification(
    transformers.ConvNextConfig(
      depths=[2, 2, 6, 2], hidden_sizes=[40, 80, 160, 320], num_labels=3
    )
  )
  path = _save(convnext, tmp_path / "convnext")
  with pytest.raises(
    pretrained.CheckpointError,
    match=r"'convnext' checkpoint .*ConvNextForImageClassification.*not an "
    "UperNet segmentation checkpoint",
  ):
    models.create("upernet_convnext_atto", 150, init_from=path)
  with pytest.raises(
    pretrained.CheckpointError, match=r"'convnext' checkpoint .*not a SegFormer"
  ):
    models.create("segformer_b0", 150, init_from=path)
  upernet_path = _save(_upernet(), tmp_path / "upernet")
  config = json.loads((tmp_path / "upernet" / "config.json").read_text())
  config["backbone_config"]["model_type"] = "swin"
  (tmp_path / "upernet" / "config.json").write_text(json.dumps(config))
  with pytest.raises(pretrained.CheckpointError, match="'swin' backbone"):
    models.create("upernet_convnext_atto", 150, init_from=upernet_path)


@pytest.mark.slow
def test_checkpoint_of_another_variant_is_refused(tmp_path):
  path = _save(_upernet(), tmp_path / "upernet")
  with pytest.raises(
    pretrained.CheckpointError,
    match=r"hidden_sizes=\[40, 80, 160, 320\] \(model has \[96, 192, 384, 768\]",
  ):
    models.create("upernet_convnext_tiny", 150, init_from=path)
  path = _save(_segformer("b0"), tmp_path / "segformer")
  with pytest.raises(
    pretrained.CheckpointError, match=r"decoder_hidden_size=256 \(model has 768"
  ):
    models.create("segformer_b2", 150, init_from=path)


def test_segformer_licence_follows_the_weights_origin(tmp_path, caplog):
  """NVIDIA's weights log their non-commercial licence; weights of your own
  (a random-init save here) do not: the licence follows where the weights
  came from, not the architecture."""
  import json
  import shutil

  def licence_logged(path):
    caplog.clear()
    with caplog.at_level("WARNING"):
      models.create("segformer_b0", 9, init_from=str(path))
    return any("non-commercial" in r.getMessage() for r in caplog.records)

  own = _save(_segformer(), tmp_path / "own")
  assert not licence_logged(own)
  # The same weights as NVIDIA's hub repository gives them: its name in
  # config.json, or in the hub cache's directory name.
  nvidia = tmp_path / "nvidia"
  shutil.copytree(own, nvidia)
  config = json.loads((nvidia / "config.json").read_text())
  config["_name_or_path"] = "nvidia/mit-b0"
  (nvidia / "config.json").write_text(json.dumps(config))
  assert licence_logged(nvidia)
  cached = tmp_path / "models--nvidia--segformer-b0" / "snapshots" / "abc"
  shutil.copytree(own, cached)
  assert licence_logged(cached)
  assert "non-commercial" in segformer.LICENCE and "MIT" in upernet.LICENCE


# ----------------------------------------------------------------------------
# The two resampling ops against PyTorch's.


@hypothesis.given(
  h=st.integers(1, 13),
  w=st.integers(1, 13),
  out_h=st.integers(1, 29),
  out_w=st.integers(1, 29),
)
def test_resize_bilinear_is_pytorch_interpolate(h, w, out_h, out_w):
  """Up- and down-sampling, any ratio: torch's `interpolate(bilinear,
  align_corners=False)` (no anti-aliasing)."""
  x = np.random.default_rng(h * 31 + w).normal(size=(2, h, w, 3))
  x = x.astype(np.float32)
  ref = torch.nn.functional.interpolate(
    torch.from_numpy(x.transpose(0, 3, 1, 2).copy()),
    size=(out_h, out_w),
    mode="bilinear",
    align_corners=False,
  )
  ours = resize_bilinear(jnp.asarray(x), (out_h, out_w))
  np.testing.assert_allclose(
    ours, ref.numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5
  )


@hypothesis.given(
  h=st.integers(1, 20), w=st.integers(1, 20), bins=st.integers(1, 7)
)
def test_adaptive_avg_pool_is_pytorch(h, w, bins):
  x = np.random.default_rng(h * 37 + w).normal(size=(2, h, w, 4))
  x = x.astype(np.float32)
  ref = torch.nn.AdaptiveAvgPool2d(bins)(
    torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
  )
  ours = adaptive_avg_pool(jnp.asarray(x), bins)
  np.testing.assert_allclose(
    ours, ref.numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-6
  )
