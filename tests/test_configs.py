"""Every config in configs/ builds, takes its variants, and runs one step
of the trainer on a tiny setting (synthetic data, small model)."""

import importlib

import numpy as np
import pytest

from scenejax import config_lib, train
from conftest import REPO

CONFIGS = sorted(p.stem for p in (REPO / "configs").glob("*.py")
                 if p.stem != "__init__")


def _load(name, arg=None):
  module = importlib.import_module(f"configs.{name}")
  return module.get_config(arg) if arg is not None else module.get_config()


@pytest.mark.parametrize("name", CONFIGS)
def test_config_header_and_one_step(name, tmp_path):
  text = (REPO / "configs" / f"{name}.py").read_text()
  assert text.startswith("#") and "python -m scenejax.main" in text.split(
      "\n\n")[0]
  assert "Expected" in text and ("Paper" in text or "demo" in name)
  config = _load(name)
  train.LossConfig.from_config(config.loss)  # every loss field valid
  # Tiny setting: the recipe's losses and optimizer, synthetic data.
  config.dataset = "synthetic_scenes"
  config.data = dict(train_per_class=4, test_per_class=2, image_size=32)
  config.model = "vit_ti16" if config.model.startswith("vit") else (
      "resnet_tiny")
  config.init_from = ""
  config.prototype.path = ""
  config.num_epochs = 1
  config.batch_size = 32
  config.eval_batch_size = 16
  config.progress_bar = False
  if config.model.startswith("vit"):
    config.data["image_size"] = 32
  result = train.train_and_evaluate(config, str(tmp_path))
  assert result["epoch"] == 1 and result["num_examples"] == 16


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
      "lsr", 1.0, "euclidean")
  with pytest.raises(ValueError, match="unknown config argument 'bcll'"):
    _load("mit67_resnet50", "gls,bcll")
  with pytest.raises(ValueError, match="BCL reduction must be one of"):
    _load("mit67_resnet50", "bcl=max")


def test_base_config_has_every_field_the_trainer_reads():
  config = config_lib.base()
  for field in ("init_from", "dtype", "checkpoint_keep", "log_every_steps"):
    assert field in config
  assert set(train.LossConfig.__dataclass_fields__) == set(config.loss)


def test_bf16_compute_runs_and_keeps_fp32_parameters(tmp_path):
  config = _load("demo")
  config.data.train_per_class = 4
  config.data.test_per_class = 2
  config.num_epochs = 1
  config.batch_size = 32
  config.progress_bar = False
  config.dtype = "bfloat16"
  result = train.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(result["train_loss"])
  import jax
  import orbax.checkpoint as ocp
  manager = ocp.CheckpointManager(str(tmp_path / "checkpoints"))
  state = manager.restore(manager.latest_step(), args=ocp.args.Composite(
      state=ocp.args.StandardRestore()))["state"]
  manager.close()
  dtypes = {str(x.dtype) for x in jax.tree.leaves(state)}
  assert "float32" in dtypes and "bfloat16" not in dtypes
