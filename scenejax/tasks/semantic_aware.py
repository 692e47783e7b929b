"""SAS-Net in the trainer: scene classification whose model also reads a
segmenter's scores (config.model = sasnet_*; the model is
`scenejax.models.sasnet`).

The semantic input is made on the fly or read from files:

  on the fly   a frozen segmenter (config.sasnet.segmenter, weights
               config.sasnet.segmenter_init_from: a Hugging Face checkpoint
               or a scenejax segmentation workdir) runs inside the same
               jitted step on the augmented batch; its top-3 softmax
               scores, quantised to round(255 p) / 255 as SAS-Net's score
               PNGs store them, become the 152-channel tensor of
               `sasnet.semantic_tensor`. No gradient reaches the
               segmenter; its parameters are an input of the step, not
               constants.
  from files   config.sasnet.semantic_dir: SAS-Net's top-3 id and score
               PNGs of every record, as `python -m scenejax.segment
               --dataset=D --split=train|test --top3 --out=DIR` writes
               them (`SemanticFiles`); the input pipeline gives them the
               image's crops and flips. The segmenter then ran on the whole
               image before augmentation, as in SAS-Net's own pipeline; on
               the synthetic scenes, which are not augmented, the two
               inputs are the same numbers (tested).

The rgb stage reads neither.

Training stages (config.sasnet.stage). SAS-Net's authors released
evaluation code only; the paper trains "in stages" and the configs give
the hyper-parameters. Reconstructed:

  rgb        the RGB branch and its head (CE on `rgb_logits`); no segmenter
             is run;
  semantic   the semantic branch and its head, from scratch (CE on
             `semantic_logits`); no image branch is run;
  attention  the attention module and the combined head on the two trained
             branches (CE on `logits`), branches frozen and their BatchNorm
             in inference mode (running statistics);
  all        everything at once from scratch: CE on `logits` + on
             `rgb_logits` + on `semantic_logits` (the demo's one-run
             recipe; not the paper's).

`config_lib.sasnet_stage(config, stage)` sets the stage and the optimizer's
parameter groups that go with it (what does not train is "frozen"); each
stage starts from the previous stage's workdir (`config.init_from`). The
losses are the classification ones (`classification.loss_terms`), so GLS and BCL
apply to SAS-Net as to any backbone. Evaluation scores the stage's head
(Top-1/2/5, MCA, ten-crop as configured).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from scenejax import datasets, input_pipeline, models, segment
from scenejax.datasets import common
from scenejax.errors import ConfigError, DatasetError, UserError
from scenejax.input_pipeline import SEMANTIC_KEYS
from scenejax.models import pretrained, sasnet
from scenejax.tasks import base, classification
from scenejax.tasks.classification import TOP_K
from scenejax.training import checkpoints

STAGES = ("rgb", "semantic", "attention", "all")
# The head each stage trains and is evaluated by.
STAGE_LOGITS = {
  "rgb": "rgb_logits",
  "semantic": "semantic_logits",
  "attention": "logits",
  "all": "logits",
}


def config_sections() -> dict[str, ml_collections.ConfigDict]:
  """config.sasnet and its defaults."""
  sections = ml_collections.ConfigDict()
  # config.model = sasnet_* (this module): the training stage
  # (set it with `sasnet_stage`, which also sets the parameter groups) and
  # the semantic input: a frozen segmenter's top-3 scores, made on the fly
  # or read from the files `scenejax.segment --top3` wrote.
  sections.sasnet = ml_collections.ConfigDict(
    dict(
      stage="all",  # rgb | semantic | attention | all
      segmenter="",  # scenejax.models.SEGMENTERS (not needed by rgb)
      segmenter_init_from="",  # its Hugging Face checkpoint or workdir
      semantic_dir="",  # or: the segment command's --top3 --out directory
    )
  )
  return {k: sections[k] for k in ("sasnet",)}


def build_model(config, num_classes: int) -> nnx.Module:
  """SAS-Net `config.model`, as `classification.build_model` builds any
  classifier, except that `config.init_from` may be the workdir of the
  previous stage of the staged training (its best checkpoint; the heads
  kept if the class count matches)."""
  if config.init_from and checkpoints.is_training_workdir(config.init_from):
    fresh = config.copy_and_resolve_references()
    fresh.init_from = ""
    model = classification.build_model(fresh, num_classes)
    _load_workdir(model, config.init_from)
    return model
  return classification.build_model(config, num_classes)


def _load_workdir(model: sasnet.SASNet, workdir: str) -> None:
  config = checkpoints.read_workdir_config(workdir)
  name = f"sasnet_{model.depth}"
  if config.model != name:
    raise pretrained.CheckpointError(
      f"init_from={workdir} is a training run of {config.model!r}, not of "
      f"{name} (a SAS-Net stage continues a run of the same model)"
    )
  _, graphdef, state, step = checkpoints.restore_workdir(workdir)
  trained = nnx.merge(graphdef, state)[0]
  params = {
    k: np.asarray(v.get_value())
    for k, v in pretrained.flat_params(trained).items()
  }
  pretrained.assign(model, params, source=f"{workdir} (step {step})")


def semantic_input(segmenter, images) -> jax.Array:
  """(B, H, W, 3) uint8 images -> SAS-Net's (B, H, W, 152) score tensor from
  the segmenter's top-3 classes, scores quantised as the PNG files store
  them (round(255 p) / 255); no gradient."""
  x = input_pipeline.normalize(
    images, segmenter.pixel_mean, segmenter.pixel_std
  )
  probs = jax.nn.softmax(segmenter(x).astype(jnp.float32))
  scores, ids = jax.lax.top_k(probs, 3)
  scores = jnp.round(scores * 255.0) / 255.0
  return jax.lax.stop_gradient(sasnet.semantic_tensor(ids, scores))


def stage_outputs(model, images, semantic, stage: str) -> dict:
  """The logits a stage needs, running only the branches it uses."""
  if stage == "rgb":
    return {"rgb_logits": model.rgb_logits(images)}
  if stage == "semantic":
    return {"semantic_logits": model.semantic_logits(semantic)}
  # The attention stage's branches are frozen: no backward pass through them.
  return model(images, semantic, branch_gradients=stage != "attention")


def _inputs(graphdef, segmenter_state, batch, stage, mean, std):
  """(normalised images, semantic tensor or None) of a batch: the tensor
  from the batch's top-3 files if it has them, else from the segmenter."""
  images = input_pipeline.normalize(batch["image"], mean, std)
  if stage == "rgb":
    return images, None
  if "semantic_ids" in batch:
    semantic = sasnet.semantic_tensor(
      batch["semantic_ids"].astype(jnp.int32),
      batch["semantic_scores"].astype(jnp.float32) / 255.0,
    )
    return images, semantic
  segmenter = nnx.merge(graphdef, segmenter_state)
  return images, semantic_input(segmenter, batch["image"])


