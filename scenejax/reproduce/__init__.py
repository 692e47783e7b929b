"""Reproduce a paper's table: expand it into runs, run them, collect
(the names used elsewhere are re-exported here).

  tables.py     the papers' tables: rows (backbones), columns (config
                variants), the published numbers
  grid.py       a table expanded into runs; each run's config; the runs
                run in this process (finished skipped, interrupted resumed)
  results.py    the runs' results.json collected into the table, written as
                markdown, HTML and JSON
  __main__.py   python -m scenejax.reproduce --table=T --dataset=D ...
"""

from scenejax.reproduce.grid import (
  expand,
  parse_settings,
  run_config,
  run_grid,
)
from scenejax.reproduce.results import collect, to_markdown
from scenejax.reproduce.tables import (
  PCL_BACKBONES,
  SP_BACKBONES,
  SP_ROWS,
  TABLES,
)

__all__ = [
  "PCL_BACKBONES",
  "SP_BACKBONES",
  "SP_ROWS",
  "TABLES",
  "collect",
  "expand",
  "parse_settings",
  "run_config",
  "run_grid",
  "to_markdown",
]
