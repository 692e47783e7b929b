"""Docs that cannot rot: every command of the README and of docs/ runs.

Each fenced `bash` block is a list of commands (a trailing backslash
continues a line; `#` starts a comment) and each `python` block a script.
A block whose first line is `# needs: ...` names what a CPU machine without
downloads lacks (a prepared dataset, pretrained weights, a GPU, several
hosts, the network, time) and is not run. Every other block runs and must
exit 0, in a working directory shared by the pages of its group, in the
order the pages are listed, so a page can use what an earlier one wrote.
The test stands in for the user in three ways, and only these:

- `/tmp/` in a command becomes the group's own temporary directory;
- `photos/` is a folder of a few JPEGs the test writes (your images), and
  `my_scenes/` an image folder (train/CLASS/IMAGE, test/CLASS/IMAGE) of
  the synthetic scenes as JPEGs;
- a training command (`python -m scenejax.main`, `scenejax train`) that
  does not set `--config.num_epochs` runs one epoch
  (`--config.num_epochs=1` appended): the suite's time goes to checking
  every command, not to training; a longer run is any recipe's own test.

`pip install` lines are not run (the package is installed), nor is the
README's test command, which is `.ci/run`'s (checked below). A command run
once in a group is not run again when a later page repeats it.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import time

import pytest
from conftest import REPO

# Pages sharing a working directory, in the order they run. Every page with
# a runnable block must be in one (checked).
GROUPS = {
  "classification": [
    "README.md",
    "docs/getting-started.md",
    "docs/deployment.md",
    "docs/prototypes.md",
    "docs/reports.md",
    "docs/training.md",
  ],
  "reproduce": ["docs/reproducing.md"],
  "image_folder": ["docs/your-images.md"],
  "multilabel": ["docs/multilabel.md"],
  "segmentation": [
    "docs/segmentation-training.md",
    "docs/sasnet.md",
    "docs/segmenters.md",
  ],
}
NEEDS = re.compile(r"# needs: \S")


def doc_pages():
  return sorted(
    [REPO / "README.md", *(REPO / "docs").rglob("*.md")],
    key=lambda p: str(p),
  )


def blocks(path):
  """(language, text) of each fenced bash or python block of a page."""
  text = pathlib.Path(path).read_text()
  return re.findall(r"^```(bash|python)\n(.*?)^```", text, re.M | re.S)


def runnable(block_text):
  return not NEEDS.match(block_text.lstrip())


def commands(block_text):
  """The block's commands, continuations joined, comments dropped."""
  joined = re.sub(r"\\\n\s*", " ", block_text)
  found = []
  for line in joined.splitlines():
    line = re.sub(r"\s+#.*$", "", line).strip()
    if line and not line.startswith("#"):
      found.append(line)
  return found


def _write_photos(folder):
  from PIL import Image

  from scenejax.datasets import synthetic

  folder.mkdir()
  _, _, test = synthetic.load(train_per_class=1, test_per_class=1)
  for i, image in enumerate(test.images[:4]):
    big = Image.fromarray(image).resize((96, 72), Image.BILINEAR)
    big.save(folder / f"photo_{i}.jpg", quality=90)


def _python_on_path(bin_dir):
  """A `python` that is this interpreter, first on PATH, then the
  interpreter's own scripts (`scenejax`)."""
  bin_dir.mkdir()
  (bin_dir / "python").symlink_to(sys.executable)
  scripts = os.path.dirname(sys.executable)
  return os.pathsep.join([str(bin_dir), scripts, os.environ["PATH"]])


def _as_run(command, tmp):
  training = command.startswith(("python -m scenejax.main", "scenejax train"))
  if training and "--config.num_epochs=" not in command:
    command += " --config.num_epochs=1"
  return command.replace("/tmp/", f"{tmp}/")


def test_every_page_with_commands_is_in_a_group():
  grouped = {page for pages in GROUPS.values() for page in pages}
  for path in doc_pages():
    rel = str(path.relative_to(REPO))
    for _, text in blocks(path):
      if runnable(text):
        assert rel in grouped, f"{rel} has runnable commands; add it to GROUPS"


def test_needs_blocks_say_what_they_need():
  for path in doc_pages():
    for _, text in blocks(path):
      first = text.lstrip().splitlines()[0] if text.strip() else ""
      if first.startswith("# needs"):
        assert NEEDS.match(first) and len(first) > len("# needs: ") + 8, (
          path,
          first,
        )


def test_readme_test_command_is_what_ci_runs():
  readme = (REPO / "README.md").read_text()
  found = re.findall(r"^(python -m pytest [^\n#]*tests)\s*$", readme, re.M)
  assert found, "no test command in the README"
  ci = (REPO / ".ci" / "run").read_text()
  assert found[0] in ci.replace("python3 -m", "python -m"), found[0]


