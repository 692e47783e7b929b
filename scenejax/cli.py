"""What every `python -m scenejax.*` command shares: absl flags, quiet
logging, and expected failures as one line with exit status 2.

  def main(argv): ...
  if __name__ == "__main__":
    cli.run(main)

- Logging is at WARNING by default, so a user sees the progress bar, the
  epoch table and the warnings that matter, not orbax's and absl's INFO
  lines; `--verbosity=0` (INFO) or `--verbosity=1` (DEBUG) brings them back.
- A `scenejax.errors.UserError` (bad input or config: the message names the
  file, key, class or field and what to do) and a bad flag are printed as
  `error: ...` on one line, without a traceback, and the command exits 2.
  Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable

from absl import app, flags, logging

from scenejax.errors import UserError

EXIT_USER_ERROR = 2
# A preempted run (SIGTERM) saved its state and stopped early: not a
# success. 75 is sysexits.h's EX_TEMPFAIL, "try again later"; schedulers
# can requeue on it (SLURM: --requeue with a job script that checks it).
EXIT_PREEMPTED = 75


def fail(message: str) -> None:
  """Prints `error: message` on one line and exits with status 2."""
  text = " ".join(str(message).split())
  print(f"error: {text}", file=sys.stderr, flush=True)
  sys.exit(EXIT_USER_ERROR)


def _user_error_in(error: BaseException) -> str | None:
  """The message of a UserError behind `error`. config_flags re-raises a
  get_config() failure with the traceback as its text: keep its last line."""
  seen, message = error, None
  while seen is not None and message is None:
    if isinstance(seen, UserError):
      message = str(seen)
    seen = seen.__cause__ or seen.__context__
  found = re.findall(r"scenejax\.errors\.\w+: (.*)", message or str(error))
  return found[-1] if found else message


def _config_override_error(argv: list[str]) -> str | None:
  """For a `--config.a.b=v` naming no field of `config_lib.base()`: the
  field's full name, if it lives elsewhere ("did you mean ...")."""
  from scenejax import config_lib

  for arg in argv:
    match = re.match(r"--config\.([\w.]+)=", arg)
    if match:
      message = config_lib.unknown_field_message("config." + match[1])
      if message:
        return f"--config.{match[1]}: {message}"
  return None


_HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull")


def _parse_flags(argv: list[str]) -> list[str]:
  # absl's own --help exits with status 1; asking for help is not an error.
  if any(arg in _HELP_FLAGS for arg in argv[1:]):
    full = "--helpfull" in argv[1:]
    app.usage(shorthelp=not full, writeto_stdout=True, exitcode=0)
  try:
    return flags.FLAGS(argv)
  except UserError as e:
    fail(str(e))
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    # A bad flag, or a config override ml_collections refused.
    fail(
      _user_error_in(e)
      or _config_override_error(argv)
      or " ".join(str(e).split())
    )


def _without_library_tracebacks(record) -> bool:
  """Orbax logs each failing writer thread with its traceback; the failure
  reaches the user once, as a scenejax error. Keeps the one-line record
  (tested against orbax 0.12.8, pinned in setup.py)."""
  if "/orbax/" in record.pathname:
    record.exc_info, record.exc_text = None, None
    # A mid-epoch (preemption) save has no Top-1 to record; that is fine.
    if "did not provide metrics" in record.getMessage():
      return False
  return True


def run(main: Callable[[list[str]], int | None]) -> None:
  """`absl.app.run(main)` with quiet logging and one-line user errors."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TFDS's TensorFlow

  def wrapped(argv):
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
      logging.get_absl_handler().addFilter(_without_library_tracebacks)
    try:
      return main(argv)
    except UserError as e:
      fail(str(e))

  app.run(wrapped, flags_parser=_parse_flags)
