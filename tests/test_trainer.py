"""The trainer's checkpoints and faults: resume, SIGTERM, kill -9, NaN stop,
mismatched workdirs, and the Top-k counting."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import REPO, kill_at_first_checkpoint

from scenejax import sharding, tasks
from scenejax.errors import ConfigError
from scenejax.tasks import classification
from scenejax.training import loop


def _tiny_config(num_epochs=3):
  from configs import demo

  config = demo.get_config()
  config.data.train_per_class = 20  # 160 images: 5 steps of 32
  config.data.test_per_class = 5
  config.batch_size = 32
  config.eval_batch_size = 16
  config.num_epochs = num_epochs
  config.progress_bar = False
  return config


def _final_state(workdir):
  """(step, leaves) of the latest checkpoint, restored with the shardings
  it was saved with (so every process of the saving topology calls it)."""
  import jax

  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  step = manager.latest_step()
  restored = manager.restore(
    step, args=ocp.args.Composite(state=ocp.args.StandardRestore())
  )
  leaves = [np.asarray(x) for x in jax.tree.leaves(restored["state"])]
  manager.close()
  return step, leaves


def _assert_same_params(a, b):
  (step_a, leaves_a), (step_b, leaves_b) = _final_state(a), _final_state(b)
  assert step_a == step_b
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  result = loop.train_and_evaluate(_tiny_config(), workdir)
  return workdir, result


def test_rerun_on_a_finished_workdir_resumes_and_does_nothing(uninterrupted):
  workdir, result = uninterrupted
  again = loop.train_and_evaluate(_tiny_config(), workdir)
  assert again["epoch"] == 3 and again["top1"] == result["top1"]


def test_rerun_writes_a_missing_results_json(uninterrupted, tmp_path):
  """Killed after the last save but before results.json: the rerun
  evaluates the final state and writes it (the reproduce grid skips runs by
  it), with the metrics and confusion of the uninterrupted run."""
  import shutil

  workdir, _ = uninterrupted
  copy = str(tmp_path / "run")
  shutil.copytree(workdir, copy)
  os.remove(os.path.join(copy, "results.json"))
  loop.train_and_evaluate(_tiny_config(), copy)
  with open(os.path.join(workdir, "results.json")) as f:
    expected = json.load(f)
  with open(os.path.join(copy, "results.json")) as f:
    written = json.load(f)
  assert written["confusion"] == expected["confusion"]
  assert (written["top1"], written["epoch"]) == (expected["top1"], 3)


@pytest.mark.slow
def test_sigterm_saves_mid_epoch_and_resume_is_exact(tmp_path, uninterrupted):
  """SIGTERM during epoch 2: save, return; the rerun ends bitwise equal."""
  workdir = str(tmp_path)
  config = _tiny_config()
  steps_seen = []
  real_step = classification.jit_train_step

  def counting_jit_train_step(*args, **kwargs):
    step_fn = real_step(*args, **kwargs)

    def step(*a):
      steps_seen.append(1)
      if len(steps_seen) == 7:  # epoch 2, step 2: ask to stop
        os.kill(os.getpid(), signal.SIGTERM)
      return step_fn(*a)

    step._cache_size = step_fn._cache_size
    return step

  classification.jit_train_step = counting_jit_train_step
  try:
    stopped = loop.train_and_evaluate(config, workdir)
  finally:
    classification.jit_train_step = real_step
  assert stopped == dict(preempted=True, epoch=1, step_in_epoch=2)
  result = loop.train_and_evaluate(config, workdir)
  assert result["top1"] == uninterrupted[1]["top1"]
  _assert_same_params(workdir, uninterrupted[0])
  # The resumed epoch's training metrics cover the whole epoch.
  assert _history(workdir) == _history(uninterrupted[0])


def _history(workdir):
  """metrics.jsonl without the wall times."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.mark.slow