def test_citation_file_names_this_version():
  import yaml

  import scenejax

  citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
  assert citation["version"] == scenejax.__version__
  assert citation["license"] == "Apache-2.0"
  assert (REPO / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_readme_is_short_and_links_resolve():
  readme = REPO / "README.md"
  assert len(readme.read_text().splitlines()) <= 250
  for path in (readme, *(REPO / "docs").rglob("*.md")):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
      if "://" in target:
        continue
      assert (path.parent / target).exists(), (path, target)


def _run_group(group, tmp_path):
  work = tmp_path / "work"
  work.mkdir()
  (work / "configs").symlink_to(REPO / "configs")
  _write_photos(work / "photos")
  from test_image_folder import write_folder

  write_folder(work / "my_scenes")
  tmp = tmp_path / "tmp"
  tmp.mkdir()
  env = dict(os.environ, PATH=_python_on_path(tmp_path / "bin"))
  done, ran = set(), []
  for page in GROUPS[group]:
    for language, text in blocks(REPO / page):
      if not runnable(text):
        continue
      if language == "python":
        script = text.replace("/tmp/", f"{tmp}/")
        todo = [(f"{page}: python block", [sys.executable, "-c", script])]
      else:
        todo = []
        for command in commands(text):
          if command.startswith("pip install") or command.startswith(
            "python -m pytest"
          ):
            continue
          if command in done:
            continue
          done.add(command)
          todo.append((command, ["bash", "-c", _as_run(command, tmp)]))
      for name, argv in todo:
        started = time.time()
        proc = subprocess.run(
          argv, cwd=work, env=env, capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, (
          page,
          name,
          proc.stdout[-2000:],
          proc.stderr[-3000:],
        )
        ran.append((name, proc))
        if os.environ.get("SCENEJAX_DOCS_TIMES"):
          print(f"{time.time() - started:7.1f} s  {name}", flush=True)
  return tmp, ran


@pytest.mark.slow
def test_classification_pages(tmp_path):
  tmp, ran = _run_group("classification", tmp_path)
  # The README's demo, one epoch: above chance (1/8) already (its epoch 1
  # row shows 0.417).
  results = json.loads((tmp / "scenejax_demo" / "results.json").read_text())
  assert results["epoch"] == 1 and results["top1"] >= 0.25, results["top1"]
  # Plain CE, 2 epochs (getting-started): far above chance too. Measured
  # 0.555; a broken gradient, label or input path stays near 0.125.
  ce = json.loads((tmp / "scenejax_demo_ce" / "results.json").read_text())
  assert ce["epoch"] == 2 and ce["top1"] >= 0.40 and "train_bcl" not in ce
  assert (tmp / "scenejax_demo" / "report" / "report.html").is_file()
  assert json.loads((tmp / "scenejax_demo" / "eval.json").read_text())[
    "top1"
  ] == pytest.approx(results["top1"], abs=0.02)
  # TensorFlow's and LiteRT's C++ logs stay out of the TFLite commands.
  for name, proc in ran:
    if "tflite" in name:
      assert not re.search(r"^[IWE]\d{4} |XNNPACK|oneDNN", proc.stderr, re.M), (
        name,
        proc.stderr[-1000:],
      )
  # predict printed a top-5 for each of the 4 photos.
  predict = next(p for n, p in ran if "--predict=" in n and "tflite" not in n)
  assert sum("photo_" in line for line in predict.stdout.splitlines()) >= 4


@pytest.mark.slow
def test_your_images_page(tmp_path):
  tmp, _ = _run_group("image_folder", tmp_path)
  results = json.loads((tmp / "my_scenes_run" / "results.json").read_text())
  assert results["epoch"] == 1 and results["num_examples"] == 32
  assert (tmp / "my_scenes_run" / "dataset_split.json").is_file()


@pytest.mark.slow
def test_reproduce_page(tmp_path):
  tmp, ran = _run_group("reproduce", tmp_path)
  assert "missing" not in ran[-1][1].stdout, ran[-1][1].stdout


@pytest.mark.slow
def test_multilabel_page(tmp_path):
  tmp, _ = _run_group("multilabel", tmp_path)
  results = json.loads((tmp / "scenejax_ml" / "results.json").read_text())
  assert results["mAP"] > 0.3  # a constant predictor scores 0.166


@pytest.mark.slow
def test_segmentation_pages(tmp_path):
  tmp, _ = _run_group("segmentation", tmp_path)
  maps = sorted((tmp / "scenejax_seg_maps").rglob("*.png"))
  assert len(maps) == 4, maps  # one label map per photo
  assert (tmp / "segmenter_cosine.npz").is_file()
