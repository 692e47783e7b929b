r"""Entry point: parses flags and hands over to `scenejax.training.loop`.

  python -m scenejax.main --config=configs/sun397_vit.py
  python -m scenejax.main --config=configs/demo.py:ce --workdir=/tmp/demo \
      --config.num_epochs=2

--workdir defaults to workdirs/<config name>[_<variant>] (printed at start).
A run started on a workdir with checkpoints resumes.

Multi-host: run the same command on every host. On SLURM and Cloud TPU,
`jax.distributed.initialize()` finds the coordinator itself (pass
--distributed); elsewhere give --coordinator_address, --num_processes and
--process_id.
"""

import sys

import jax
from absl import flags
from ml_collections import config_flags

from scenejax import cli, config_lib
from scenejax.training import loop

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "Experiment config file (a get_config() module), optionally with :VARIANT.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
  "workdir",
  None,
  "Directory for checkpoints, the prototype, metrics and "
  "results (default: workdirs/<config name>).",
)
_DISTRIBUTED = flags.DEFINE_bool(
  "distributed",
  False,
  "Call jax.distributed.initialize() (auto-detects "
  "SLURM / Cloud TPU, or uses the three flags below).",
)
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address", None, "host:port of process 0"
)
_NUM_PROCESSES = flags.DEFINE_integer(
  "num_processes", None, "number of processes"
)
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's id")
flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}")
  workdir = _WORKDIR.value
  if not workdir:
    path, _, arg = config_flags.get_config_filename(
      flags.FLAGS["config"]
    ).partition(":")
    workdir = config_lib.workdir_name(path, arg)
    print(f"workdir: {workdir}", flush=True)
  if _DISTRIBUTED.value or _COORDINATOR.value:
    jax.distributed.initialize(
      coordinator_address=_COORDINATOR.value,
      num_processes=_NUM_PROCESSES.value,
      process_id=_PROCESS_ID.value,
    )
  result = loop.train_and_evaluate(_CONFIG.value, workdir)
  if result.get("preempted"):
    sys.exit(cli.EXIT_PREEMPTED)  # saved and resumable, not finished


if __name__ == "__main__":
  cli.run(main)
