"""Pretrained weights: read checkpoint files and load them strictly.

Formats (never a pickle):
  * big_vision / vit_jax `.npz` (ViT), read with `np.load(allow_pickle=False)`;
  * Hugging Face `config.json` + `model.safetensors` (or a sharded
    `model.safetensors.index.json`), read with safetensors' NumPy API, so
    torch is not needed.

Each model family translates checkpoint keys to its own parameter paths
("stages/0/layers/1/conv1/kernel"); `assign` then loads them all or nothing.
The classifier head is the one part allowed to differ: a head of another
class count, or none (feature-extractor checkpoints), leaves the model's
freshly initialised head in place.

Paths may be local, `http(s)://` (downloaded once into `$SCENEJAX_CACHE`,
default `~/.cache/scenejax`) or `gs://` (through etils.epath, which needs
a GCS backend such as gcsfs installed).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import urllib.request
import zipfile

import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from scenejax import fileio
from scenejax.errors import CheckpointError

HEAD_PREFIX = "head/"


def local_path(path: str) -> str:
  """Returns a local file or directory for `path`, fetching remote ones.

  A remote file is downloaded to the cache under a name derived from its
  URL, to a temporary file first and renamed when complete, so an
  interrupted download never looks like a checkpoint.
  """
  path = os.fspath(path)
  if "://" not in path:
    if not os.path.exists(path):
      raise CheckpointError(f"checkpoint {path!r} does not exist")
    return path
  cache = os.environ.get(
    "SCENEJAX_CACHE", os.path.expanduser("~/.cache/scenejax")
  )
  os.makedirs(cache, exist_ok=True)
  digest = hashlib.sha256(path.encode()).hexdigest()[:16]
  target = os.path.join(cache, f"{digest}-{os.path.basename(path)}")
  if os.path.exists(target):
    return target

  def fetch(out):
    if path.startswith(("http://", "https://")):
      with urllib.request.urlopen(path) as response:
        shutil.copyfileobj(response, out)
    else:
      from etils import epath  # Comes with orbax; gs:// needs gcsfs.

      with epath.Path(path).open("rb") as src:
        shutil.copyfileobj(src, out)

  try:
    fileio.atomic_write(target, fetch)
  except Exception as e:
    raise CheckpointError(f"could not fetch checkpoint {path!r}: {e}") from e
  return target


def read_npz(path: str) -> dict[str, np.ndarray]:
  """All arrays of an `.npz` file, keyed by name, refusing pickled objects."""
  if not zipfile.is_zipfile(path):
    raise CheckpointError(f"{path}: not an .npz file (not a zip archive)")
  try:
    with np.load(path, allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  except ValueError as e:
    raise CheckpointError(f"{path}: {e}") from e


def _hf_dir(path: str) -> str:
  return path if os.path.isdir(path) else os.path.dirname(path)


def read_hf_config(path: str) -> dict:
  """The config.json of a Hugging Face checkpoint (directory or weights)."""
  config_file = os.path.join(_hf_dir(path), "config.json")
  if not os.path.exists(config_file):
    raise CheckpointError(
      f"{path}: no config.json beside the weights (looked for "
      f"{config_file}); a Hugging Face checkpoint needs both"
    )
  try:
    with open(config_file) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise CheckpointError(f"{config_file}: not valid JSON: {e}") from e


def hf_published_by(path: str, config: dict, organisation: str) -> bool:
  """Whether a Hugging Face checkpoint came from `organisation`'s hub
  repository (e.g. "nvidia"): its config.json's `_name_or_path`, its
  path (the hub cache names `models--ORG--NAME`) or its model card say so.
  A checkpoint you trained or saved yourself says none of these. Licences
  follow where the weights came from, not the architecture."""
  org = organisation.lower()
  directory = _hf_dir(path)
  signals = [
    str(config.get("_name_or_path", "")),
    os.path.abspath(directory).replace("models--", "").replace("--", "/"),
  ]
  card = os.path.join(directory, "README.md")
  if os.path.isfile(card):
    with open(card, errors="replace") as f:
      signals.append(f.read(4096))
  return any(f"{org}/" in s.lower() for s in signals)


def hf_preprocessor(path: str) -> dict:
  """preprocessor_config.json beside a Hugging Face checkpoint ({} if
  there is none)."""
  file = os.path.join(_hf_dir(path), "preprocessor_config.json")
  if not os.path.exists(file):
    return {}
  try:
    with open(file) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise CheckpointError(f"{file}: not valid JSON: {e}") from e


def hf_pixel_stats(path: str, default) -> tuple[tuple, tuple]:
  """(mean, std) from preprocessor_config.json if it states them, else
  `default`."""
  pre = hf_preprocessor(path)
  if "image_mean" not in pre and "image_std" not in pre:
    # No file, or e.g. MobileViT's processor: rescales to [0, 1] only.
    return tuple(default[0]), tuple(default[1])
  try:
    return tuple(map(float, pre["image_mean"])), tuple(
      map(float, pre["image_std"])
    )
  except (KeyError, TypeError, ValueError) as e:
    raise CheckpointError(
      f"{path}: preprocessor_config.json has no usable image_mean/image_std: "
      f"{e}"
    ) from e


def require_model_type(config: dict, path: str, model_type: str, what: str):
  """Refuses a checkpoint whose config.json names another `model_type`
  (e.g. a ConvNeXt classifier given to a segmenter), naming what it is."""
  if config.get("model_type") != model_type:
    raise CheckpointError(
      f"{path} is a {config.get('model_type')!r} checkpoint (config.json "
      f"model_type, architectures {config.get('architectures')}), not {what} "
      f"({model_type!r})"
    )


def check_hf_config(
  config: dict, source: str, model_type: str, expected: dict
) -> None:
  """Refuses a checkpoint of another architecture, naming the fields."""
  if config.get("model_type") != model_type:
    raise CheckpointError(
      f"{source} is a {config.get('model_type')!r} checkpoint "
      f"(config.json model_type), not {model_type!r}"
    )
  wrong = [
    f"{k}={config.get(k)!r} (model has {v!r})"
    for k, v in expected.items()
    if config.get(k) != v
  ]
  if wrong:
    raise CheckpointError(
      f"{source}: architecture does not match the model: " + ", ".join(wrong)
    )


def read_hf(path: str) -> tuple[dict, dict[str, np.ndarray], str]:
  """(config.json, tensors, weights file) of a Hugging Face checkpoint.

  `path` is the model directory or its `model.safetensors`; a sharded
  checkpoint's shards are read through `model.safetensors.index.json`.
  """
  config = read_hf_config(path)
  if os.path.isdir(path):
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
      try:
        with open(index) as f:
          shards = sorted(set(json.load(f)["weight_map"].values()))
      except (json.JSONDecodeError, KeyError, AttributeError) as e:
        raise CheckpointError(f"{index}: no readable weight_map: {e}") from e
      files = [os.path.join(path, s) for s in shards]
    else:
      files = [os.path.join(path, "model.safetensors")]
  else:
    files = [path]
  tensors = {}
  for file in files:
    tensors.update(read_safetensors(file))
  return config, tensors, files[0]


def read_safetensors(file: str) -> dict[str, np.ndarray]:
  """The tensors of one safetensors file (never a pickle)."""
  from safetensors import SafetensorError
  from safetensors.numpy import load_file

  if not os.path.exists(file):
    raise CheckpointError(
      f"{file} does not exist (only .safetensors weights are read; "
      "PyTorch .bin/.pth files are pickles and are refused: convert one "
      "with python -m scenejax.convert)"
    )
  try:
    return load_file(file)
  except (SafetensorError, OSError, ValueError) as e:
    raise CheckpointError(
      f"{file}: not a readable safetensors file: {e}"
    ) from e


def is_hf(path: str) -> bool:
  return os.path.isdir(path) or path.endswith(".safetensors")


def flat_params(model: nnx.Module) -> dict[str, nnx.Variable]:
  """The model's parameters and batch statistics by "a/b/0/c" path."""
  state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
  return {
    "/".join(map(str, path)): var for path, var in nnx.to_flat_state(state)
  }


