"""Every config in configs/ builds, takes its variants, and runs one step
of the trainer on a tiny setting (synthetic data, small model)."""

import importlib

import numpy as np
import pytest
from conftest import REPO

from scenejax import config_lib
from scenejax.errors import ConfigError
from scenejax.tasks import classification
from scenejax.training import loop

CONFIGS = sorted(
  p.stem for p in (REPO / "configs").glob("*.py") if p.stem != "__init__"
)


def _load(name, arg=None):
  module = importlib.import_module(f"configs.{name}")
  return module.get_config(arg) if arg is not None else module.get_config()


@pytest.mark.parametrize("name", CONFIGS)
def test_config_header_and_fields(name):
  text = (REPO / "configs" / f"{name}.py").read_text()
  assert (
    text.startswith("#") and "python -m scenejax.main" in text.split("\n\n")[0]
  )
  assert "Expected" in text and ("Paper" in text or "demo" in name)
  config = _load(name)
  config_lib.validate(config)
  classification.LossConfig.from_config(config.loss)  # every loss field valid


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_config_runs_one_epoch_on_a_tiny_setting(name, tmp_path):
  """The recipe's losses and optimizer, on synthetic data, small model."""
  config = _load(name)
  config.dataset = "synthetic_scenes"
  config.data.update(dict(train_per_class=4, test_per_class=2, image_size=32))
  segmenting = config.task == "segmentation"
  if segmenting:  # the recipe's losses on the demo's small DeepLabV3+
    from configs import demo_segmentation

    small = demo_segmentation.get_config()
    config.model = small.model
    for field in ("crop_size", "base_size", "aspp_rates", "aspp_width"):
      config.segmentation[field] = small.segmentation[field]
    config.segmentation.update(
      decoder_width=8, low_level_width=4, embedding_dim=4, num_samples=64
    )
  else:
    small = {"vit": "vit_ti16", "sasnet": "sasnet_resnet_tiny"}
    config.model = small.get(config.model.split("_")[0], "resnet_tiny")
  config.init_from = ""
  config.prototype.path = ""
  config.num_epochs = 1
  config.batch_size = 32
  config.eval_batch_size = 16
  config.progress_bar = False
  result = loop.train_and_evaluate(config, str(tmp_path))
  assert result["epoch"] == 1
  if segmenting:
    assert 0 <= result["mIoU"] <= 1
  elif config.task == "multilabel":
    assert 0 <= result["mAP"] <= 1
    assert np.asarray(result["confusion"]).sum() == 16 * 32  # (K, 2, 2)
  else:
    assert result["num_examples"] == 16