def train_step(
  graphdef,
  segmenter_graphdef,
  state,
  batch,
  epoch,
  aux,
  *,
  stage,
  loss_cfg,
  mean,
  std,
):
  """One optimizer step of `stage`; aux = (prototype S, segmenter state)."""
  similarity, segmenter_state = aux
  model, optimizer = nnx.merge(graphdef, state)
  if stage == "attention":  # frozen branches: BatchNorm running statistics
    model.rgb.eval()
    model.semantic.eval()
  images, semantic = _inputs(
    segmenter_graphdef, segmenter_state, batch, stage, mean, std
  )
  labels = batch["label"]

  def loss_fn(model):
    outputs = stage_outputs(model, images, semantic, stage)
    logits = outputs[STAGE_LOGITS[stage]].astype(jnp.float32)
    terms = classification.loss_terms(
      logits, labels, similarity, epoch, loss_cfg
    )
    if stage == "all":  # the branch heads too (deep supervision)
      for head in ("rgb", "semantic"):
        branch = outputs[f"{head}_logits"].astype(jnp.float32)
        for key, value in classification.loss_terms(
          branch, labels, similarity, epoch, loss_cfg
        ).items():
          terms[f"{head}_{key}"] = value
    return sum(terms.values()), (terms, logits)

  return base.update(model, optimizer, loss_fn, labels)


