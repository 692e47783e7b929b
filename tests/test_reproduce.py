"""scenejax.reproduce: tables expanded into runs, run, resumed, collected."""

import json
import os
import shlex
import signal

import numpy as np
import pytest
from absl import flags
from conftest import assert_user_error, run_cli
from ml_collections import config_flags

from scenejax import reproduce, train

# A tiny grid: 4 steps of 32 per epoch, 2 epochs, on the synthetic scenes.
TINY = (
  "num_epochs=2",
  "data.train_per_class=16",
  "data.test_per_class=8",
  "batch_size=32",
  "progress_bar=false",
)


def _config_of_command(command: str):
  """The config `python -m scenejax.main COMMAND` would train with, parsed
  by ml_collections as main.py parses it."""
  argv = ["main"] + [
    a for a in shlex.split(command)[3:] if not a.startswith("--workdir=")
  ]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file(
    "config", None, flag_values=values, sys_argv=argv
  )
  values(argv)
  return values.config


def test_printed_commands_are_the_runs(tmp_path):
  runs, missing = reproduce.expand(
    "sp3", "mit67", ["resnet50", "vit_b16", "swin_b"], 2, str(tmp_path)
  )
  # 2 available backbones x (baseline + 4 GLS + BCL variants) x 2 seeds.
  assert len(runs) == 20 and list(missing) == ["swin_b"]
  assert len({r.workdir for r in runs}) == 20
  for run in runs[:5] + runs[-5:]:
    parsed = _config_of_command(run.command())
    assert parsed.to_dict() == reproduce.run_config(run).to_dict()
  vit = [r for r in runs if r.row == "vit_b16" and r.seed == 1]
  config = reproduce.run_config(vit[-1])
  assert (config.model, config.num_epochs, config.seed) == ("vit_b16", 30, 1)
  assert config.loss.labels == "gls" and config.loss.bcl_weight == 1.0
  assert config.prototype.path == "published:mit67/{metric}"
  assert config.prototype.metric == "euclidean"  # the last column


def test_table4_cells_are_the_best_of_tables_1_to_3():
  """[SP] Table 4 as printed (typed from the paper), against our cells
  derived from Tables 1-3."""
  paper = reproduce.TABLES["sp4"].paper
  assert paper["mit67", "resnet50"] == (76.493, 79.403, 77.014, 79.104)
  assert paper["mit67", "swin_b"] == (88.681, 89.03, 89.701, 89.179)
  assert paper["sun397", "convnext_base"] == (74.675, 77.274, 75.592, 77.406)
  assert paper["sun397", "mobilenet"] == (53.375, 55.657, 54.055, 56.317)


def test_sasnet_stages_start_from_the_previous_stage(tmp_path):
  runs, _ = reproduce.expand("sasnet", "ade20k_scenes", None, 1, str(tmp_path))
  rgb, semantic, attention = runs
  assert [r.variant for r in runs] == ["rgb", "semantic", "attention"]
  assert dict(semantic.overrides)["init_from"] == rgb.workdir
  assert dict(attention.overrides)["init_from"] == semantic.workdir
  assert "init_from" not in dict(rgb.overrides)  # the recipe's ImageNet one


