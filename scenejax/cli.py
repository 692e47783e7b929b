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


def _resolve_config(argv: list[str]) -> list[str]:
  """`--config=FILE[:ARG]` (or `--config FILE`) with FILE found from any
  directory (`config_lib.resolve_config_file`); config_flags would defer a
  missing file to a traceback at first use."""
  from scenejax import config_lib

  out = list(argv)
  for i, arg in enumerate(out):
    if arg.startswith("--config="):
      spec = arg.split("=", 1)[1]
      out[i] = "--config=" + config_lib.resolve_config_file(spec)
    elif arg == "--config" and i + 1 < len(out):
      out[i + 1] = config_lib.resolve_config_file(out[i + 1])
  return out


def _config_file_error(message: str) -> str | None:
  """config_flags reports a get_config() that raised as the traceback's
  text: keep the file and the exception's last line."""
  if "Error whilst parsing config file" not in message:
    return None
  flag = re.match(r"flag (--config=\S+):", message)
  last = re.findall(r"(\w+(?:Error|Exception)\w*: [^\n]*)", message)
  where = flag[1] if flag else "--config"
  return f"{where}: loading the config failed: " + (
    last[-1] if last else " ".join(message.split())[-300:]
  )


def _parse_flags(argv: list[str]) -> list[str]:
  # absl's own --help exits with status 1; asking for help is not an error.
  if any(arg in _HELP_FLAGS for arg in argv[1:]):
    full = "--helpfull" in argv[1:]
    app.usage(shorthelp=not full, writeto_stdout=True, exitcode=0)
  try:
    if "config" in flags.FLAGS:
      argv = _resolve_config(argv)
    return flags.FLAGS(argv)
  except UserError as e:
    fail(str(e))
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    # A bad flag, or a config override ml_collections refused.
    fail(
      _user_error_in(e)
      or _config_file_error(str(e))
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


_PROGRESS = flags.DEFINE_bool(
  "progress",
  True,
  "progress bars on a terminal, one line every 30 s in a pipe or log file; "
  "--noprogress: neither",
)


def compilation_cache() -> str | None:
  """Turns on JAX's persistent compilation cache for this command, so a
  second run reads its compiled functions instead of compiling them again
  (the first segmentation on a CPU compiles for a minute). The directory:
  $JAX_COMPILATION_CACHE_DIR if set, else $SCENEJAX_COMPILATION_CACHE, else
  $SCENEJAX_CACHE/xla (~/.cache/scenejax/xla); SCENEJAX_COMPILATION_CACHE=off
  turns it off. Returns the directory, or None when off."""
  import jax

  path = os.environ.get("JAX_COMPILATION_CACHE_DIR")
  if path:
    return path
  setting = os.environ.get("SCENEJAX_COMPILATION_CACHE", "")
  if setting.lower() in ("0", "off", "false", "no"):
    return None
  root = os.environ.get("SCENEJAX_CACHE", "~/.cache/scenejax")
  path = os.path.expanduser(setting or os.path.join(root, "xla"))
  jax.config.update("jax_compilation_cache_dir", path)
  # Every compile, the eager initializers' tiny ones too: building a model
  # compiles one per parameter shape, seconds in all (UperNet-ConvNeXt-T's
  # segment run: 11.8 s every time at the default 1 s threshold; 6.0 s on
  # a second run with all cached).
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  return path


class _CompileNotice:
  """Says so when a command compiles for long: on the first run with an
  empty cache, before the first compile; on later runs, after any compile
  that took over `THRESHOLD_S` (a new shape). Listens to JAX's compile
  events; prints at most once per command."""

  THRESHOLD_S = 10.0

  def __init__(self, cache: str | None):
    self.cache, self.said = cache, False
    # A first run: a cache directory that is not there yet, or empty.
    self.fresh = cache is not None and not (
      os.path.isdir(cache) and os.listdir(cache)
    )

  def _say(self, text: str) -> None:
    self.said = True
    print(text, file=sys.stderr, flush=True)

  def __call__(self, event: str, duration: float, **_) -> None:
    if self.said:
      return
    where = (
      f"later runs read the compilation cache in {self.cache}"
      if self.cache
      else "the compilation cache is off (SCENEJAX_COMPILATION_CACHE=off)"
    )
    if (
      self.fresh and event == "/jax/core/compile/jaxpr_to_mlir_module_duration"
    ):
      self._say(f"compiling (the first run takes longer; {where})")
    elif (
      event == "/jax/core/compile/backend_compile_duration"
      and duration >= self.THRESHOLD_S
    ):
      self._say(f"compiled a new shape for {duration:.0f} s; {where}")


def run(main: Callable[[list[str]], int | None]) -> None:
  """`absl.app.run(main)` with quiet logging and one-line user errors."""
  # TensorFlow's C++ logging (TFDS, the TFLite converter): errors only.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

  def wrapped(argv):
    import jax

    from scenejax import progress

    progress.enabled = _PROGRESS.value
    notice = _CompileNotice(compilation_cache())
    jax.monitoring.register_event_duration_secs_listener(notice)
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
      logging.get_absl_handler().addFilter(_without_library_tracebacks)
    try:
      return main(argv)
    except UserError as e:
      fail(str(e))

  app.run(wrapped, flags_parser=_parse_flags)