def eval_step(
  graphdef,
  segmenter_graphdef,
  state,
  segmenter_state,
  batch,
  *,
  stage,
  mean,
  std,
) -> dict:
  """The stage's head's top-5 classes ({"top", "label", "mask"}, as
  `classification.eval_step`); a ten-crop batch averages the softmax of its
  crops."""
  model = nnx.merge(graphdef, state)[0]
  model.eval()
  crops = batch["image"].ndim == 5
  inputs = {k: batch[k] for k in ("image",) + SEMANTIC_KEYS if k in batch}
  if crops:  # (n, k, H, W, C) -> (n k, H, W, C)
    n, k = batch["image"].shape[:2]
    inputs = {k_: v.reshape((n * k,) + v.shape[2:]) for k_, v in inputs.items()}
  x, semantic = _inputs(
    segmenter_graphdef, segmenter_state, inputs, stage, mean, std
  )
  logits = stage_outputs(model, x, semantic, stage)[STAGE_LOGITS[stage]]
  scores = logits.astype(jnp.float32)
  if crops:
    scores = jax.nn.softmax(scores).reshape(n, k, -1).mean(axis=1)
  top = jax.lax.top_k(scores, min(max(TOP_K), scores.shape[-1]))[1]
  return dict(top=top, label=batch["label"], mask=batch["mask"])


def load_segmenter(config, stage: str | None = None):
  """(graphdef, state) of the frozen segmenter, or (None, None) for the rgb
  stage (default: config.sasnet.stage) and for semantic files, which need
  none."""
  cfg = config.sasnet
  if (stage or cfg.stage) == "rgb" or cfg.semantic_dir:
    return None, None
  try:
    model = segment.load_segmenter(
      cfg.segmenter, cfg.segmenter_init_from, dtype=config.dtype
    )
  except UserError as e:  # its messages name the segment command's flags
    raise ConfigError(
      f"config.sasnet.segmenter = {cfg.segmenter!r}, segmenter_init_from = "
      f"{cfg.segmenter_init_from!r}: {e}"
    ) from e
  if model.num_classes > sasnet.SEMANTIC_CHANNELS - 2:
    raise ConfigError(
      f"config.sasnet.segmenter {cfg.segmenter} ({cfg.segmenter_init_from})"
      f" has {model.num_classes} classes; SAS-Net's semantic input holds "
      f"ids 1..{sasnet.SEMANTIC_CHANNELS - 2} (ADE20K's 150)"
    )
  return nnx.split(model)


