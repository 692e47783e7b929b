"""Progress for long loops: a live bar on a terminal, plain lines elsewhere.

A tqdm bar redraws its line with carriage returns several times a second;
written into a pipe or a log file that is a wall of redraws. So `bar`
returns tqdm's bar when stderr is a terminal, and otherwise the same
object printing one plain line (the same text) every `LOG_INTERVAL_S`
seconds and at the end. `enabled = False` (the commands' `--noprogress`)
turns both off.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

enabled = True  # --noprogress sets it (scenejax.cli)
LOG_INTERVAL_S = 30.0


class _NoBareNewline:
  """The stream, less the lone newline tqdm writes when a bar closes (its
  terminal bar needs it; a log of whole lines would get a blank line)."""

  def __init__(self, stream):
    self.stream = stream

  def write(self, text):
    if text != "\n":
      self.stream.write(text)

  def flush(self):
    self.stream.flush()


class _Lines(tqdm):
  """tqdm's bookkeeping (rate, ETA, postfix), printed as whole lines."""

  def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
    # Shown with the next periodic line, not as a line of its own.
    super().set_postfix(ordered_dict, refresh=False, **kwargs)

  def display(self, msg=None, pos=None):
    text = (self.__str__() if msg is None else msg).strip()
    if text:
      self.fp.write(text + "\n")
      self.fp.flush()
    return True


def bar(iterable=None, *, disable: bool = False, **kwargs) -> tqdm:
  """`tqdm(iterable, **kwargs)` on a terminal; periodic lines otherwise."""
  disable = disable or not enabled
  if not disable and not _is_terminal(kwargs.get("file", sys.stderr)):
    kwargs.setdefault("mininterval", LOG_INTERVAL_S)
    kwargs["leave"] = True  # the last line stays in the log
    kwargs["file"] = _NoBareNewline(kwargs.get("file", sys.stderr))
    # A log line needs the numbers, not the bar's drawing.
    kwargs.setdefault(
      "bar_format",
      "{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, "
      "{rate_fmt}{postfix}]",
    )
    return _Lines(iterable, disable=disable, ascii=True, **kwargs)
  return tqdm(iterable, disable=disable, **kwargs)


def _is_terminal(stream) -> bool:
  try:
    return stream.isatty()
  except (AttributeError, ValueError):
    return False
