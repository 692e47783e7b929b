r"""Reproduce a paper's table: expand it into runs, run them, collect.

  # Every run of [SP] Table 3 on MIT-67 for two backbones, three seeds, one
  # after another (finished runs skipped, interrupted ones resumed):
  python -m scenejax.reproduce --table=sp3 --dataset=mit67 \
      --models=resnet50,vit_b16 --seeds=3 --workdir=runs/
  # The same grid as one `python -m scenejax.main ...` line per run, for a
  # cluster scheduler (e.g. line $SLURM_ARRAY_TASK_ID of the file):
  python -m scenejax.reproduce --table=sp3 --dataset=mit67 --seeds=3 \
      --workdir=runs/ --print_commands > sp3.txt
  # The table from the runs' results.json (missing cells marked):
  python -m scenejax.reproduce --table=sp3 --dataset=mit67 --seeds=3 \
      --workdir=runs/ --collect

A run's workdir is WORKDIR/DATASET/MODEL/VARIANT/seedN, shared by every table
that has the run (the baseline of sp1..sp4 runs once). The table is written
as WORKDIR/TABLE_DATASET.md and .html: each cell our mean +- std over the
seeds (Top-1 %, and Top-5 for [PCL]) beside the paper's number, the delta to
our baseline next to the paper's delta, and "(!)" where the two deltas'
signs differ.

--set=KEY=VALUE (repeatable) changes every run's config (e.g.
--set=num_epochs=2), in the printed commands as --config.KEY=VALUE.
"""

from __future__ import annotations

import sys

from absl import flags

from scenejax import cli
from scenejax.reproduce.grid import _table, expand, parse_settings, run_grid
from scenejax.reproduce.results import collect, to_markdown, write_table
from scenejax.reproduce.tables import TABLES

_TABLE = flags.DEFINE_enum("table", None, list(TABLES), "the table")
_DATASET = flags.DEFINE_string("dataset", None, "the table's dataset")
_MODELS = flags.DEFINE_list(
  "models", None, "rows (backbones) to run; default every row"
)
_SEEDS = flags.DEFINE_integer(
  "seeds", 1, "seeds per cell: runs with config.seed = 0 .. N-1"
)
_WORKDIR = flags.DEFINE_string("workdir", None, "where the runs go")
_PRINT = flags.DEFINE_bool(
  "print_commands", False, "print one scenejax.main command per run"
)
_COLLECT = flags.DEFINE_bool(
  "collect", False, "only gather results.json into the table"
)
_SET = flags.DEFINE_multi_string(
  "set", [], "KEY=VALUE for every run's config (e.g. num_epochs=2)"
)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}")
  for name in ("table", "dataset", "workdir"):
    if flags.FLAGS[name].value is None:
      cli.fail(f"--{name} is required (see --help)")
  settings = parse_settings(_SET.value)
  runs = expand(
    _TABLE.value,
    _DATASET.value,
    _MODELS.value,
    _SEEDS.value,
    _WORKDIR.value,
    settings,
  )
  if _PRINT.value:
    # SAS-Net's stages start from the previous stage's runs: print them
    # stage by stage, each group after a line saying it must wait.
    table = _table(_TABLE.value)
    stage_of = {
      v: c for c, col in enumerate(table.columns) for v in col.variants
    }
    staged = any(col.after for col in table.columns)
    stage = None
    for run in (
      sorted(runs, key=lambda r: stage_of[r.variant]) if staged else runs
    ):
      if staged and stage_of[run.variant] != stage:
        if stage is not None:
          print("# wait: the runs below start from the runs above")
        stage = stage_of[run.variant]
      print(run.command())
    return
  if not _COLLECT.value:
    state = run_grid(runs)
    if state == "preempted":
      sys.exit(cli.EXIT_PREEMPTED)
  result = collect(
    _TABLE.value, _DATASET.value, _MODELS.value, _SEEDS.value, _WORKDIR.value
  )
  md, html_path = write_table(result, _WORKDIR.value)
  print(to_markdown(result))
  print(f"wrote {md} and {html_path}")


if __name__ == "__main__":
  cli.run(main)
