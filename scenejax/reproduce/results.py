"""Collecting the table: the runs' results.json gathered into cells (our
mean and std over the seeds beside the paper's number, the deltas to the
baselines), written as markdown, HTML and JSON."""

from __future__ import annotations

import html
import json
import os

import numpy as np

from scenejax import fileio
from scenejax.errors import UserError
from scenejax.reproduce.grid import _table, expand


def _read_result(run_dir: str, metrics: tuple) -> dict | None:
  path = os.path.join(run_dir, "results.json")
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      result = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"{path}: not readable JSON ({e})") from None
  absent = [m for m in metrics if not isinstance(result.get(m), (int, float))]
  if absent:
    raise UserError(
      f"{path}: no {', '.join(absent)} (a run of another task, or damaged): "
      "remove the run and run the grid again"
    )
  return dict(
    {m: 100.0 * float(result[m]) for m in metrics},
    wall_time_s=result.get("wall_time_s"),
    device=result.get("device", "unrecorded"),
  )


def collect(
  table_name: str, dataset: str, rows, seeds: int, workdir: str
) -> dict:
  """Every cell of the table from the runs' results.json: per row and
  column the best variant's mean and std over the seeds found, how many of
  the column's runs were found, and the paper's value."""
  table = _table(table_name)
  runs = expand(table_name, dataset, rows, seeds, workdir)
  found = {}
  for run in runs:
    found[run.row, run.variant, run.seed] = (
      run,
      _read_result(run.workdir, table.metrics),
    )
  row_names = rows or list(table.backbones[dataset])  # the paper's order
  width = len(table.metrics)
  out_rows = []
  for row in row_names:
    paper = table.paper.get((dataset, row))
    cells = []
    for c, column in enumerate(table.columns):
      best, runs_found = None, 0
      for variant in column.variants:
        values = [
          found[row, variant, s][1]
          for s in range(seeds)
          if (row, variant, s) in found and found[row, variant, s][1]
        ]
        runs_found += len(values)
        if not values:
          continue
        mean = [float(np.mean([v[m] for v in values])) for m in table.metrics]
        if best is None or mean[0] > best["mean"][0]:
          std = [
            float(np.std([v[m] for v in values], ddof=1))
            if len(values) > 1
            else float("nan")
            for m in table.metrics
          ]
          best = dict(variant=variant, mean=mean, std=std, seeds=len(values))
      cell = best or dict(variant=None, mean=None, std=None, seeds=0)
      # A best-of column (Table 4) is only final when all its runs are.
      cell["runs"] = (runs_found, len(column.variants) * seeds)
      cell["paper"] = (
        None if paper is None else list(paper[c * width : (c + 1) * width])
      )
      cells.append(cell)
    base = cells[0]
    for cell in cells[1:]:
      cell["delta"] = (
        None
        if cell["mean"] is None or base["mean"] is None
        else cell["mean"][0] - base["mean"][0]
      )
      p, bp = cell["paper"], base["paper"]
      cell["paper_delta"] = (
        None
        if p is None or bp is None or np.isnan(p[0]) or np.isnan(bp[0])
        else p[0] - bp[0]
      )
      cell["sign_differs"] = (
        cell["delta"] is not None
        and cell["paper_delta"] is not None
        and np.sign(cell["delta"]) != np.sign(cell["paper_delta"])
      )
    out_rows.append(dict(row=row, cells=cells))
  run_rows = [
    dict(workdir=run.workdir, result=result) for run, result in found.values()
  ]
  return dict(
    table=table_name,
    title=table.title,
    dataset=dataset,
    seeds=seeds,
    columns=[c.name for c in table.columns],
    metrics=list(table.metrics),
    rows=out_rows,
    runs=run_rows,
  )


def _fmt(values, std=None, *, as_published=False) -> str:
  parts = []
  for i, v in enumerate(values):
    if v is None or np.isnan(v):
      parts.append("–")
    elif as_published:
      parts.append(str(v))  # the paper's digits
    elif std is not None and not np.isnan(std[i]):
      parts.append(f"{v:.2f} ± {std[i]:.2f}")
    else:
      parts.append(f"{v:.2f}")
  return " / ".join(parts)


