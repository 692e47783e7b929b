"""`scenejax COMMAND ...`: every command of scenejax under one name.

  scenejax train --config=demo.py --workdir=/tmp/scenejax_demo
  scenejax evaluate --workdir=/tmp/scenejax_demo
  scenejax export --workdir=/tmp/scenejax_demo --out=/tmp/scenejax_export
  scenejax predict /tmp/scenejax_export photos/
  scenejax COMMAND --help

Each command is the module `python -m scenejax.X` runs, with the same flags
(`train` is `scenejax.main`; `predict EXPORT ...` is `scenejax.export
--predict=EXPORT ...`). `pip install` puts `scenejax` on the PATH; `python
-m scenejax` is the same.
"""

from __future__ import annotations

import difflib
import runpy
import sys

COMMANDS = {
  "train": ("scenejax.main", "train and evaluate a config"),
  "evaluate": ("scenejax.evaluate", "evaluate a workdir's best checkpoint"),
  "export": ("scenejax.export", "export the inference model of a workdir"),
  "predict": ("scenejax.export", "classify images with an export"),
  "segment": ("scenejax.segment", "label maps and mIoU from a segmenter"),
  "prototype": ("scenejax.prototype", "build, fetch, import, show prototypes"),
  "report": ("scenejax.report", "figures of a workdir or a prototype"),
  "reproduce": ("scenejax.reproduce", "the papers' tables as grids of runs"),
  "datasets": ("scenejax.datasets", "prepare a dataset once"),
  "convert": ("scenejax.convert", "PyTorch weights to safetensors"),
}


def usage() -> str:
  width = max(map(len, COMMANDS))
  lines = [__doc__.strip(), "", "commands:"]
  lines += [f"  {c:<{width}}  {what}" for c, (_, what) in COMMANDS.items()]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
  argv = sys.argv[1:] if argv is None else list(argv)
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(usage())
    sys.exit(0 if argv else 2)
  command, rest = argv[0], argv[1:]
  if command not in COMMANDS:
    near = difflib.get_close_matches(command, list(COMMANDS), n=1)
    hint = f"did you mean {near[0]}? " if near else ""
    print(
      f"error: unknown command {command!r}; {hint}"
      f"commands: {', '.join(COMMANDS)} (scenejax --help)",
      file=sys.stderr,
    )
    sys.exit(2)
  if command == "predict" and rest and not rest[0].startswith("-"):
    rest = [f"--predict={rest[0]}", *rest[1:]]
  module = COMMANDS[command][0]
  sys.argv = [f"scenejax {command}", *rest]
  runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
  main()
