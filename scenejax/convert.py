r"""PyTorch weight files -> safetensors, the one place scenejax reads a torch
file.

  # SAS-Net's model zoo (a checkpoint dict with its "state_dict"):
  python -m scenejax.convert --from=SAScene_ResNet18_ADE.pth.tar \
      --to=weights/sasnet_resnet18_ade20k.safetensors
  # a plain state dict (torchvision's .pth files) works the same way

The file is read with `torch.load(weights_only=True)`, PyTorch's restricted
unpickler: it builds tensors, numbers, strings and plain containers and
refuses any other object, so a file cannot run code. Needs torch (only this
command does). The tensors of the state dict - a checkpoint's "state_dict"
entry, or the whole dict - are written as they are named, less a
"module." prefix (nn.DataParallel's); other entries of a checkpoint (epoch,
best_prec1, optimizer) are left out. The output is written to a temporary
file and renamed, so a failure leaves no partial file.
"""

from __future__ import annotations

import os

import numpy as np

from scenejax import fileio
from scenejax.errors import CheckpointError, ConfigError


def read_torch_state_dict(path: str) -> dict[str, np.ndarray]:
  """The tensors of a PyTorch checkpoint's state dict, by name."""
  try:
    import torch
  except ImportError:
    raise ConfigError(
      "python -m scenejax.convert needs PyTorch (pip install torch); "
      "nothing else in scenejax does"
    ) from None
  if not os.path.isfile(path):
    raise CheckpointError(f"--from={path}: no such file")
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # UnpicklingError, zip / EOF errors, ...
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    raise CheckpointError(
      f"{path}: not a PyTorch weights file torch.load(weights_only=True) "
      f"accepts ({type(e).__name__}: {first})"
    ) from e
  state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
  if not isinstance(state, dict) or not state:
    raise CheckpointError(
      f"{path}: holds {type(obj).__name__}, not a state dict (a dict of "
      "tensors, or a checkpoint dict with a 'state_dict' entry)"
    )
  tensors = {}
  for key, value in state.items():
    if not isinstance(value, torch.Tensor):
      raise CheckpointError(
        f"{path}: state-dict entry {key!r} is a {type(value).__name__}, "
        "not a tensor"
      )
    if value.dtype == torch.bfloat16:  # NumPy has no bfloat16
      value = value.float()
    tensors[str(key).removeprefix("module.")] = (
      value.detach().cpu().contiguous().numpy()
    )
  return tensors


def convert(source: str, target: str) -> int:
  """Writes the state dict of `source` to the safetensors file `target`;
  returns the number of tensors."""
  from safetensors.numpy import save

  if not target.endswith(".safetensors"):
    raise ConfigError(f"--to={target}: name a .safetensors file")
  tensors = read_torch_state_dict(source)
  data = save(tensors, metadata={"converted_from": os.path.basename(source)})
  fileio.atomic_write(target, lambda f: f.write(data))
  return len(tensors)


def main(argv: list[str]) -> None:
  from absl import flags

  flag = flags.FLAGS
  if len(argv) > 1:
    raise ConfigError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not flag["from"].value or not flag.to:
    raise ConfigError("give --from=FILE.pth[.tar] and --to=FILE.safetensors")
  count = convert(flag["from"].value, flag.to)
  print(f"wrote {count} tensors to {flag.to}")


if __name__ == "__main__":
  from absl import flags

  from scenejax import cli

  flags.DEFINE_string("from", None, "a PyTorch .pth / .pth.tar weights file")
  flags.DEFINE_string("to", None, "the safetensors file to write")
  cli.run(main)
