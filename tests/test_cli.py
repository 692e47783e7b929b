"""What every command shares: `--help`, the `scenejax` command, `--config`
from any directory, and one-line errors that name the thing and the fix."""

import re
import subprocess
import sys
import types

from conftest import REPO, assert_user_error

COMMANDS = (
  "main",
  "evaluate",
  "export",
  "segment",
  "report",
  "reproduce",
  "prototype",
  "datasets",
  "convert",
)


def _run_all(commands: dict, cwd) -> dict:
  """Runs the `python ARGS` command lines at once, each a fresh process:
  name -> (returncode, stdout, stderr)."""
  procs = {
    name: subprocess.Popen(
      [sys.executable, *argv],
      cwd=cwd,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for name, argv in commands.items()
  }
  done = {}
  for name, proc in procs.items():
    out, err = proc.communicate(timeout=300)
    done[name] = types.SimpleNamespace(
      returncode=proc.returncode, stdout=out, stderr=err
    )
  return done


def test_help_exits_0_with_the_commands_own_flags_and_an_example():
  """`--help` on every command: status 0, its docstring's example with its
  line continuations, and its own flags (not absl's or another module's)."""
  done = _run_all(
    {name: ["-m", f"scenejax.{name}", "--help"] for name in COMMANDS}, REPO
  )
  for name, proc in done.items():
    out = proc.stdout
    assert proc.returncode == 0, (name, proc.stderr[-2000:])
    assert f"python -m scenejax.{name}" in out, (name, out[:500])
    assert "  --" in out, (name, "no flags listed")
    assert "absl.logging" not in out and "--flagfile" not in out, name
    # An example that continues on the next line keeps its backslash.
    assert not re.search(r"\S {4,}--\w", out.split("flags:")[0]), (name, out)


def test_scenejax_command_and_errors_from_any_directory(tmp_path):
  bad_config = tmp_path / "bad_config.py"
  bad_config.write_text(
    "def get_config(arg=None):\n  raise ValueError('boom')\n"
  )
  main = ["-m", "scenejax.main", f"--workdir={tmp_path / 'w'}"]
  done = _run_all(
    {
      "help": ["-m", "scenejax", "--help"],
      "sub_help": ["-m", "scenejax", "evaluate", "--help"],
      "unknown": ["-m", "scenejax", "evalute"],
      # From tmp_path: configs/demo.py is found in the checkout's configs/,
      # so the misspelt field is what fails.
      "field": [*main, "--config=configs/demo.py", "--config.num_epoch=2"],
      "by_name": [*main, "--config=demo:bogus"],
      "missing": [*main, "--config=no_such_recipe.py"],
      "raises": [*main, f"--config={bad_config}"],
      "workdir": ["-m", "scenejax.evaluate", f"--workdir={tmp_path / 'typo'}"],
      "label_format": [
        "-m",
        "scenejax.prototype",
        "build",
        f"--label_maps={tmp_path}",
        f"--list={bad_config}",
        f"--out={tmp_path / 'p.npz'}",
      ],
    },
    cwd=tmp_path,
  )
  assert done["help"].returncode == 0, done["help"].stderr
  for command in ("train", "evaluate", "predict", "segment", "prototype"):
    assert f"  {command}" in done["help"].stdout
  assert done["sub_help"].returncode == 0
  assert "--workdir" in done["sub_help"].stdout
  assert_user_error(done["unknown"], "did you mean evaluate?")
  assert_user_error(done["field"], "did you mean config.num_epochs?")
  assert_user_error(done["by_name"], "'bogus'", "sasnet_rgb", "semantic_files")
  assert_user_error(done["missing"], "no_such_recipe.py", str(REPO / "configs"))
  assert_user_error(done["raises"], "bad_config.py", "ValueError: boom")
  assert_user_error(done["workdir"], "typo does not exist")
  assert_user_error(
    done["label_format"], "--label_format", "ade20k, zero_based"
  )
  assert not (tmp_path / "w").exists() and not (tmp_path / "p.npz").exists()


def test_progress_in_a_pipe_is_plain_lines():
  """Into a file or pipe: whole lines (no carriage-return redraws), the
  postfix shown with the next line rather than a line of its own; with
  --noprogress (`progress.enabled = False`): nothing."""
  import io

  from scenejax import progress

  log = io.StringIO()
  bar = progress.bar(range(100), desc="epoch 1/2", unit="step", file=log)
  for _ in bar:
    bar.set_postfix(loss="0.5")
  text = log.getvalue()
  assert "\r" not in text
  lines = text.splitlines()
  assert lines[0].startswith("epoch 1/2: 0/100 step")
  assert lines[-1].startswith("epoch 1/2: 100/100 step") and "loss=0.5" in text
  assert len(lines) <= 3  # start, end (and the close's repeat)
  progress.enabled = False
  try:
    quiet = io.StringIO()
    for _ in progress.bar(range(10), desc="x", file=quiet):
      pass
    assert quiet.getvalue() == ""
  finally:
    progress.enabled = True