class SemanticFiles:
  """A classification split whose records also carry SAS-Net's precomputed
  semantic input (`input_pipeline.SEMANTIC_KEYS`).

  `directory` is what `python -m scenejax.segment --dataset=D --split=S
  --top3 --out=directory` writes: for record i,
  noisy_annotations_RGB/S/{i:08d}.png (the top-3 segmenter channels,
  0-based, as uint8 RGB) and noisy_scores_RGB/S/{i:08d}.png (their
  round(255 p)), and S.txt, one "file label" line per record. Each record's
  scene label is checked against its line, so files written for another
  dataset, split or order are refused; a missing, unreadable or malformed
  file raises DatasetError naming it.
  """

  def __init__(self, source, directory: str, split: str):
    self._source, self._directory, self._split = source, directory, split
    self._listing = os.path.join(directory, f"{split}.txt")
    make = (
      f"write them with python -m scenejax.segment --dataset=... "
      f"--split={split} --top3 --out={directory} (and the segmenter's flags)"
    )
    if not os.path.isfile(self._listing):
      raise DatasetError(
        f"{self._listing} not found: config.sasnet.semantic_dir = "
        f"{directory!r} holds no {split!r} semantic files; {make}"
      )
    self._files, self._labels = [], []
    with open(self._listing) as f:
      for number, line in enumerate(f, 1):
        parts = line.split()
        if not parts:
          continue
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
          raise DatasetError(
            f"{self._listing}:{number}: {line.strip()!r} is not a "
            "'file label' line; " + make
          )
        self._files.append(parts[0])
        self._labels.append(int(parts[1]))
    if len(self._files) != len(source):
      raise DatasetError(
        f"{self._listing} lists {len(self._files)} records but the dataset's "
        f"{split!r} split has {len(source)}: the files were written for "
        f"another dataset or split; {make}"
      )

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict:
    record = self._source[index]
    if int(record["label"]) != self._labels[index]:
      raise DatasetError(
        f"{self._listing}:{index + 1} gives scene label "
        f"{self._labels[index]}, but record {index} of the dataset's "
        f"{self._split!r} split has {int(record['label'])}: the files were "
        "written for another dataset or order; write them again"
      )
    missing = not os.path.exists(self._path(segment.TOP3_IDS_DIR, index))
    if missing and not isinstance(record["image"], np.ndarray):
      # The segment command writes nothing for an image it cannot decode;
      # the input pipeline skips that image by name.
      if common.open_image(bytes(record["image"]), "?", strict=False) is None:
        return record
    ids = self._read(segment.TOP3_IDS_DIR, index)
    scores = self._read(segment.TOP3_SCORES_DIR, index)
    largest = sasnet.SEMANTIC_CHANNELS - 2  # channel id + 1 <= 151
    if int(ids.max(initial=0)) > largest:
      raise DatasetError(
        f"{self._path(segment.TOP3_IDS_DIR, index)}: segmenter channel "
        f"{int(ids.max())} > {largest}; SAS-Net's semantic input has "
        f"channels for ids 0..{largest} (ADE20K's 150 classes are 0..149)"
      )
    size = _image_size(record["image"])
    for name, array in (
      (segment.TOP3_IDS_DIR, ids),
      (segment.TOP3_SCORES_DIR, scores),
    ):
      if size is not None and array.shape[:2] != size:
        raise DatasetError(
          f"{self._path(name, index)}: {array.shape[1]}x{array.shape[0]} "
          f"pixels, but its image ({record.get('name', index)}) is "
          f"{size[1]}x{size[0]}: the files were written for other images"
        )
    return dict(record, semantic_ids=ids, semantic_scores=scores)

  def _path(self, folder: str, index: int) -> str:
    return os.path.join(self._directory, folder, self._files[index])

  def _read(self, folder: str, index: int) -> np.ndarray:
    from PIL import Image

    path = self._path(folder, index)
    try:
      with Image.open(path) as png:
        if png.mode != "RGB":
          raise ValueError(
            f"a {png.mode} image; SAS-Net's top-3 files are RGB PNGs (one "
            "channel per rank), as segment --top3 writes them"
          )
        return np.asarray(png)
    except FileNotFoundError:
      raise DatasetError(
        f"{path} not found (record {index} of {self._listing}); write the "
        f"files again with python -m scenejax.segment --split={self._split} "
        "--top3 (it resumes, writing only what is missing)"
      ) from None
    except (OSError, ValueError, SyntaxError) as e:
      raise DatasetError(f"{path}: not a top-3 PNG ({e})") from e


def _image_size(image) -> tuple[int, int] | None:
  """(height, width) of a decoded or encoded image; None if unreadable
  (the input pipeline skips it by name)."""
  from PIL import Image

  if isinstance(image, np.ndarray):
    return image.shape[:2]
  try:
    with Image.open(io.BytesIO(bytes(image))) as header:  # no decoding
      return header.size[1], header.size[0]
  except (OSError, ValueError, SyntaxError):
    return None


def jit_eval_step(graphdef, segmenter, mesh, pixel_stats, stage: str):
  """`eval_step` by `stage`'s head, jitted for `mesh`, as
  eval_fn(state, batch); `segmenter` = `load_segmenter(config, stage)`."""
  segmenter_graphdef, segmenter_state = segmenter
  replicated = NamedSharding(mesh, P())
  segmenter_state = jax.device_put(segmenter_state, replicated)
  evaluate = jax.jit(
    functools.partial(
      eval_step,
      graphdef,
      segmenter_graphdef,
      stage=stage,
      mean=pixel_stats[0],
      std=pixel_stats[1],
    ),
    in_shardings=(replicated, replicated, NamedSharding(mesh, P("data"))),
    out_shardings=replicated,
  )
  return lambda state, batch: evaluate(state, segmenter_state, batch)


