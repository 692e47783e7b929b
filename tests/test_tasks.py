"""The task registry: a task defined in this file alone (no edit under
scenejax/) trains and evaluates through the shared loop."""

import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from scenejax import config_lib, datasets, tasks
from scenejax.errors import ConfigError
from scenejax.tasks import base
from scenejax.training import loop


class _Linear(nnx.Module):
  """Mean colour -> logits: the smallest model the loop can train."""

  pixel_mean = (0.0, 0.0, 0.0)
  pixel_std = (1.0, 1.0, 1.0)

  def __init__(self, num_classes, rngs):
    self.head = nnx.Linear(3, num_classes, rngs=rngs)

  def __call__(self, images):
    return self.head(images.mean(axis=(1, 2)))


def _make_task(config, data, graphdef, mesh, pixel_stats):
  def step(state, batch, epoch, aux):
    model, optimizer = nnx.merge(graphdef, state)
    images = batch["image"].astype(jnp.float32) / 255.0

    def loss_fn(model):
      logits = model(images)
      loss = optax.softmax_cross_entropy_with_integer_labels(
        logits, batch["label"]
      ).mean()
      return loss, ({"xent": loss}, logits)

    return base.update(model, optimizer, loss_fn, batch["label"])

  def evaluate(state):
    model = nnx.merge(graphdef, state)[0]
    images = np.stack([data.test[i]["image"] for i in range(len(data.test))])
    labels = np.array([data.test[i]["label"] for i in range(len(data.test))])
    predicted = np.argmax(model(jnp.asarray(images, jnp.float32) / 255.0), -1)
    return {"toy_accuracy": float(np.mean(predicted == labels))}, np.zeros(1)

  return base.Task(
    step=base.jit_step(step, mesh),
    evaluate=evaluate,
    prepare=lambda workdir: jax.device_put(
      jnp.zeros(()), NamedSharding(mesh, P())
    ),
    terms=["xent"],
    columns=(("toy_accuracy", "toy acc", "9.3f"),),
    best_metric="toy_accuracy",
  )


TOY = types.SimpleNamespace(
  load_data=datasets.from_config,
  build_model=lambda config, n: _Linear(n, nnx.Rngs(config.seed)),
  make_task=_make_task,
)


@pytest.fixture
def toy_task():
  tasks.register("toy", TOY)
  yield
  tasks.unregister("toy")


def test_a_registered_task_trains_and_evaluates_one_epoch(tmp_path, toy_task):
  config = config_lib.base()
  config.task = "toy"
  config.dataset = "synthetic_scenes"
  config.data.image_size = 32
  config.data.train_per_class = 8
  config.data.test_per_class = 4
  config.num_epochs = 1
  config.batch_size = 16
  config.eval_batch_size = 16
  config.optimizer.update(dict(backbone_learning_rate=0.0, schedule="constant"))
  config.progress_bar = False
  result = loop.train_and_evaluate(config, str(tmp_path))
  assert result["epoch"] == 1
  assert 0.0 <= result["toy_accuracy"] <= 1.0
  assert np.isfinite(result["train_xent"]) and result["train_xent"] > 0
  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  assert [row["epoch"] for row in rows] == [1]
  assert (tmp_path / "results.json").exists()
  assert json.load(open(tmp_path / "config.json"))["task"] == "toy"
  assert any((tmp_path / "checkpoints").iterdir())


def test_an_unknown_task_names_the_registered_ones(toy_task):
  config = config_lib.base()
  config.task = "nonesuch"
  with pytest.raises(ConfigError, match="classification .*toy"):
    config_lib.validate(config)


def test_a_task_without_a_hook_is_refused():
  with pytest.raises(TypeError, match="make_task"):
    tasks.register(
      "broken", types.SimpleNamespace(load_data=len, build_model=len)
    )