def test_sigterm_on_the_last_step_of_an_epoch(tmp_path, uninterrupted):
  """A save after the epoch's last step leaves no batch for the resumed
  epoch: its row still has the whole epoch's training metrics (this
  crashed on a missing train_loss before), and the run ends equal."""
  workdir = str(tmp_path)
  real_step, calls = classification.jit_train_step, []

  def jit_train_step(*args, **kwargs):
    step_fn = real_step(*args, **kwargs)

    def step(*a):
      calls.append(1)
      if len(calls) == 5:  # epoch 1 has 5 steps
        os.kill(os.getpid(), signal.SIGTERM)
      return step_fn(*a)

    step._cache_size = step_fn._cache_size
    return step

  config = _tiny_config()
  config.checkpoint_keep = 3  # keep step 5 to look at
  classification.jit_train_step = jit_train_step
  try:
    stopped = loop.train_and_evaluate(config, workdir)
  finally:
    classification.jit_train_step = real_step
  assert stopped == dict(preempted=True, epoch=0, step_in_epoch=5)
  loop.train_and_evaluate(config, workdir)
  _assert_same_params(workdir, uninterrupted[0])
  assert _history(workdir) == _history(uninterrupted[0])
  # The epoch-end save replaced the preemption save of the same step, so
  # epoch 1's Top-1 is on record for the best-checkpoint policy (orbax
  # skipped that save silently before).
  with open(
    os.path.join(workdir, "checkpoints", "5", "metrics", "metrics")
  ) as f:
    assert json.load(f) == {"top1": _history(workdir)[0]["top1"]}


_RUN = """
import sys
sys.path.insert(0, {repo!r}); sys.path.insert(0, {tests!r})
import test_trainer
from scenejax.training import loop
loop.train_and_evaluate(test_trainer._tiny_config(), sys.argv[1])
"""


@pytest.mark.slow
def test_kill_9_then_resume_matches_uninterrupted(tmp_path, uninterrupted):
  """SIGKILL as soon as the first checkpoint is on disk (possibly while the
  next async save is in flight); the resumed run ends bitwise equal."""
  workdir = str(tmp_path)
  script = _RUN.format(repo=str(REPO), tests=str(REPO / "tests"))
  kill_at_first_checkpoint(script, workdir)
  result = loop.train_and_evaluate(_tiny_config(), workdir)
  assert result["top1"] == uninterrupted[1]["top1"]
  _assert_same_params(workdir, uninterrupted[0])


def test_non_finite_loss_stops_naming_step_and_term(tmp_path):
  config = _tiny_config(num_epochs=2)
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 1e30
  config.optimizer.schedule = "constant"
  with pytest.raises(
    loop.NonFiniteLossError,
    match=r"non-finite loss at step \d+ \(epoch 1\): "
    r"term\(s\) .*ce",
  ):
    loop.train_and_evaluate(config, str(tmp_path))
  assert not os.path.isdir(tmp_path / "checkpoints") or not [
    n for n in os.listdir(tmp_path / "checkpoints") if n.isdigit()
  ]


def test_workdir_of_another_model_is_refused(tmp_path, uninterrupted):
  import shutil

  workdir = str(tmp_path / "w")
  shutil.copytree(uninterrupted[0], workdir)
  config = _tiny_config(num_epochs=4)
  config.model = "resnet18"
  with pytest.raises(
    ConfigError, match="restores with config.model = 'resnet18'"
  ):
    loop.train_and_evaluate(config, workdir)


def test_topk_counts_by_hand():
  """5 examples of 4 classes (class 3 absent), eval batch 2: the last batch
  is padded; the scores put the label 1st, 2nd or nowhere near."""
  split = [
    {"image": np.zeros((4, 4, 3), np.uint8), "label": y}
    for y in (0, 1, 1, 2, 0)
  ]
  # Per example (in order): the top-4 class ranking the fake model returns.
  rankings = {
    0: [0, 1, 2, 3],
    1: [0, 1, 2, 3],
    2: [2, 3, 0, 1],
    3: [3, 2, 1, 0],
    4: [1, 2, 3, 0],
  }
  calls = []

  def fake_eval(state, batch):
    del state
    start = 2 * len(calls)
    calls.append(1)
    n = np.asarray(batch["label"]).shape[0]
    top = np.array([rankings.get(start + i, [0, 1, 2, 3]) for i in range(n)])
    return dict(top=top, label=batch["label"], mask=batch["mask"])

  import jax

  mesh = sharding.data_parallel_mesh()
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  result = classification.evaluate(
    fake_eval,
    None,
    split,
    batch_size=2,
    num_classes=4,
    data_sharding=replicated,
  )
  confusion, hits = result.confusion, result.topk_hits
  # top-1 right: examples 0 (0), 3? no (label 2, ranked 3 first) -> 1 of 5.
  # top-2 adds example 1 (label 1 second) and 3 (label 2 second) -> 3.
  # top-5 caps at 4 classes: every label is somewhere -> 5.
  assert hits == {1: 1, 2: 3}
  assert confusion.sum() == 5 and len(calls) == 3
  m = result.metrics()
  assert m["top1"] == pytest.approx(1 / 5)
  assert m["top2"] == pytest.approx(3 / 5)
  assert m["absent_classes"] == [3]
  # Recall: class 0 -> 1/2 (example 0 right, 4 wrong), class 1 -> 0/2,
  # class 2 -> 0/1; MCA over the 3 present classes.
  assert m["mean_class_accuracy"] == pytest.approx((0.5 + 0 + 0) / 3)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, uninterrupted):
  """The tiny run exported in every format (tflite in float32)."""
  from scenejax import export

  workdir, _ = uninterrupted
  out = str(tmp_path_factory.mktemp("export") / "export")
  description = export.export(workdir, out, formats=export.FORMATS)
  return out, description


