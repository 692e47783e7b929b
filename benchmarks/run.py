"""The benchmark suite: one table of side-by-side ratios, measured in one run.

  python benchmarks/run.py [--full] [--rows 1,3] [--out PATH]

Each row times scenejax and a comparison on the same machine in the same
process. Where both are timed, they alternate (A, B, A, B, ... after one
warm-up call each) and the figure is the ratio of the medians: these machines
are shared and noisy, and a ratio survives noise that absolute times don't.

  1  train step CE + GLS + BCL vs CE only, C = 397          target <= 1.01x
     (and the loss kernels alone, as a share of the step)
  2  PCL train step vs plain step, same backbone            target <= 2.1x
  3  train step vs the same architecture in PyTorch eager,
     same weights, fp32 on CPU                              target >= 1.0x
     bf16 step and model FLOPs utilisation on an accelerator
     (ViT-B/16: 17.6 GMACs per image forward, a step = 3x forward)
                                                            target >= 40% (H200)
  4  eval images/s vs PyTorch eager; train-step peak memory (XLA's account)
  5  input pipeline images/s per core vs PyTorch DataLoader; device idle
     time waiting for data in the demo run                  target < 5%
  6  prototype building: maps/s vs the literal Algorithm 1  (target 50x)
  7  async checkpoint: time the loop is blocked per save, as a fraction of
     the save interval (one epoch of the demo)              target < 2%;
     train-step compilations per run                        target 1
  8  segmenter inference at 512 px: images/s vs transformers eager, same
     weights, fp32 on CPU; and `segment.Predictor` end to end (resize, pad,
     top-1, crop, resize back) on 512 x 683 images            report
  9  [SEG] loss (fwd + grad) as a share of the segmentation step
                                                            target <= 5%
 10  [SP] Table 5 on our models: deployment cost (parameters, XLA FLOPs,
     images/s) of ResNet-18 (+ GLS + BCL, which cost nothing there) vs
     SAS-Net ResNet-18 (segmenter + two branches)           report
 11  deployable artefacts (`scenejax.export`) on CPU: images/s of
     StableHLO and TFLite (float, int8 weights) vs PyTorch eager, same
     weights                                                target >= 1.0x;
     their Top-1 on the demo's eval split vs the in-process model's
                                                            equal / 0.01
 12  start-up and a small job of `evaluate`, `export --predict` (one image)
     and `segment` (four images): first run, second run (the persistent
     compilation cache), and with the cache off        target >= 2x

Quick (default): batch 8 at 224 px, 3 repeats, ResNet-50 and ViT-B/16
(~10 minutes on 2 CPU cores). --full: batch 32 (the issue's setting), 7
repeats. --tiny: the harness on 32-px toy models (what the test runs).
Writes OUT.md (the machine, the versions, the table and how to read it) and
OUT.json (one object per row); OUT defaults to benchmarks/results/DATE-MODE,
one dated file per run. Needs the test extra (torch, transformers,
tensorflow-cpu) for the comparisons.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_HERE, os.path.dirname(_HERE)]  # benchmarks/, configs/
import backbones  # noqa: E402, F401  (sets OMP_WAIT_POLICY before torch loads)
from harness import SETTINGS, machine  # noqa: E402
from rows.algorithm1 import rows_prototype  # noqa: E402
from rows.async_checkpoint import rows_checkpoint  # noqa: E402
from rows.data_pipeline import rows_input  # noqa: E402
from rows.deployment_cost import rows_deployment  # noqa: E402
from rows.eval_memory import rows_eval_memory  # noqa: E402
from rows.export_runtimes import rows_export  # noqa: E402
from rows.segmentation_loss import rows_segmentation_loss  # noqa: E402
from rows.segmenter_inference import rows_segmenter  # noqa: E402
from rows.startup import rows_startup  # noqa: E402
from rows.train_step_overhead import rows_aux_loss, rows_pcl  # noqa: E402
from rows.train_step_vs_pytorch import rows_pytorch  # noqa: E402

from scenejax import fileio  # noqa: E402

ROWS = {
  1: rows_aux_loss,
  2: rows_pcl,
  3: rows_pytorch,
  4: rows_eval_memory,
  5: rows_input,
  6: rows_prototype,
  7: rows_checkpoint,
  8: rows_segmenter,
  9: rows_segmentation_loss,
  10: rows_deployment,
  11: rows_export,
  12: rows_startup,
}


def versions() -> str:
  """The versions that decide the figures, one line."""
  import importlib.metadata as metadata
  import platform

  found = [f"Python {platform.python_version()}"]
  for package in ("jax", "jaxlib", "flax", "torch", "transformers"):
    try:
      found.append(f"{package} {metadata.version(package)}")
    except metadata.PackageNotFoundError:
      pass
  return ", ".join(found)


HOW_TO_READ = """\
How to read it: each ratio compares scenejax with the comparison named in
its row, timed in this process on this machine, alternating A, B, A, B
after one warm-up call each; the figure is the ratio of the medians.
`met` compares the ratio with the row's target; "report" rows have none.
Ratios from different machines or runs are not comparable with each other.
"""


def markdown(rows, mode) -> str:
  lines = [
    f"# {datetime.date.today().isoformat()}: benchmarks/run.py, {mode} mode",
    "",
    f"- Machine: {rows[0]['machine'] if rows else machine()}.",
    f"- Versions: {versions()}.",
    f"- Command: `python benchmarks/run.py"
    f"{'' if mode == 'quick' else ' --' + mode}`.",
    "",
    # The docs' benchmarks page includes the table by these markers.
    "<!-- --8<-- [start:table] -->",
    "| # | what | scenejax | comparison | ratio | target | met | setting |",
    "|---|---|---|---|---|---|---|---|",
  ]
  lines.extend(table_row(r) for r in rows)
  lines.append("<!-- --8<-- [end:table] -->")
  return "\n".join(lines) + "\n\n" + HOW_TO_READ


def table_row(r) -> str:
  ratio = "—" if r["ratio"] is None else f"{r['ratio']:.3f}x"
  met = {True: "yes", False: "**no**", None: "—"}[r["met"]]
  return (
    f"| {r['row']} | {r['what']} | {r['scenejax']} | "
    f"{r['comparison']} | {ratio} | {r['target']} | {met} | "
    f"{r['setting']} |"
  )


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--full", action="store_true")
  mode.add_argument(
    "--tiny",
    action="store_true",
    help="toy sizes: checks the harness, not the speed",
  )
  parser.add_argument("--rows", default="1,2,3,4,5,6,7,8,9,10,11,12")
  parser.add_argument(
    "--out",
    default=None,
    help="writes OUT.md and OUT.json (default: benchmarks/results/DATE-MODE)",
  )
  args = parser.parse_args(argv)
  name = "full" if args.full else "tiny" if args.tiny else "quick"
  if args.out is None:
    today = datetime.date.today().isoformat()
    args.out = os.path.join(_HERE, "results", f"{today}-{name}")
  s = SETTINGS[name]
  rows = []
  for number in (int(r) for r in args.rows.split(",")):
    new = ROWS[number](s)
    for r in new:
      print(table_row(r), flush=True)
    rows.extend(new)
  text = markdown(rows, name)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  fileio.write_text(args.out + ".md", text)
  fileio.atomic_write(
    args.out + ".json",
    lambda f: f.write(
      json.dumps(
        dict(
          mode=name,
          date=datetime.date.today().isoformat(),
          machine=machine(),
          rows=rows,
        ),
        indent=1,
      )
    ),
    mode="w",
  )
  print()
  print(text)
  return rows


if __name__ == "__main__":
  main()