def test_variants():
  base = _load("mit67_resnet50")
  assert (base.loss.labels, base.loss.bcl_weight) == ("gls", 1.0)
  c = _load("mit67_resnet50", "gls,bcl=nonzero_inter_intra")
  assert c.loss.bcl_reduction == "nonzero_inter_intra" and c.loss.bcl_weight
  c = _load("mit67_resnet50", "ce")
  assert (c.loss.labels, c.loss.bcl_weight) == ("ce", 0.0)
  c = _load("places365_resnet18_pcl", "ce")
  assert not c.loss.pcl
  assert _load("places365_resnet18_pcl").loss.pcl
  c = _load("sun397_vit", "lsr,cl,euclidean")
  assert (c.loss.labels, c.loss.cl_weight, c.prototype.metric) == (
    "lsr",
    1.0,
    "euclidean",
  )
  with pytest.raises(ConfigError, match="unknown config argument 'bcll'"):
    _load("mit67_resnet50", "gls,bcll")
  with pytest.raises(ConfigError, match="BCL reduction must be one of"):
    _load("mit67_resnet50", "bcl=max")
  # Every config takes a variant, the demos too.
  for name in CONFIGS:
    if _load(name).task == "multilabel":  # bce, nocl: the plain baseline
      ml = _load(name, "bce,nocl").multilabel
      assert (ml.classification_loss, ml.sscl_weight, ml.pscl_weight) == (
        "bce",
        0.0,
        0.0,
      )
      with pytest.raises(ConfigError, match="a multilabel config takes"):
        _load(name, "ce")
      continue
    c = _load(name, "ce")
    if c.task == "segmentation":  # ce: plain cross-entropy on the maps
      seg = c.segmentation
      assert (seg.focal_gamma, seg.class_weights, seg.contrastive_weight) == (
        0.0,
        "uniform",
        0.0,
      )
    else:
      assert (c.loss.labels, c.loss.bcl_weight, c.loss.pcl) == (
        "ce",
        0.0,
        False,
      )
  c = _load("demo", "sasnet_rgb,ce")
  assert (c.model, c.sasnet.stage, c.loss.labels) == (
    "sasnet_resnet_tiny",
    "rgb",
    "ce",
  )
  assert c.optimizer.param_groups[-1] == ("frozen", r".*")
  config_lib.validate(c)
  config_lib.sasnet_stage(c, "semantic")
  c.sasnet.segmenter_init_from = ""
  with pytest.raises(ConfigError, match="segmenter_init_from is empty"):
    config_lib.validate(c)
  with pytest.raises(ConfigError, match="SAS-Net stage 'both'"):
    config_lib.sasnet_stage(c, "both")
  # A stage set without its parameter groups (a command-line override)
  # would train or decay what it should not.
  c = _load("demo", "sasnet_rgb")
  c.sasnet.stage = "semantic"
  with pytest.raises(ConfigError, match="not that stage's"):
    config_lib.validate(c)
  c = _load("demo", "sasnet_attention")
  with pytest.raises(ConfigError, match="set config.init_from to the"):
    config_lib.validate(c)
  # A recipe's stages chain through the workdirs of the same variant.
  c = _load("mit67_sasnet_resnet50", "attention,gls,bcl")
  assert c.init_from == "/tmp/mit67_sasnet_gls_bcl_semantic"
  assert c.prototype.path == "published:mit67/{metric}"
  c = _load("mit67_sasnet_resnet50", "semantic")
  assert (c.init_from, c.prototype.path) == ("/tmp/mit67_sasnet_rgb", "")
  c = _load("demo", "sasnet,semantic_files,ce")
  assert (c.sasnet.semantic_dir, c.sasnet.segmenter, c.loss.labels) == (
    "/tmp/scenejax_top3",
    "",
    "ce",
  )
  c.sasnet.semantic_dir = "/nonexistent/top3"
  with pytest.raises(ConfigError, match="'/nonexistent/top3' is not a dir"):
    config_lib.validate(c)
  c.sasnet.semantic_dir, c.sasnet.segmenter = (
    "/tmp",
    "deeplabv3plus_resnet_tiny",
  )
  with pytest.raises(ConfigError, match="are both set.*clear one"):
    config_lib.validate(c)
  c = _load("demo_multilabel", "asl,nopscl,ema")
  assert (c.multilabel.pscl_weight, c.multilabel.sscl_weight) == (0.0, 1.0)
  assert c.multilabel.prototypes == "ema"
  c = _load("demo_segmentation", "focal,supcon")
  assert c.segmentation.contrastive_weight == 0.0
  assert c.segmentation.contrastive_form == "supcon"


def test_every_config_is_base_plus_overrides():
  """One place for defaults: every config has exactly base()'s fields (so
  validate() accepts it), and the loss dataclass has no defaults of its
  own."""
  import dataclasses

  fields = dict(config_lib._fields(config_lib.base()))
  for name in CONFIGS:
    config = _load(name)
    config_lib.validate(config)
    assert dict(config_lib._fields(config)).keys() == fields.keys(), name
  assert set(classification.LossConfig.__dataclass_fields__) == set(
    config_lib.base().loss
  )
  assert all(
    f.default is dataclasses.MISSING
    for f in dataclasses.fields(classification.LossConfig)
  )


def _with_field(config, field, value):
  """`config` with the dotted `field` set to `value`."""
  parent, _, leaf = ("." + field).rpartition(".")
  target = config
  for part in filter(None, parent.split(".")):
    target = target[part]
  target[leaf] = value
  return config