def assign(
  model: nnx.Module, params: dict[str, np.ndarray], *, source: str
) -> None:
  """Loads `params` (model paths -> arrays) into `model`, all or nothing.

  Every parameter and batch statistic of the model must be provided with
  its exact shape, and every provided array must be used, except the
  classifier head ("head/...", or the model's `head_prefixes`, e.g. a
  segmenter's two classifiers): absent or of another class count, the
  model keeps its own initialisation (re-initialised for fine-tuning).

  Raises:
    CheckpointError: listing missing keys, unexpected keys, shape
      mismatches and non-float tensors, naming `source`; the model is then
      left untouched.
  """
  target = flat_params(model)
  heads = tuple(getattr(model, "head_prefixes", (HEAD_PREFIX,)))
  head_fits = all(
    k in params and params[k].shape == target[k].get_value().shape
    for k in target
    if k.startswith(heads)
  )
  has_head = any(k.startswith(heads) for k in target)
  if not head_fits or not has_head:  # a backbone takes no head
    params = {k: v for k, v in params.items() if not k.startswith(heads)}
  missing = sorted(
    k for k in target if k not in params and not k.startswith(heads)
  )
  unexpected = sorted(k for k in params if k not in target)
  mismatched = sorted(
    f"{k}: checkpoint {tuple(params[k].shape)} vs model "
    f"{tuple(target[k].get_value().shape)}"
    for k in params
    if k in target and params[k].shape != target[k].get_value().shape
  )
  # Casting an integer or boolean tensor to float would load it silently
  # as a "weight" (a wrong file, or a mis-mapped counter such as torch's
  # num_batches_tracked).
  not_float = sorted(
    f"{k}: {np.asarray(params[k]).dtype}"
    for k in params
    if k in target
    and not jnp.issubdtype(np.asarray(params[k]).dtype, jnp.floating)
  )
  if missing or unexpected or mismatched or not_float:
    problems = []
    for what, keys in (
      ("missing keys", missing),
      ("unexpected keys", unexpected),
      ("shape mismatches", mismatched),
      ("non-floating-point tensors (a weight must be float)", not_float),
    ):
      if keys:
        shown = ", ".join(keys[:20]) + (" ..." if len(keys) > 20 else "")
        problems.append(f"{len(keys)} {what}: {shown}")
    raise CheckpointError(
      f"{source} does not fit {type(model).__name__}: " + "; ".join(problems)
    )
  updates = {}
  for k, var in target.items():
    if k in params:
      value = np.asarray(params[k]).astype(var.get_value().dtype)
      updates[tuple(_path_part(p) for p in k.split("/"))] = var.replace(value)
  nnx.update(model, nnx.from_flat_state(updates))
  if not head_fits:
    logging.info(
      "%s: classifier head left at its initialisation "
      "(absent from the checkpoint or another class count)",
      source,
    )


