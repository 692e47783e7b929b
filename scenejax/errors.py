"""Expected failures: input a person can fix.

Every command line prints a `UserError` as one line naming the file, key,
class or config field and what to do, and exits with status 2, without a
traceback (`scenejax.cli.run`). Anything else is a bug and keeps its
traceback.
"""


class UserError(Exception):
  """Bad input or configuration; the message names it and what to do."""


class ConfigError(UserError, ValueError):
  """A config value that cannot work; the message names the field."""


class PrototypeError(UserError, ValueError):
  """Bad prototype input; the message names the file, key or class."""


class DatasetError(UserError, ValueError):
  """Missing or malformed dataset files; the message names the file."""


class CheckpointError(UserError, ValueError):
  """A checkpoint that cannot be read or does not fit the model; the
  message names the file and the keys."""