def _cell_text(cell) -> tuple[str, str]:
  """(ours, paper) texts of one cell."""
  found, expected = cell["runs"]
  if cell["mean"] is None:
    ours = f"missing (0/{expected} runs)"
  else:
    ours = _fmt(cell["mean"], cell["std"])
    if cell.get("delta") is not None:
      ours += f" ({cell['delta']:+.2f})"
    if found < expected:
      ours += f" [{found}/{expected} runs]"
    if cell.get("sign_differs"):
      ours += " (!)"
  if cell["paper"] is None:
    paper = "–"
  else:
    paper = _fmt(cell["paper"], as_published=True)
    if cell.get("paper_delta") is not None:
      paper += f" ({round(cell['paper_delta'], 3):+g})"
  return ours, paper


def to_markdown(result: dict) -> str:
  lines = [
    f"### {result['title']}, {result['dataset']}",
    "",
    f"Ours: mean ± std over {result['seeds']} seed(s), (delta to our "
    "baseline); paper: as published, (its delta); (!) where the signs of "
    "the two deltas differ.",
    "",
    "| model | " + " | ".join(result["columns"]) + " |",
    "|---|" + "---|" * len(result["columns"]),
  ]
  for row in result["rows"]:
    texts = [_cell_text(c) for c in row["cells"]]
    lines.append(
      f"| {row['row']} | "
      + " | ".join(f"{o}<br>paper {p}" for o, p in texts)
      + " |"
    )
  lines += ["", "| run | wall time | device |", "|---|---|---|"]
  for run in result["runs"]:
    r = run["result"]
    if r is None:
      lines.append(f"| {run['workdir']} | not finished | |")
    else:
      wall = r["wall_time_s"]
      lines.append(
        f"| {run['workdir']} | "
        + ("unrecorded" if wall is None else f"{wall:.0f} s")
        + f" | {r['device']} |"
      )
  return "\n".join(lines) + "\n"


def to_html(result: dict) -> str:
  e = html.escape
  head = "".join(f"<th>{e(c)}</th>" for c in result["columns"])
  body = []
  for row in result["rows"]:
    cells = "".join(
      f"<td{' class=differs' if c.get('sign_differs') else ''}>{e(o)}"
      f"<br><small>paper {e(p)}</small></td>"
      for c, (o, p) in ((c, _cell_text(c)) for c in row["cells"])
    )
    body.append(f"<tr><td>{e(row['row'])}</td>{cells}</tr>")
  runs = "".join(
    f"<tr><td>{e(r['workdir'])}</td><td>"
    + (
      "not finished</td><td>"
      if r["result"] is None
      else (
        f"{r['result']['wall_time_s']:.0f} s"
        if r["result"]["wall_time_s"] is not None
        else "unrecorded"
      )
      + f"</td><td>{e(r['result']['device'])}"
    )
    + "</td></tr>"
    for r in result["runs"]
  )
  return (
    "<!doctype html><meta charset=utf-8>"
    f"<title>{e(result['title'])}</title>"
    "<style>td,th{border:1px solid #ccc;padding:4px}"
    "table{border-collapse:collapse}.differs{background:#fdd}</style>"
    f"<h3>{e(result['title'])}, {e(result['dataset'])}</h3>"
    f"<p>Ours: mean ± std over {result['seeds']} seed(s), (delta to our "
    "baseline); paper as published, (its delta). Red: the deltas' signs "
    "differ.</p>"
    f"<table><tr><th>model</th>{head}</tr>{''.join(body)}</table>"
    "<h4>Runs</h4><table><tr><th>run</th><th>wall time</th><th>device</th>"
    f"</tr>{runs}</table>\n"
  )


def write_table(result: dict, workdir: str) -> tuple[str, str]:
  stem = os.path.join(workdir, f"{result['table']}_{result['dataset']}")
  fileio.write_text(stem + ".md", to_markdown(result))
  fileio.write_text(stem + ".html", to_html(result))
  fileio.write_json(stem + ".json", result)
  return stem + ".md", stem + ".html"
