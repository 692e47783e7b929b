"""Shared fixtures: the reference data in ../shared, hypothesis profile."""

import atexit
import os
import pathlib
import shutil
import tempfile

import hypothesis
import pytest

SHARED = pathlib.Path(
  os.environ.get(
    "SCENEJAX_SHARED", pathlib.Path(__file__).resolve().parents[2] / "shared"
  )
)
PROTOTYPES = SHARED / "reference" / "similarity_prototypes"
SASNET = SHARED / "reference" / "sasnet_lists"
REPO = pathlib.Path(__file__).resolve().parents[1]

# One persistent XLA compilation cache for the test processes, the xdist
# workers and the command lines they start (set before jax is imported, so
# children inherit it): the suite compiles the same small programs - model
# initialisers, the demo's train step - in many processes, and on 2 cores
# compiling is most of its time. Every compile is cached, however short.
os.environ.setdefault(
  "JAX_COMPILATION_CACHE_DIR",
  os.path.join(tempfile.gettempdir(), f"scenejax-tests-xla-{os.getuid()}"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# Compiling dominates the suite on 2 cores, and no test times anything:
# compile with JAX's `jax_disable_most_optimizations` (XLA:CPU backend
# optimisation level 0, LLVM's expensive passes off). The benchmark harness
# took 28% less CPU time cold this way (2 min 56 s -> 2 min 7 s), the whole
# suite 14 min 10 s instead of 18 min 7 s. Users run the optimised build:
# SCENEJAX_TEST_OPTIMIZED=1 runs the suite with it (tolerances hold either
# way; the resume tests compare runs compiled alike).
if not os.environ.get("SCENEJAX_TEST_OPTIMIZED"):
  os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
# `published:DATASET/METRIC` prototypes come from the reference copies, never
# the network, into a cache of the test session's own (children inherit it).
os.environ["SCENEJAX_PUBLISHED_SOURCE"] = str(PROTOTYPES)
os.environ["SCENEJAX_CACHE"] = tempfile.mkdtemp(prefix="scenejax-tests-cache-")
atexit.register(shutil.rmtree, os.environ["SCENEJAX_CACHE"], ignore_errors=True)

# 15 examples per property in the full suite (the suite's 15-minute CI
# budget; the derandomised draws still cover each strategy's edges), 10 in
# the fast lane.
hypothesis.settings.register_profile(
  "ci",
  max_examples=15,
  deadline=None,
  derandomize=True,
  suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
# The fast lane (-m "not slow") draws 10 examples per property instead of 25.
hypothesis.settings.register_profile(
  "fast", max_examples=10, parent=hypothesis.settings.get_profile("ci")
)
hypothesis.settings.load_profile("ci")


def pytest_configure(config):
  if (config.option.markexpr or "").replace(" ", "") == "notslow":
    hypothesis.settings.load_profile("fast")


def pytest_collection_modifyitems(config, items):
  """The long end-to-end tests first: with two workers, a long test
  started last would leave the other core idle at the end. Tests sharing a
  module-scoped fixture stay with their module (moving one would build the
  fixture twice)."""

  def first(item):
    defs = getattr(item, "_fixtureinfo", None)
    shares = defs is not None and any(
      d[-1].scope == "module" for d in defs.name2fixturedefs.values() if d
    )
    return item.get_closest_marker("slow") is not None and not shares

  items.sort(key=lambda item: not first(item))


@pytest.fixture(scope="session")
def shared():
  if not PROTOTYPES.is_dir():
    pytest.fail(
      f"reference data not found at {SHARED} (expected ../shared "
      "beside the checkout, or set SCENEJAX_SHARED)"
    )
  return SHARED


def run_cli(module, *args, cwd=REPO, timeout=600, env=None):
  """`python -m MODULE ARGS` as a user runs it; the CompletedProcess."""
  import subprocess
  import sys

  return subprocess.run(
    [sys.executable, "-m", module, *map(str, args)],
    cwd=cwd,
    capture_output=True,
    text=True,
    timeout=timeout,
    env=env,
  )


def assert_user_error(proc, *fragments):
  """Exit status 2 and one line `error: ...` holding each fragment, no
  traceback."""
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  errors = [line for line in lines if line.startswith("error: ")]
  assert len(errors) == 1, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
  for fragment in fragments:
    assert fragment in errors[0], (fragment, errors[0])
  return errors[0]


def kill_at_first_checkpoint(script: str, workdir: str, timeout: float = 240):
  """Runs `python -c script workdir` and SIGKILLs it as soon as a first
  checkpoint step is on disk in WORKDIR/checkpoints (possibly while the
  next asynchronous save is in flight)."""
  import subprocess
  import sys
  import time

  ckpt_dir = os.path.join(workdir, "checkpoints")
  proc = subprocess.Popen(
    [sys.executable, "-c", script, workdir],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if os.path.isdir(ckpt_dir) and any(
      n.isdigit() for n in os.listdir(ckpt_dir)
    ):
      break
    time.sleep(0.05)
  proc.kill()
  proc.wait()
  assert os.path.isdir(ckpt_dir), "the run never wrote a checkpoint"


def write_top3_files(root, sizes, labels, split="train"):
  """SAS-Net's top-3 layout written with PIL (not scenejax.segment): random
  ids (0-based channels < 150) and scores as RGB PNGs of each record's
  (height, width), and the split's 'file label' list."""
  import numpy as np
  from PIL import Image

  rng = np.random.default_rng(0)
  lines = []
  for i, ((h, w), label) in enumerate(zip(sizes, labels, strict=True)):
    rel = f"{split}/{i:08d}.png"
    for folder, high in (
      ("noisy_annotations_RGB", 150),
      ("noisy_scores_RGB", 256),
    ):
      (root / folder / split).mkdir(parents=True, exist_ok=True)
      array = rng.integers(0, high, (h, w, 3), np.uint8)
      Image.fromarray(array).save(root / folder / rel)
    lines.append(f"{rel} {label}")
  (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
  return root