@pytest.mark.parametrize("runtime", ["orbax", "stablehlo", "tflite"])
def test_export_and_predict(tmp_path, uninterrupted, exported, runtime):
  """The export has the plain model's parameters only; predict on image
  files, by each runtime, gives the probabilities of the trained model's
  own forward pass, restored here straight from the checkpoint the export
  names."""
  import jax
  from flax import nnx
  from PIL import Image

  from scenejax import export, input_pipeline, models
  from scenejax.datasets import synthetic
  from scenejax.training import optim

  workdir, _ = uninterrupted
  out, description = exported
  assert set(description["artefacts"]) == set(export.FORMATS)
  model, _ = export.load_export(out)
  plain = nnx.eval_shape(lambda: models.create("resnet_tiny", 8))
  assert models.num_params(model) == models.num_params(plain)

  # The trained model (model + optimizer state, as the trainer saved it).
  config = _tiny_config()
  graphdef, state = optim.create_train_state(
    tasks.build_model(config, 8), config, 5
  )
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
  state = manager.restore(
    description["checkpoint_step"],
    args=ocp.args.Composite(
      state=ocp.args.StandardRestore(
        jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
      )
    ),
  )["state"]
  manager.close()
  trained = nnx.merge(graphdef, state)[0]
  trained.eval()

  _, _, test = synthetic.load(train_per_class=20, test_per_class=5)
  files, images = [], []
  for i in range(6):
    files.append(str(tmp_path / f"{i}.png"))
    Image.fromarray(test[i]["image"]).save(files[-1])  # lossless
    images.append(test[i]["image"])
  ranked = export.predict(out, files, top=8, runtime=runtime)
  probs = np.asarray(
    jax.nn.softmax(trained(input_pipeline.normalize(np.stack(images))))
  )
  names = description["class_names"]
  for (path, got, error), want in zip(ranked, probs):
    assert error is None
    order = np.argsort(-want)
    assert [name for name, _ in got] == [names[i] for i in order], path
    np.testing.assert_allclose(
      [p for _, p in got], want[order], rtol=1e-5, atol=1e-6
    )


def test_tflite_export_of_1x1_convolutions(tmp_path):
  """ResNet-18 at 32 px: its 1x1 shortcut convolutions (matrix products
  on CPU, `models/conv.py`) produce 4x4, 2x2 and one-pixel maps. The
  TFLite artefact converts and gives the model's own probabilities."""
  from flax import nnx

  from scenejax import export, models

  model = models.create("resnet18", 5, rngs=nnx.Rngs(0))
  model.eval()
  description = dict(
    image_size=32,
    pixel_mean=list(model.pixel_mean),
    pixel_std=list(model.pixel_std),
    task="classification",
  )
  path = tmp_path / "model.tflite"
  path.write_bytes(export.tflite_bytes(model, description))
  images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), np.uint8)
  np.testing.assert_allclose(
    export.tflite_runner(str(path))(images),
    np.asarray(export.probabilities_function(model, description)(images)),
    atol=1e-5,
  )


