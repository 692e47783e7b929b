"""The HTML page: report.html, one file with every figure embedded as a
PNG data URL."""

from __future__ import annotations

import base64
import html
import os

from scenejax import fileio


def _img(path, alt) -> str:
  with open(path, "rb") as f:
    data = base64.b64encode(f.read()).decode("ascii")
  return (
    f'<img alt="{html.escape(alt)}" style="max-width:100%" '
    f'src="data:image/png;base64,{data}">'
  )


def _table(header, rows) -> str:
  head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
  body = "".join(
    "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
    for row in rows
  )
  return f"<table><tr>{head}</tr>{body}</table>"


_STYLE = (
  "body{font-family:sans-serif;max-width:1100px;margin:2em auto;"
  "line-height:1.4} table{border-collapse:collapse} td,th{border:1px "
  "solid #ccc;padding:2px 8px;text-align:left} h2{margin-top:2em}"
)


def write_html(path, title: str, sections) -> str:
  """sections: (heading, [html fragments]); written atomically."""
  parts = [
    f"<!doctype html><html><head><meta charset='utf-8'><title>"
    f"{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
    f"<h1>{html.escape(title)}</h1>"
  ]
  for heading, fragments in sections:
    parts.append(f"<h2>{html.escape(heading)}</h2>" + "".join(fragments))
  parts.append("</body></html>")
  fileio.write_text(path, "".join(parts))
  return os.fspath(path)


def _p(text) -> str:
  return f"<p>{html.escape(text)}</p>"