def eval_source(config, data, stage: str):
  """The evaluation split, with its semantic files where `stage` reads
  them (config.sasnet.semantic_dir; the rgb head reads none)."""
  if config.sasnet.semantic_dir and stage != "rgb":
    return SemanticFiles(data.test, config.sasnet.semantic_dir, "test")
  return data.test


# `python -m scenejax.evaluate --head=...`: the stage whose head scores,
# and the heads each stage's workdir has trained.
HEAD_STAGES = {"rgb": "rgb", "semantic": "semantic", "combined": "attention"}
TRAINED_HEADS = {
  "rgb": ("rgb",),
  "semantic": ("rgb", "semantic"),
  "attention": tuple(HEAD_STAGES),
  "all": tuple(HEAD_STAGES),
}


def load_data(config):
  """The run's scene dataset (`datasets.from_config`)."""
  return datasets.from_config(config)


def make_task(config, data, graphdef, mesh, pixel_stats):
  """`base.Task` of a SAS-Net run: classification's, with this module's
  steps and the frozen segmenter's state beside the prototype."""
  stage = config.sasnet.stage
  if stage == "attention":
    _check_previous_stage(config)
  segmenter_graphdef, segmenter_state = load_segmenter(config)
  replicated = NamedSharding(mesh, P())
  segmenter_state = jax.device_put(segmenter_state, replicated)
  mean, std = pixel_stats
  loss_cfg = classification.LossConfig.from_config(config.loss)
  step = base.jit_step(
    functools.partial(
      train_step,
      graphdef,
      segmenter_graphdef,
      stage=stage,
      loss_cfg=loss_cfg,
      mean=mean,
      std=std,
    ),
    mesh,
  )
  sources = None
  if config.sasnet.semantic_dir and stage != "rgb":
    sources = (
      SemanticFiles(data.train, config.sasnet.semantic_dir, "train"),
      eval_source(config, data, stage),
    )
  classification_run = classification.make_task(
    config,
    data,
    graphdef,
    mesh,
    pixel_stats,
    step=step,
    eval_fn=jit_eval_step(
      graphdef,
      (segmenter_graphdef, segmenter_state),
      mesh,
      pixel_stats,
      stage,
    ),
    sources=sources,
  )
  terms = classification.loss_term_names(loss_cfg)
  if stage == "all":
    terms += [f"{h}_{t}" for h in ("rgb", "semantic") for t in terms]

  def prepare(workdir):
    return classification_run.prepare(workdir), segmenter_state

  return dataclasses.replace(classification_run, prepare=prepare, terms=terms)


def _check_previous_stage(config) -> None:
  """The attention stage starts from trained branches: the workdir of a
  'semantic' (or 'all') stage of the same model."""
  init = config.init_from
  previous = (
    checkpoints.read_workdir_config(init)
    if checkpoints.is_training_workdir(init)
    else None
  )
  stage = previous.get("sasnet", {}).get("stage") if previous else None
  if stage not in ("semantic", "all"):
    raise ConfigError(
      f"config.init_from = {init!r}: the 'attention' stage starts from the "
      "workdir of the 'semantic' stage (whose RGB branch came from the "
      f"'rgb' stage), not from {'stage ' + repr(stage) if previous else 'a non-workdir'}"
    )