@pytest.mark.parametrize("fixed_batch", [1, 2, None])
def test_tflite_runner_takes_any_batch(tmp_path, fixed_batch):
  """A TFLite model with a fixed batch (1, as the export writes; 2) or a
  symbolic one (exports before 2026-11-24) gives one row per image for
  batches of 0, 1 and 3 images: here the per-channel means of uint8
  images, against NumPy."""
  import tensorflow as tf

  from scenejax import export

  @tf.function(
    input_signature=[tf.TensorSpec([fixed_batch, 4, 4, 3], tf.uint8)]
  )
  def channel_means(images):
    return tf.reduce_mean(tf.cast(images, tf.float32), axis=(1, 2))

  converter = tf.lite.TFLiteConverter.from_concrete_functions(
    [channel_means.get_concrete_function()], channel_means
  )
  path = tmp_path / "means.tflite"
  path.write_bytes(converter.convert())
  run = export.tflite_runner(str(path))
  rng = np.random.default_rng(0)
  for count in (0, 1, 3):
    images = rng.integers(0, 256, (count, 4, 4, 3), np.uint8)
    got = run(images)
    assert got.shape == (count, 3)
    np.testing.assert_allclose(got, images.mean(axis=(1, 2)), rtol=1e-6)


def test_export_options_and_runtimes_are_checked(tmp_path, exported):
  """Bad --formats/--quantize/--calibration/--runtime are one-line
  errors naming the flag; a runtime the export lacks names the file."""
  from scenejax import export
  from scenejax.errors import UserError

  out, _ = exported
  for options, words in [
    (dict(formats=("onnx",)), "onnx"),
    (dict(formats=("tflite",), quantize="int4"), "--quantize=int4"),
    (dict(formats=("stablehlo",), quantize="dynamic"), "tflite"),
    (dict(formats=("tflite",), quantize="int8"), "--calibration"),
  ]:
    with pytest.raises(UserError, match=words):
      export.export("unused", str(tmp_path / "x"), **options)
  with pytest.raises(UserError, match="--runtime=onnx"):
    export.load_runtime(out, "onnx")
  only = tmp_path / "only_json"
  only.mkdir()
  with open(os.path.join(out, "model.json")) as f:
    (only / "model.json").write_text(f.read())
  with pytest.raises(UserError, match="no model.tflite"):
    export.load_runtime(str(only), "tflite")
  with pytest.raises(UserError, match="no orbax parameters"):
    export.load_export(str(only))


_STABLEHLO_ALONE = """
import sys
import jax, numpy as np
with open(sys.argv[1], "rb") as f:
  exported = jax.export.deserialize(bytearray(f.read()))
images = np.load(sys.argv[2])
np.save(sys.argv[3], np.asarray(exported.call(images)))
assert not any(m.split(".")[0] in ("scenejax", "flax") for m in sys.modules)
print(exported.platforms, exported.in_avals)
"""


