"""SAS-Net in the trainer: scene classification whose model also reads a
segmenter's scores (config.model = sasnet_*; the model is
`scenejax.models.sasnet`).

The semantic input is made on the fly: a frozen segmenter
(config.sasnet.segmenter, weights config.sasnet.segmenter_init_from: a
Hugging Face checkpoint or a scenejax segmentation workdir) runs inside the
same jitted step on the augmented batch; its top-3 softmax scores,
quantised to round(255 p) / 255 as SAS-Net's score PNGs store them, become
the 152-channel tensor of `sasnet.semantic_tensor`. No gradient reaches
the segmenter; its parameters are an input of the step, not constants.

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
losses are the classification ones (`train.loss_terms`), so GLS and BCL
apply to SAS-Net as to any backbone. Evaluation scores the stage's head
(Top-1/2/5, MCA, ten-crop as configured).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from scenejax import input_pipeline, segment
from scenejax.errors import ConfigError, UserError
from scenejax.evaluation import TOP_K
from scenejax.models import sasnet

STAGES = ("rgb", "semantic", "attention", "all")
# The head each stage trains and is evaluated by.
STAGE_LOGITS = {
  "rgb": "rgb_logits",
  "semantic": "semantic_logits",
  "attention": "logits",
  "all": "logits",
}


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


def _inputs(graphdef, segmenter_state, batch_images, stage, mean, std):
  images = input_pipeline.normalize(batch_images, mean, std)
  semantic = None
  if stage != "rgb":
    segmenter = nnx.merge(graphdef, segmenter_state)
    semantic = semantic_input(segmenter, batch_images)
  return images, semantic


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
  from scenejax import train

  similarity, segmenter_state = aux
  model, optimizer = nnx.merge(graphdef, state)
  if stage == "attention":  # frozen branches: BatchNorm running statistics
    model.rgb.eval()
    model.semantic.eval()
  images, semantic = _inputs(
    segmenter_graphdef, segmenter_state, batch["image"], stage, mean, std
  )
  labels = batch["label"]

  def loss_fn(model):
    outputs = stage_outputs(model, images, semantic, stage)
    logits = outputs[STAGE_LOGITS[stage]].astype(jnp.float32)
    terms = train.loss_terms(logits, labels, similarity, epoch, loss_cfg)
    if stage == "all":  # the branch heads too (deep supervision)
      for head in ("rgb", "semantic"):
        branch = outputs[f"{head}_logits"].astype(jnp.float32)
        for key, value in train.loss_terms(
          branch, labels, similarity, epoch, loss_cfg
        ).items():
          terms[f"{head}_{key}"] = value
    return sum(terms.values()), (terms, logits)

  return train.update(model, optimizer, loss_fn, labels)


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
  `evaluation.eval_step`); a ten-crop batch averages the softmax of its
  crops."""
  model = nnx.merge(graphdef, state)[0]
  model.eval()
  images = batch["image"]
  crops = images.ndim == 5
  if crops:
    n, k = images.shape[:2]
    images = images.reshape((n * k,) + images.shape[2:])
  x, semantic = _inputs(
    segmenter_graphdef, segmenter_state, images, stage, mean, std
  )
  logits = stage_outputs(model, x, semantic, stage)[STAGE_LOGITS[stage]]
  scores = logits.astype(jnp.float32)
  if crops:
    scores = jax.nn.softmax(scores).reshape(n, k, -1).mean(axis=1)
  top = jax.lax.top_k(scores, min(max(TOP_K), scores.shape[-1]))[1]
  return dict(top=top, label=batch["label"], mask=batch["mask"])


def load_segmenter(config):
  """(graphdef, state) of the frozen segmenter, or (None, None) for the rgb
  stage, which needs none."""
  cfg = config.sasnet
  if cfg.stage == "rgb":
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


def task(config, data, graphdef, mesh, pixel_stats):
  """`train.Task` of a SAS-Net run: classification's, with this module's
  steps and the frozen segmenter's state beside the prototype."""
  from scenejax import train

  stage = config.sasnet.stage
  if stage == "attention":
    _check_previous_stage(config)
  segmenter_graphdef, segmenter_state = load_segmenter(config)
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P("data"))
  segmenter_state = jax.device_put(segmenter_state, replicated)
  mean, std = pixel_stats
  loss_cfg = train.LossConfig.from_config(config.loss)
  step = jax.jit(
    functools.partial(
      train_step,
      graphdef,
      segmenter_graphdef,
      stage=stage,
      loss_cfg=loss_cfg,
      mean=mean,
      std=std,
    ),
    in_shardings=(replicated, batch_sharding, replicated, replicated),
    out_shardings=(replicated, replicated),
    donate_argnums=0,
  )
  evaluate = jax.jit(
    functools.partial(
      eval_step, graphdef, segmenter_graphdef, stage=stage, mean=mean, std=std
    ),
    in_shardings=(replicated, replicated, batch_sharding),
    out_shardings=replicated,
  )
  base = train.classification_task(
    config,
    data,
    graphdef,
    mesh,
    pixel_stats,
    step=step,
    eval_fn=lambda state, batch: evaluate(state, segmenter_state, batch),
  )
  terms = train.loss_term_names(loss_cfg)
  if stage == "all":
    terms += [f"{h}_{t}" for h in ("rgb", "semantic") for t in terms]

  def prepare(workdir):
    return base.prepare(workdir), segmenter_state

  return dataclasses.replace(base, prepare=prepare, terms=terms)


def _check_previous_stage(config) -> None:
  """The attention stage starts from trained branches: the workdir of a
  'semantic' (or 'all') stage of the same model."""
  from scenejax import checkpoints

  init = config.init_from
  previous = (
    checkpoints.read_workdir_config(init)
    if segment.is_training_workdir(init)
    else None
  )
  stage = previous.get("sasnet", {}).get("stage") if previous else None
  if stage not in ("semantic", "all"):
    raise ConfigError(
      f"config.init_from = {init!r}: the 'attention' stage starts from the "
      "workdir of the 'semantic' stage (whose RGB branch came from the "
      f"'rgb' stage), not from {'stage ' + repr(stage) if previous else 'a non-workdir'}"
    )