def validate(config, check) -> None:
  """config.sasnet and what a SAS-Net run needs (`config_lib.Checks`)."""
  check.one_of("config.sasnet.stage", tuple(SASNET_STAGE_GROUPS))
  if config.loss.pcl:
    raise ConfigError(
      "config.loss.pcl: PCL is not wired into SAS-Net; train it without"
    )
  stage = config.sasnet.stage
  groups = tuple(tuple(rule) for rule in config.optimizer.param_groups)
  if groups != sasnet_param_groups(stage):
    raise ConfigError(
      f"config.sasnet.stage = {stage!r} but config.optimizer.param_groups = "
      f"{groups} are not that stage's {sasnet_param_groups(stage)}: set "
      "both with config_lib.sasnet_stage(config, stage) (the configs' "
      "variants do), so a stage trains what it names and nothing else"
    )
  if stage == "attention" and not config.init_from:
    raise ConfigError(
      "config.sasnet.stage = 'attention' trains on two trained branches: "
      "set config.init_from to the workdir of the 'semantic' stage"
    )
  if stage == "rgb":
    return
  if config.sasnet.semantic_dir:
    if config.sasnet.segmenter or config.sasnet.segmenter_init_from:
      raise ConfigError(
        f"config.sasnet.semantic_dir = {config.sasnet.semantic_dir!r} and "
        "config.sasnet.segmenter / segmenter_init_from are both set: the "
        "semantic input comes from the files or from the segmenter; "
        "clear one"
      )
    if not os.path.isdir(config.sasnet.semantic_dir):
      raise ConfigError(
        f"config.sasnet.semantic_dir = {config.sasnet.semantic_dir!r} is "
        "not a directory; write it with python -m scenejax.segment "
        "--dataset=... --split=train (and test) --top3 --out=DIR"
      )
    return
  if config.sasnet.segmenter not in models.SEGMENTERS:
    raise ConfigError(
      f"config.sasnet.segmenter = {config.sasnet.segmenter!r}: the "
      f"{stage!r} stage needs the segmenter of the semantic input, one of "
      f"{', '.join(models.SEGMENTERS)} (or config.sasnet.semantic_dir)"
    )
  if not config.sasnet.segmenter_init_from:
    raise ConfigError(
      "config.sasnet.segmenter_init_from is empty: the semantic input "
      "needs the segmenter's trained weights (a Hugging Face checkpoint "
      "or a segmentation workdir), or set config.sasnet.semantic_dir to "
      "precomputed top-3 files"
    )


# SAS-Net's stages (this module): the parameter groups that
# train; the rest is frozen (no update, no weight decay).
SASNET_STAGE_GROUPS = {
  "rgb": (("head", r"rgb_head/.*"), ("backbone", r"rgb/.*")),
  "semantic": (("head", r"semantic_head/.*|semantic/.*"),),
  "attention": (("head", r"head/.*|rgb_attention/.*|semantic_attention/.*"),),
  # The RGB branch at backbone_learning_rate, as in "rgb" (0: one rate).
  "all": (("backbone", r"rgb/.*"), ("head", r".*")),
}


def sasnet_param_groups(stage: str) -> tuple:
  """The parameter groups of SAS-Net's `stage`."""
  groups = SASNET_STAGE_GROUPS[stage]
  return groups + ((("frozen", r".*"),) if stage != "all" else ())


def apply_variant(config, arg: str):
  """As classification's (`classification.apply_variant`)."""
  return classification.apply_variant(config, arg)


def evaluate_checkpoint(
  workdir: str, config, step: int | None, *, ten_crop: bool, head=None
) -> dict:
  """As classification's, scored by the stage's head or by `head` (rgb |
  semantic | combined), the semantic input made as in training (the
  segmenter or the semantic files); the rgb head needs neither."""
  if head is not None:
    trained = TRAINED_HEADS[config.sasnet.stage]
    if head not in trained:
      raise ConfigError(
        f"--head={head}; {workdir} ran SAS-Net's "
        f"{config.sasnet.stage!r} stage, which has trained "
        f"{' | '.join(trained)}"
      )
  data = load_data(config)
  _, eval_preprocess = input_pipeline.preprocessors(config, data)
  mesh, graphdef, state, step, pixel_stats = checkpoints.restore_for_eval(
    workdir, data.num_classes, step
  )
  stage = HEAD_STAGES[head] if head else config.sasnet.stage
  segmenter = load_segmenter(config, stage)
  eval_fn = jit_eval_step(graphdef, segmenter, mesh, pixel_stats, stage)
  return classification.checkpoint_result(
    config,
    data,
    eval_fn,
    state,
    eval_source(config, data, stage),
    mesh,
    eval_preprocess,
    step=step,
    ten_crop=ten_crop,
    **({"head": head} if head else {}),
  )


def export_fields(config) -> dict:
  raise UserError(
    f"config.model = {config.model!r} takes a semantic input besides the "
    "image; export does not support it yet"
  )
