"""The end-to-end path: synthetic data, data-parallel step, demo main job."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import REPO, assert_user_error, run_cli

from scenejax import config_lib, datasets, metrics, prototype
from scenejax.datasets import synthetic
from scenejax.errors import PrototypeError
from scenejax.tasks import classification
from scenejax.training import loop

TINY = [
  "--config.num_epochs=2",
  "--config.data.train_per_class=24",
  "--config.data.test_per_class=5",
  "--config.batch_size=32",
  "--config.progress_bar=False",
]


def run_main(workdir, *overrides, config="configs/demo.py"):
  return run_cli(
    "scenejax.main", f"--config={config}", f"--workdir={workdir}", *overrides
  )


@pytest.mark.slow  # the fast lane trains in-process (test_trainer.py)
def test_demo_main_job_end_to_end(tmp_path):
  proc = run_main(tmp_path, *TINY)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Top-1" in proc.stdout and "MCA" in proc.stdout
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["epoch"] == 2
  # 8 classes x 5 test images with eval batch 128: one padded batch, all 40
  # examples counted, none dropped.
  assert results["num_examples"] == 40
  assert np.sum(results["confusion"]) == 40
  assert 0.0 <= results["top1"] <= 1.0
  assert results["compiles"] == 1  # traced GLS epoch: one compile per run
  assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
  proto = prototype.load_prototype(
    tmp_path / "prototype.npz", class_names=results["class_names"]
  )
  assert proto.metric == "cosine" and proto.representation.shape == (8, 32)


@pytest.mark.slow
def test_config_errors_are_one_line_naming_the_field(tmp_path):
  """Every expected failure of the command line: status 2, one line naming
  the field or file, no traceback, nothing written."""
  workdir = tmp_path / "w"
  assert_user_error(
    run_main(workdir, *TINY, "--config.loss.lables=ce"),
    "config.loss.lables is not a config field",
  )
  assert_user_error(
    run_main(workdir, *TINY, "--config.learning_rate=0.1"),
    "did you mean config.optimizer.learning_rate?",
  )
  assert_user_error(
    run_main(workdir, *TINY, "--config.loss.bcl_reduction=mean"),
    "config.loss.bcl_reduction = 'mean'",
  )
  assert_user_error(
    run_main(workdir, *TINY, "--config.batch_size=0"),
    "config.batch_size = 0; allowed: >= 1",
  )
  assert_user_error(
    run_main(workdir, *TINY, config="configs/demo.py:bcll"),
    "unknown config argument 'bcll'",
  )
  bad = tmp_path / "seven.npz"
  prototype.save_prototype(
    bad,
    prototype.Prototype(np.eye(7), "cosine", tuple(str(i) for i in range(7))),
  )
  assert_user_error(
    run_main(workdir, *TINY, f"--config.prototype.path={bad}"),
    "seven.npz: prototype has 7 classes, the dataset has 8",
  )
  assert not workdir.exists()


def test_design_card_command_works_as_typed(tmp_path):
  """`python -m scenejax.main --config=configs/sun397_vit.py`, no other
  flag: the default workdir is printed, and the first missing input (the
  dataset) is named in one line; nothing is written."""
  env = dict(os.environ, TFDS_DATA_DIR=str(tmp_path / "tfds"))
  proc = run_cli("scenejax.main", "--config=configs/sun397_vit.py", env=env)
  assert "workdir: workdirs/sun397_vit" in proc.stdout
  assert_user_error(
    proc,
    "sun397",
    "is not prepared",
    "python -m scenejax.datasets prepare sun397",
  )
  assert not (REPO / "workdirs" / "sun397_vit").exists()
  assert config_lib.workdir_name(
    "configs/mit67_resnet50.py", "gls,bcl=nonzero_inter_intra"
  ) == ("workdirs/mit67_resnet50_gls_bcl_nonzero_inter_intra")


def _tiny(arg=None):
  from configs import demo

  config = demo.get_config(arg)
  config.data.train_per_class, config.data.test_per_class = 8, 2
  config.num_epochs, config.batch_size, config.progress_bar = 1, 32, False
  return config


def test_euclidean_variant_reads_the_euclidean_prototype(tmp_path):
  """`:euclidean` selects the Euclidean file through "{metric}", and a file
  recording another metric is refused naming both."""
  names = tuple(
    synthetic.load(train_per_class=1, test_per_class=1)[0].class_names
  )
  cosine = prototype.Prototype(np.eye(8), "cosine", names)
  prototype.save_prototype(tmp_path / "p_cosine.npz", cosine)
  config = _tiny("gls,bcl,euclidean")
  config.prototype.path = str(tmp_path / "p_{metric}.npz")
  with pytest.raises(
    PrototypeError, match="p_euclidean.npz: no such prototype file"
  ):
    loop.train_and_evaluate(config, str(tmp_path / "w"))
  config.prototype.path = str(tmp_path / "p_cosine.npz")
  with pytest.raises(
    PrototypeError,
    match="records metric 'cosine' but the config asks for 'euclidean'",
  ):
    loop.train_and_evaluate(config, str(tmp_path / "w"))
  prototype.save_prototype(
    tmp_path / "p_euclidean.npz",
    prototype.Prototype(np.eye(8), "euclidean", names),
  )
  config.prototype.path = str(tmp_path / "p_{metric}.npz")
  data = datasets.from_config(config)
  assert classification.prototype_for(config, data).metric == "euclidean"
  from configs import mit67_resnet50, sun397_vit

  for module in (mit67_resnet50, sun397_vit):
    assert classification.prototype_path(
      module.get_config("gls,bcl,euclidean")
    ).startswith("published:") and classification.prototype_path(
      module.get_config("gls,bcl,euclidean")
    ).endswith("/euclidean")
    assert classification.prototype_path(module.get_config()).endswith(
      "/cosine"
    )


def test_accuracy_metrics_from_counts():
  # 3 classes; class 2 absent from the split.
  labels = np.array([0, 0, 0, 1])
  preds = np.array([0, 1, 0, 1])
  confusion = metrics.confusion_matrix(labels, preds, 3)
  np.testing.assert_array_equal(confusion, [[2, 1, 0], [0, 1, 0], [0, 0, 0]])
  m = metrics.accuracy_metrics(confusion)
  assert m["top1"] == pytest.approx(3 / 4)
  assert m["mean_class_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
  assert m["absent_classes"] == [2] and m["num_examples"] == 4


def test_synthetic_scenes_are_deterministic_and_structured():
  a = synthetic.load(train_per_class=10, test_per_class=2)
  b = synthetic.load(train_per_class=10, test_per_class=2)
  for split_a, split_b in zip(a[1:], b[1:]):
    np.testing.assert_array_equal(split_a.images, split_b.images)
    np.testing.assert_array_equal(split_a.label_maps, split_b.label_maps)
  spec, train_split, _ = synthetic.load(train_per_class=80, test_per_class=1)
  # Object pixels carry their object's colour (label maps match the images).
  m = train_split.label_maps[0]
  l = int(m.max())
  colour = train_split.images[0][m == l].mean(axis=0)
  assert np.abs(colour - spec.colors[l - 1]).max() < 12
  # The prototype sees the confusable groups: siblings are more similar
  # than classes of different groups.
  rep, _ = prototype.class_representation(
    train_split.label_maps,
    train_split.labels,
    spec.num_classes,
    spec.num_semantic_classes,
  )
  s = prototype.similarity_prototype(rep, "cosine")
  same = spec.groups[:, None] == spec.groups[None, :]
  off = ~np.eye(spec.num_classes, dtype=bool)
  assert s[same & off].min() > s[~same].max()


DP_SCRIPT = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec as P
    from configs import demo
    from scenejax import datasets, input_pipeline, sharding, tasks
    from scenejax.tasks import classification
    from scenejax.training import optim
    config = demo.get_config()
    config.data.train_per_class = 4
    config.batch_size = 32
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.05
    config.loss.bcl_reduction = "nonzero_inter_intra"
    split = datasets.from_config(config).train
    sim = jnp.asarray(np.random.default_rng(0).uniform(.2, .9, (8, 8)))
    sim = (sim + sim.T) / 2
    sim = sim.at[jnp.diag_indices(8)].set(1.0).astype(jnp.float32)
    mesh = sharding.data_parallel_mesh()
    assert mesh.devices.size == int(sys.argv[2])
    data = NamedSharding(mesh, P("data"))
    rep = NamedSharding(mesh, P())
    graphdef, state = optim.create_train_state(
      tasks.build_model(config, 8), config, 1
    )
    state = jax.device_put(state, rep)
    loss_cfg = classification.LossConfig.from_config(config.loss)
    batch = next(iter(input_pipeline.train_batches(split, 32, seed=0,
                                                   epoch=0)))
    batch = input_pipeline.shard_batch(batch, data)

    @jax.jit
    def loss_and_grads(state, batch):
      model, _ = nnx.merge(graphdef, state)
      def loss_fn(model):
        logits = model(input_pipeline.normalize(batch["image"]))
        return sum(classification.loss_terms(logits, batch["label"], sim, 2.0,
                                    loss_cfg).values())
      return nnx.value_and_grad(loss_fn)(model)

    loss, grads = loss_and_grads(state, batch)
    step_fn = classification.jit_train_step(graphdef, loss_cfg, mesh,
                                   (input_pipeline.IMAGENET_MEAN,
                                    input_pipeline.IMAGENET_STD))
    for _ in range(3):
      state, _ = step_fn(state, batch, np.float32(2), sim)
    flat = lambda t: np.concatenate(
        [np.ravel(x) for x in jax.tree.leaves(jax.device_get(t))])
    np.savez(sys.argv[1], loss=np.asarray(loss), grads=flat(grads),
             state=flat(nnx.state(nnx.merge(graphdef, state)[0])))
""")


@pytest.mark.slow
def test_one_and_eight_devices_agree(tmp_path):
  """Loss, gradients and parameters after 3 steps: 1 vs 8 host devices."""
  results = {}
  for n in (1, 8):
    env = dict(
      os.environ,
      XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
      JAX_PLATFORMS="cpu",
    )
    out = tmp_path / f"dp{n}.npz"
    proc = subprocess.run(
      [sys.executable, "-c", DP_SCRIPT, str(out), str(n)],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results[n] = np.load(out)
  one, eight = results[1], results[8]
  assert float(one["loss"]) == pytest.approx(float(eight["loss"]), rel=1e-5)
  np.testing.assert_allclose(one["grads"], eight["grads"], rtol=1e-3, atol=1e-5)
  np.testing.assert_allclose(one["state"], eight["state"], rtol=1e-4, atol=1e-5)