def _path_part(part: str):
  return int(part) if part.isdigit() else part


def torch_to_flax(
  tensors: dict[str, np.ndarray], renames, *, ignore=()
) -> dict[str, np.ndarray]:
  """PyTorch state-dict names and layouts -> our "a/b/kernel" paths.

  The module path (before the last dot) goes through the regex
  substitutions `renames` in order; the leaf maps by PyTorch convention:
  conv weight (O, I, H, W) -> kernel (H, W, I, O); linear weight (out, in)
  -> kernel (in, out); 1-D weight -> scale (BatchNorm, LayerNorm);
  running_mean/var -> mean/var. Keys matching a regex in `ignore` are
  dropped (e.g. `num_batches_tracked`); keys no rename recognises pass
  through under their own names, so `assign` reports them as unexpected.
  """
  out = {}
  for key, value in tensors.items():
    if any(re.search(p, key) for p in ignore):
      continue
    module, _, leaf = key.rpartition(".")
    for pattern, replacement in renames:
      module = re.sub(pattern, replacement, module)
    if leaf == "weight" and value.ndim == 4:
      leaf, value = "kernel", np.transpose(value, (2, 3, 1, 0))
    elif leaf == "weight" and value.ndim == 2:
      leaf, value = "kernel", np.transpose(value)
    elif leaf == "weight" and value.ndim == 1:
      leaf = "scale"
    else:
      leaf = {"running_mean": "mean", "running_var": "var"}.get(leaf, leaf)
    out[module.replace(".", "/") + "/" + leaf] = value
  return out