def test_stablehlo_export_runs_with_jax_alone(tmp_path, exported):
  """model.stablehlo needs neither scenejax nor Flax: a fresh interpreter
  with only jax and numpy imported runs it, at batch sizes the export never
  saw, and agrees with scenejax's own forward pass."""
  from scenejax import export

  out, description = exported
  rng = np.random.default_rng(0)
  size = description["image_size"]
  model, _ = export.load_export(out)
  for batch in (1, 3):
    images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    proc = subprocess.run(
      [sys.executable, "-c", _STABLEHLO_ALONE, os.path.join(out, "model.stablehlo"),
       tmp_path / "images.npy", tmp_path / "probs.npy"],
      capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cpu" in proc.stdout and "cuda" in proc.stdout
    got = np.load(tmp_path / "probs.npy")
    want = np.asarray(export.probabilities_function(model, description)(images))
    assert got.shape == (batch, description["num_classes"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_tflite_int8_quantization_keeps_the_predictions(
  tmp_path, uninterrupted
):
  """int8 post-training quantization (weights only, and weights with
  activations calibrated on images): the quantized model's top-1 agrees
  with the float model's on most held-out images, and its probabilities
  stay close; the flatbuffer shrinks (int8 weights)."""
  from PIL import Image

  from scenejax import export
  from scenejax.datasets import synthetic

  workdir, _ = uninterrupted
  _, _, test = synthetic.load(train_per_class=20, test_per_class=5)
  calibration = tmp_path / "calibration"
  calibration.mkdir()
  for i in range(0, 40, 2):
    Image.fromarray(test[i]["image"]).save(calibration / f"{i}.png")
  held_out = np.stack([test[i]["image"] for i in range(1, 40, 2)])
  float_dir = str(tmp_path / "float")
  description = export.export(workdir, float_dir, formats=("tflite",))
  want = export.load_runtime(float_dir)[0](held_out)
  for quantize in ("dynamic", "int8"):
    out = str(tmp_path / quantize)
    description = export.export(
      workdir,
      out,
      formats=("tflite",),
      quantize=quantize,
      calibration=str(calibration) if quantize == "int8" else None,
    )
    assert description["tflite_quantization"] == quantize
    got = export.load_runtime(out, "tflite")[0](held_out)
    agree = np.mean(got.argmax(1) == want.argmax(1))
    assert agree >= 0.9, (quantize, agree)
    assert np.abs(got - want).max() < 0.1, quantize
    assert os.path.getsize(os.path.join(out, "model.tflite")) < 0.5 * (
      os.path.getsize(os.path.join(float_dir, "model.tflite"))
    )


_DISTRIBUTED_RUN = """
import json, os, signal, sys, time
import jax
sys.path.insert(0, {repo!r}); sys.path.insert(0, {tests!r})
workdir, port, process_id, count, epochs, sigterm_at = sys.argv[1], sys.argv[
    2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
if count > 1:
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address="localhost:" + port,
                             num_processes=count, process_id=process_id)
import numpy as np
import test_trainer
from scenejax.tasks import classification
from scenejax.training import loop
config = test_trainer._tiny_config(num_epochs=epochs)
# SGD: updates linear in the gradients (Adam's 1/sqrt(v) would amplify the
# all-reduce's rounding on near-zero gradients into whole steps).
config.optimizer.name, config.optimizer.learning_rate = "sgd", 0.05
if sigterm_at:
  # Process 1 alone gets SIGTERM before step `sigterm_at`. From then on
  # every process's steps take 0.4 s: JAX's preemption service needs about
  # a second of wall time to agree on the sync step, longer than the tiny
  # run's remaining steps would otherwise last.
  real_step, calls = classification.jit_train_step, []
  def jit_train_step(*args, **kwargs):
    step_fn = real_step(*args, **kwargs)
    def step(*a):
      calls.append(1)
      if len(calls) == sigterm_at and process_id == 1:
        os.kill(os.getpid(), signal.SIGTERM)
      if len(calls) >= sigterm_at:
        time.sleep(0.4)
      return step_fn(*a)
    step._cache_size = step_fn._cache_size
    return step
  classification.jit_train_step = jit_train_step
result = loop.train_and_evaluate(config, workdir)
print("RESULT " + json.dumps({{k: v for k, v in result.items()
                              if k in ("preempted", "epoch",
                                       "step_in_epoch")}}))
if not result.get("preempted"):
  step, leaves = test_trainer._final_state(workdir)
  if process_id == 0:
    np.savez(workdir + "/final.npz", step=step, *leaves)
"""


# One vs two processes after 10 SGD steps (2 epochs), measured on the 2-core
# CPU machine (2026-11-23, jax 0.10.2):
#  - the largest |difference| / max|tensor| over the saved tensors: 5.45e-2,
#    in SGD's momentum trace of the first BatchNorm bias (its gradient sums
#    many cancelling terms); after 5 steps it was 3.61e-2;
#  - the relative difference of the last epoch's mean training loss:
#    1.18e-5 (2.81e-6 after one epoch).
# Only the all-reduce's summation order differs (gloo vs one device), and
# train-mode BatchNorm grows that rounding over the steps. The bounds are 4x
# the measurements. The loss bound is the sharp one: a wrong batch split
# moves the loss at order 1e-2 (seen: 2.52 vs 2.57 before that fix).
TWO_PROCESS_PARAMETER_TOLERANCE = 4 * 5.45e-2
TWO_PROCESS_LOSS_TOLERANCE = 4 * 1.18e-5


def _free_port():
  import socket

  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _run_processes(workdir, count, epochs, sigterm_at=0):
  """Runs the script in `count` processes for `epochs` epochs of 5 steps;
  `sigterm_at` > 0 sends SIGTERM to process 1 alone before that step.
  Returns each process's RESULT dict."""
  import json

  script = _DISTRIBUTED_RUN.format(repo=str(REPO), tests=str(REPO / "tests"))
  env = dict(os.environ, XLA_FLAGS="")  # one CPU device per process
  port = str(_free_port())
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        "-c",
        script,
        workdir,
        port,
        str(i),
        str(count),
        str(epochs),
        str(sigterm_at),
      ],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(count)
  ]
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  results = []
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
    line = [x for x in out.splitlines() if x.startswith("RESULT ")][-1]
    results.append(json.loads(line[len("RESULT ") :]))
  return results


@pytest.mark.slow
def test_two_processes_match_one_and_resume_after_sigterm_to_one(tmp_path):
  """jax.distributed over two CPU processes on loopback (gloo): the same
  global batches as one process, so the same metrics and parameters equal
  up to the all-reduce's rounding. Then SIGTERM to process 1 only, during
  epoch 1: both processes save the same step (JAX's preemption sync point)
  and stop; running again resumes to parameters bitwise equal to the
  uninterrupted two-process run. (One test: the uninterrupted run serves
  both checks; each run is ~15 s of process start-up and compiling.)"""
  import json

  one, whole, cut = (str(tmp_path / d) for d in ("one", "whole", "cut"))
  _run_processes(one, 1, epochs=2)
  _run_processes(whole, 2, epochs=2)
  r1 = json.load(open(os.path.join(one, "results.json")))
  r2 = json.load(open(os.path.join(whole, "results.json")))
  assert r1["confusion"] == r2["confusion"]
  a = np.load(os.path.join(one, "final.npz"))
  b = np.load(os.path.join(whole, "final.npz"))
  assert a.files == b.files and int(a["step"]) == int(b["step"]) == 10
  worst = max(
    float(np.abs(a[k] - b[k]).max()) / max(float(np.abs(a[k]).max()), 1e-3)
    for k in a.files
  )
  loss = abs(r1["train_loss"] - r2["train_loss"]) / abs(r1["train_loss"])
  print(f"one vs two processes: parameters {worst:.2e}, loss {loss:.2e}")
  assert worst <= TWO_PROCESS_PARAMETER_TOLERANCE
  assert loss <= TWO_PROCESS_LOSS_TOLERANCE

  stopped = _run_processes(cut, 2, epochs=2, sigterm_at=3)
  assert stopped[0] == stopped[1], stopped
  assert stopped[0].get("preempted"), stopped
  resumed = _run_processes(cut, 2, epochs=2)
  assert not resumed[0].get("preempted") and resumed[0]["epoch"] == 2
  c = np.load(os.path.join(cut, "final.npz"))
  assert c.files == b.files and int(c["step"]) == 10
  for key in b.files:
    np.testing.assert_array_equal(b[key], c[key])


def test_evaluate_workdir_reproduces_the_best_epoch(uninterrupted):
  """Restoring the best checkpoint and evaluating gives the metrics the
  trainer recorded for that epoch."""
  import json

  from scenejax import evaluate

  workdir, _ = uninterrupted
  metrics = evaluate.evaluate_workdir(workdir)
  rows = [
    json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))
  ]
  recorded = rows[metrics["step"] // 5 - 1]  # 5 steps per epoch
  assert metrics["top1"] == max(r["top1"] for r in rows)
  for key in ("top1", "top2", "top5", "mean_class_accuracy"):
    assert metrics[key] == recorded[key]
  ten = evaluate.evaluate_workdir(workdir, ten_crop=True)
  assert ten["num_examples"] == metrics["num_examples"]


@pytest.mark.slow
def test_commands_are_quiet_by_default(uninterrupted):
  """`python -m scenejax.evaluate` prints its metrics, not orbax's and
  absl's INFO lines (dozens before issue 12); --verbosity=0 brings them
  back."""
  import json

  from conftest import run_cli

  workdir, _ = uninterrupted
  proc = run_cli("scenejax.evaluate", f"--workdir={workdir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  info = [line for line in proc.stderr.splitlines() if line.startswith("I")]
  assert not info, info[:5]
  assert json.loads(proc.stdout)["num_examples"] == 40
  verbose = run_cli(
    "scenejax.evaluate", f"--workdir={workdir}", "--verbosity=0"
  )
  assert verbose.returncode == 0
  assert any(line.startswith("I") for line in verbose.stderr.splitlines())
