"""Entry point: parses flags and hands over to `scenejax.train`.

  python -m scenejax.main --config=configs/demo.py --workdir=/tmp/demo
  python -m scenejax.main --config=configs/demo.py --workdir=/tmp/demo \
      --config.loss.labels=ce --config.num_epochs=2
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from scenejax import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (a get_config() module).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Directory for the prototype, metrics and "
                               "results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