def to_multihead(params: dict, heads: int) -> dict[str, np.ndarray]:
  """Attention projections in Linear layout (under ".../attention/") ->
  `nnx.MultiHeadAttention`'s: query/key/value kernels (D, D) ->
  (D, heads, D / heads), their biases (D,) -> (heads, D / heads), the out
  kernel (D, D) -> (heads, D / heads, D)."""
  out = dict(params)
  for key, value in params.items():
    if re.search(r"/attention/(query|key|value)/", key):
      out[key] = value.reshape(value.shape[:-1] + (heads, -1))
    elif re.search(r"/attention/out/kernel$", key):
      out[key] = value.reshape(heads, -1, value.shape[-1])
  return out


def split_qkv(tensors, fused: str) -> dict[str, np.ndarray]:
  """Splits fused attention projections (timm's `attn.qkv`, rows stacked
  q, k, v) into three tensors: the key part matching the regex `fused`
  becomes `.query.`, `.key.`, `.value.`."""
  out = {}
  for key, value in tensors.items():
    match = re.search(fused, key)
    if match is None:
      out[key] = value
      continue
    if value.shape[0] % 3:
      raise CheckpointError(
        f"fused attention tensor {key!r} has {value.shape[0]} rows, not a "
        "multiple of 3 (query, key, value)"
      )
    for name, part in zip(("query", "key", "value"), np.split(value, 3)):
      out[key[: match.start()] + f".{name}." + key[match.end() :]] = part
  return out


_PICKLES = (".pth", ".pth.tar", ".pt", ".bin", ".ckpt", ".pkl")


def refuse_pickle(path: str) -> None:
  """PyTorch pickles are never read: the error gives the conversion."""
  if path.endswith(_PICKLES):
    raise CheckpointError(
      f"{path} is a PyTorch pickle, which scenejax never reads; convert it "
      "with python -m scenejax.convert --from=FILE --to=FILE.safetensors"
    )


def hf_config_or_none(path: str) -> dict | None:
  """The config.json beside a checkpoint if it is a Hugging Face
  transformers one (it has `model_type`); None for a bare safetensors file
  or a timm hub directory (whose config.json names an `architecture`)."""
  refuse_pickle(path)
  if not os.path.exists(os.path.join(_hf_dir(path), "config.json")):
    return None
  config = read_hf_config(path)
  return config if "model_type" in config else None


def weights_file(path: str) -> str:
  """The safetensors file of a bare-file or timm-hub-directory path."""
  return (
    os.path.join(path, "model.safetensors") if os.path.isdir(path) else path
  )


def read_weights(path: str) -> tuple[dict | None, dict[str, np.ndarray], str]:
  """(transformers config or None, tensors, source) of a safetensors
  checkpoint: a transformers model directory, a timm hub directory, or a
  bare `.safetensors` file (e.g. torchvision weights converted with
  `python -m scenejax.convert`)."""
  config = hf_config_or_none(path)
  if config is not None:
    return read_hf(path)
  file = weights_file(path)
  return None, read_safetensors(file), file


def read_torch_layout(path: str, what: str) -> tuple[dict, str]:
  """(tensors, source) of a timm / torchvision-layout checkpoint of the
  family `what`; a transformers checkpoint is refused, naming its type."""
  config, tensors, source = read_weights(path)
  if config is not None:
    raise CheckpointError(
      f"{path} is a transformers {config.get('model_type')!r} checkpoint; "
      f"{what} loads timm's or torchvision's layout (a timm hub directory "
      "or a .safetensors file)"
    )
  return tensors, source


def torch_layout_options(path: str) -> dict:
  """`checkpoint_options` of families whose files set no constructor
  option (VGG, DenseNet, ShuffleNetV2): none, pickles refused early."""
  refuse_pickle(path)
  return {}