def test_validate_names_the_field_and_allowed_values():
  config = config_lib.base()
  for field, value, message in [
    ("num_epochs", 0, "config.num_epochs = 0; allowed: >= 1"),
    ("eval_batch_size", 0, "config.eval_batch_size = 0"),
    ("log_every_steps", 0, "config.log_every_steps = 0"),
    (
      "loss.lsr_alpha",
      1.5,
      r"config.loss.lsr_alpha = 1.5; allowed: "
      r"0.0..1.0",
    ),
    ("loss.labels", "soft", "config.loss.labels = 'soft'; allowed: ce"),
    ("optimizer.schedule", "linear", "config.optimizer.schedule = 'linear'"),
    ("task", "detection", "config.task = 'detection'; allowed: classif"),
    ("prototype.metric", "l2", "config.prototype.metric = 'l2'"),
    (
      "prototype.segmenter",
      "resnet50",
      "config.prototype.segmenter = 'resnet50'; allowed: .*upernet_convnext",
    ),
    ("prototype.batch_size", 0, "config.prototype.batch_size = 0"),
  ]:
    bad = _with_field(config_lib.base(), field, value)
    with pytest.raises(ConfigError, match=message):
      config_lib.validate(bad)
  config_lib.validate(config)
  seg = config_lib.base()
  seg.update(task="segmentation", model="deeplabv3plus_resnet_tiny")
  seg.optimizer.backbone_learning_rate = 0.0
  config_lib.validate(seg)
  for field, value, message in [
    ("model", "resnet50", "config.model = 'resnet50'; allowed: deeplab"),
    ("segmentation.output_stride", 4, "output_stride = 4; allowed: 8 | 16"),
    ("segmentation.contrastive_form", "x", "contrastive_form = 'x'"),
    ("segmentation.scale_range", (2.0, 1.0), "0 < low <= high"),
    ("segmentation.num_samples", 0, "num_samples = 0; allowed: >= 1"),
    ("segmentation.scale_range", (1.0,), "need two numbers"),
    ("segmentation.class_weights", "x.npz", "'x.npz': neither one of"),
    ("optimizer.backbone_learning_rate", 1e-5, "Set backbone_learning_rate"),
  ]:
    bad = _with_field(seg.copy_and_resolve_references(), field, value)
    with pytest.raises(ConfigError, match=message):
      config_lib.validate(bad)
  both = config_lib.base()
  both.prototype.update(path="p.npz", segmenter="segformer_b0", init_from="c")
  with pytest.raises(ConfigError, match="give one"):
    config_lib.validate(both)
  bare = config_lib.base()
  bare.prototype.segmenter = "segformer_b0"
  with pytest.raises(ConfigError, match="needs config.prototype.init_from"):
    config_lib.validate(bare)
  bare.prototype.update(segmenter="", init_from="c")
  with pytest.raises(ConfigError, match="without config.prototype.segmenter"):
    config_lib.validate(bare)
  assert config_lib.unknown_field_message("config.learning_rate") == (
    "config.learning_rate is not a config field; did you mean "
    "config.optimizer.learning_rate?"
  )
  assert config_lib.unknown_field_message("config.optimizer.momentum") is None


def test_places365_recipes_follow_pcl_section_5():
  """[PCL] §5: Places365-small (1,000 per class, 30 epochs, wd 5e-4) and
  the full Places365 (40 epochs, wd 2e-4)."""
  small = _load("places365_1k_resnet18_pcl")
  full = _load("places365_resnet18_pcl")
  assert small.dataset == "places365_1k" and full.dataset == "places365"
  assert (small.num_epochs, small.optimizer.weight_decay) == (30, 5e-4)
  assert (full.num_epochs, full.optimizer.weight_decay) == (40, 2e-4)
  for c in (small, full):
    assert (
      c.optimizer.name,
      c.optimizer.learning_rate,
      c.batch_size,
      c.optimizer.schedule,
      c.loss.pcl,
    ) == ("sgd", 0.1, 256, "cosine", True)
  text = (REPO / "configs" / "places365_resnet18_pcl.py").read_text()
  assert "55.12" in text and "84.94" in text and "54.36" in text


@pytest.mark.slow
def test_bf16_compute_runs_and_keeps_fp32_parameters(tmp_path):
  config = _load("demo")
  config.data.train_per_class = 4
  config.data.test_per_class = 2
  config.num_epochs = 1
  config.batch_size = 32
  config.progress_bar = False
  config.dtype = "bfloat16"
  result = loop.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(result["train_loss"])
  import jax
  import orbax.checkpoint as ocp

  manager = ocp.CheckpointManager(str(tmp_path / "checkpoints"))
  state = manager.restore(
    manager.latest_step(),
    args=ocp.args.Composite(state=ocp.args.StandardRestore()),
  )["state"]
  manager.close()
  dtypes = {str(x.dtype) for x in jax.tree.leaves(state)}
  assert "float32" in dtypes and "bfloat16" not in dtypes


def test_sources_cite_papers_not_local_seed_files():
  """The code stands alone: references name the papers (title, venue,
  arXiv/DOI), never ../shared/seeds paths or seed numbers; [PCL] is Chen et
  al., NeurIPS 2021."""
  import re

  sources = [
    p
    for folder in ("scenejax", "configs", "benchmarks", "tests")
    for p in (REPO / folder).rglob("*.py")
  ]
  for path in sources:
    text = path.read_text()
    if path.name == "test_configs.py":
      continue
    assert "shared/seeds" not in text, path
    assert not re.search(r"\b00[0-4]_(…|\.\.\.)", text), path
  pcl = (REPO / "scenejax" / "models" / "pcl.py").read_text()
  assert "G. Chen, X. Song, B. Wang, S. Jiang" in pcl and "NeurIPS" in pcl
  assert (
    "arXiv:2308.05896"
    in (REPO / "scenejax" / "losses" / "similarity.py").read_text()
  )
