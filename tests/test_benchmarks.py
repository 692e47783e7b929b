"""benchmarks/run.py: the quick suite's harness, on toy sizes. It checks that
every row is measured and written, not how fast anything is."""

import json
import sys

import pytest
from conftest import REPO


@pytest.mark.slow
def test_suite_harness_writes_every_row(tmp_path, monkeypatch):
  monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
  monkeypatch.syspath_prepend(str(REPO))
  import run  # benchmarks/run.py

  out = str(tmp_path / "results")
  rows = run.main(["--tiny", "--out", out])
  assert sorted({r["row"] for r in rows}) == list(range(1, 13))
  saved = json.load(open(out + ".json"))
  assert saved["rows"] == json.loads(json.dumps(rows))
  table = open(out + ".md").read()
  for r in rows:
    assert set(r) >= {"what", "scenejax", "comparison", "ratio", "machine"}
    assert r["what"] in table
    if r["ratio"] is not None:
      assert r["ratio"] > 0
  # Without an accelerator the accelerator rows say so; never a number.
  accelerator = [r for r in rows if "accelerator" in r["what"]]
  assert accelerator
  if "cpu" in rows[0]["machine"]:
    assert all(
      r["ratio"] is None and r["scenejax"].startswith("unmeasured")
      for r in accelerator
    )
  compiles = next(r for r in rows if "compilations" in r["what"])
  assert compiles["scenejax"] == "1" and compiles["met"]
  del sys.modules["run"]
