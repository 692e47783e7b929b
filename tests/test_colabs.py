"""The colabs/ notebooks: committed without outputs, one parameter cell each,
and each runs top to bottom on CPU (nbclient) once the test overrides the
parameters with the synthetic dataset and a tiny model, the way papermill
injects parameters."""

import os

import pytest
from conftest import PROTOTYPES, REPO, SASNET

# The notebook runner (the test extra); skipped where it is not installed.
nbformat = pytest.importorskip("nbformat")
NotebookClient = pytest.importorskip("nbclient").NotebookClient

NOTEBOOKS = sorted(p.name for p in (REPO / "colabs").glob("*.ipynb"))

# Test settings shared by the two training notebooks: the recipe's losses
# and optimizer, on synthetic scenes with a tiny model, two epochs.
_TINY_TRAINING = {
  "dataset": "synthetic_scenes",
  "data.train_per_class": 12,
  "data.test_per_class": 4,
  "data.image_size": 32,
  "num_epochs": 2,
  "batch_size": 32,
  "eval_batch_size": 16,
  "progress_bar": False,
}


def _overrides(name, tmp_path):
  if name == "similarity_prototype.ipynb":
    return [
      dict(SOURCE="synthetic", OUT_DIR=str(tmp_path / "synthetic")),
      dict(
        SOURCE="published",
        PUBLISHED_NPZ=str(PROTOTYPES / "MIT67_SP_cosine.npz"),
        CLASS_NAMES_FILE=str(SASNET / "MITIndoor67_scene_names.txt"),
        GLS_CLASSES="bedroom,livingroom",
        OUT_DIR=str(tmp_path / "published"),
      ),
    ]
  common = dict(
    REPO_DIR=str(REPO),
    PREPARE=False,
    INIT_FROM="",
    PROTOTYPE="",
    WORKDIR=str(tmp_path / "run"),
  )
  if name == "train_sun397_gls_bcl.ipynb":
    return [
      dict(
        common,
        OVERRIDES=dict(
          _TINY_TRAINING, model="vit_ti16", **{"loss.num_soft_epochs": 1}
        ),
      )
    ]
  if name == "pcl_places365.ipynb":
    return [
      dict(
        common,
        NUM_EXAMPLES=4,
        OVERRIDES=dict(_TINY_TRAINING, model="resnet_tiny"),
      )
    ]
  raise AssertionError(f"no test settings for colabs/{name}")


def test_every_notebook_has_test_settings():
  assert NOTEBOOKS == [
    "pcl_places365.ipynb",
    "similarity_prototype.ipynb",
    "train_sun397_gls_bcl.ipynb",
  ]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_clean(name):
  nb = nbformat.read(REPO / "colabs" / name, as_version=4)
  nbformat.validate(nb)
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, (
        f"colabs/{name} is committed with outputs"
      )
  tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
  assert len(tagged) == 1, f"colabs/{name} needs one 'parameters' cell"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_on_cpu(name, tmp_path, shared):
  for overrides in _overrides(name, tmp_path):
    nb = nbformat.read(REPO / "colabs" / name, as_version=4)
    index = next(
      i
      for i, c in enumerate(nb.cells)
      if "parameters" in c.metadata.get("tags", [])
    )
    injected = nbformat.v4.new_code_cell(
      "\n".join(f"{k} = {v!r}" for k, v in overrides.items())
    )
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, injected)
    NotebookClient(
      nb,
      timeout=600,
      kernel_name="python3",
      resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    outputs = "".join(
      o.get("text", "")
      for c in nb.cells
      if c.cell_type == "code"
      for o in c.outputs
    )
    if name == "similarity_prototype.ipynb":
      out = overrides["OUT_DIR"]
      assert os.path.exists(os.path.join(out, "report", "report.html"))
      assert "most similar pairs" in outputs
    else:
      run = overrides["WORKDIR"]
      for path in ("results.json", "export/model.json", "report/report.html"):
        assert os.path.exists(os.path.join(run, path)), path
      if name == "pcl_places365.ipynb":
        assert os.path.exists(os.path.join(run, "pcl_erasing.png"))