@pytest.mark.slow
def test_a_grid_runs_resumes_and_collects(tmp_path):
  """[PCL] Table 2's grid on the synthetic scenes, two seeds: a SIGTERM in
  the third run stops the grid; --collect then marks the missing cells; the
  rerun skips the finished runs, resumes the interrupted one, and the table
  is complete."""
  workdir = str(tmp_path)
  settings = reproduce.parse_settings(list(TINY))
  runs, _ = reproduce.expand(
    "pcl2", "synthetic_scenes", None, 2, workdir, settings
  )
  assert [(r.variant, r.seed) for r in runs] == [
    ("ce", 0), ("ce,pcl", 0), ("ce", 1), ("ce,pcl", 1),
  ]  # fmt: skip
  real_step, calls = train.jit_train_step, []

  def jit_train_step(*args, **kwargs):
    step_fn = real_step(*args, **kwargs)

    def step(*a):
      calls.append(1)
      if len(calls) == 8 + 8 + 6:  # run 3, epoch 2, step 2
        os.kill(os.getpid(), signal.SIGTERM)
      return step_fn(*a)

    step._cache_size = step_fn._cache_size
    return step

  train.jit_train_step = jit_train_step
  log = []
  try:
    assert reproduce.run_grid(runs, log.append) == "preempted"
  finally:
    train.jit_train_step = real_step
  finished = [os.path.join(r.workdir, "results.json") for r in runs[:2]]
  mtimes = [os.stat(f).st_mtime_ns for f in finished]
  assert not os.path.exists(os.path.join(runs[2].workdir, "results.json"))

  partial = reproduce.collect("pcl2", "synthetic_scenes", None, 2, workdir)
  baseline, pcl = partial["rows"][0]["cells"]
  assert (baseline["seeds"], pcl["seeds"]) == (1, 1)
  assert "[1/2 seeds]" in reproduce.to_markdown(partial)

  log = []
  assert reproduce.run_grid(runs, log.append) == "done"
  assert [line.split(": ", 1)[1].split(" in ")[0] for line in log] == [
    "finished, skipped", "finished, skipped", "resuming", "running",
  ]  # fmt: skip
  assert [os.stat(f).st_mtime_ns for f in finished] == mtimes
  with open(os.path.join(runs[2].workdir, "metrics.jsonl")) as f:
    assert [json.loads(line)["epoch"] for line in f] == [1, 2]

  result = reproduce.collect("pcl2", "synthetic_scenes", None, 2, workdir)
  md, html = reproduce.write_table(result, workdir)
  baseline, pcl = result["rows"][0]["cells"]
  tops = {}
  for run in runs:
    with open(os.path.join(run.workdir, "results.json")) as f:
      r = json.load(f)
    tops.setdefault(run.variant, []).append((100 * r["top1"], 100 * r["top5"]))
    assert r["wall_time_s"] > 0 and r["device"].endswith("cpu")
  for cell, variant in ((baseline, "ce"), (pcl, "ce,pcl")):
    values = np.array(tops[variant])
    assert cell["seeds"] == 2
    np.testing.assert_allclose(cell["mean"], values.mean(0))
    np.testing.assert_allclose(cell["std"], values.std(0, ddof=1))
  assert pcl["delta"] == pytest.approx(pcl["mean"][0] - baseline["mean"][0])
  text = open(md).read()
  assert (
    "| resnet_tiny |" in text and "paper –" in text and "seeds]" not in text
  )
  assert "<table>" in open(html).read()


def test_collect_marks_paper_deltas_of_the_other_sign(tmp_path):
  """A cell whose delta to our baseline has the other sign than the
  paper's is marked (!)."""
  runs, missing = reproduce.expand(
    "sp1", "mit67", ["resnet50", "vgg16"], 1, str(tmp_path)
  )
  top1 = {"ce": 0.70, "lsr": 0.71, "gls": 0.69, "gls,euclidean": 0.72}
  for run in runs:
    os.makedirs(run.workdir)
    with open(os.path.join(run.workdir, "results.json"), "w") as f:
      json.dump(dict(top1=top1[run.variant], wall_time_s=5.0, device="x"), f)
  result = reproduce.collect(
    "sp1", "mit67", ["resnet50", "vgg16"], 1, str(tmp_path)
  )
  row, vgg = result["rows"]
  # Paper (ResNet50, MIT-67): LSR -0.076, GLS cos +2.312, GLS euc +2.910.
  assert [c.get("sign_differs") for c in row["cells"][1:]] == [
    True, True, False,
  ]  # fmt: skip
  assert vgg["missing"].startswith("no VGG16")
  text = reproduce.to_markdown(result)
  assert "71.00 (+1.00) (!)<br>paper 76.42 (-0.08)" in text
  assert "| vgg16 | not available: no VGG16" in text


def test_command_line_errors(tmp_path):
  for args, message in [
    (["--table=sp1", "--dataset=places365"], "sp1 covers mit67, sun397"),
    (["--table=sp1", "--dataset=mit67", "--models=resnet5"], "resnet5 not in sp1"),
    (["--table=pcl2", "--dataset=places365", "--set=num_epoch=2"], "no config field 'num_epoch'"),
    (["--table=pcl2", "--dataset=places365", "--set=num_epochs=two"], "config.num_epochs is a int"),
  ]:  # fmt: skip
    proc = run_cli("scenejax.reproduce", *args, f"--workdir={tmp_path}")
    assert_user_error(proc, message)
  proc = run_cli(
    "scenejax.reproduce", "--table=pcl2", "--dataset=places365_1k",
    "--models=resnet18,densenet121", f"--workdir={tmp_path}", "--print_commands",
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr
  assert len(proc.stdout.splitlines()) == 2
  assert "densenet121: not available" in proc.stderr
