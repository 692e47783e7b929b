"""Row 10: [SP] Table 5 on our models, the deployment cost (parameters,
XLA FLOPs, images/s) of a plain backbone vs SAS-Net.

Imported by benchmarks/run.py, which puts benchmarks/ and the repository
root on sys.path.
"""

from __future__ import annotations

import backbones
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from harness import row

from scenejax import input_pipeline, models


def _param_count(model) -> int:
  return sum(
    int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, nnx.Param))
  )


def _compiled(fn, *args):
  """(jitted fn, XLA's FLOP count of one call)."""
  jitted = jax.jit(fn)
  analysis = jitted.lower(*args).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jax: one dict per device
    analysis = analysis[0]
  return jitted, float((analysis or {}).get("flops", float("nan")))


def rows_deployment(s):
  """[SP] Table 5 on our own models: what one image costs at deployment.

  [SP]'s point: its segmenter runs only in training (the prototype is
  built once), so a backbone trained with GLS + BCL deploys as the plain
  backbone; SAS-Net needs a segmenter and two branches for every image.
  Each model is one jitted forward of a batch of uint8 images
  (normalisation inside); SAS-Net's is the trainer's semantic input (the
  segmenter's top-3 at the image's size, `semantic_aware.semantic_input`)
  and both branches. Parameters are counted from the models; FLOPs are
  XLA's cost analysis of each compiled forward, per image."""
  from scenejax.tasks import semantic_aware

  plain_name, sas_name, seg_name, size = s["deployment"]
  batch, classes = s["eval_batch"], 365
  rng = np.random.default_rng(6)
  images = jnp.asarray(rng.integers(0, 256, (batch, size, size, 3), np.uint8))
  plain = models.create(plain_name, classes, rngs=nnx.Rngs(0))
  sas = models.create(sas_name, classes, rngs=nnx.Rngs(1))
  seg = models.create(
    seg_name, 150, rngs=nnx.Rngs(2), **s.get("deployment_segmenter", {})
  )
  for model in (plain, sas, seg):
    model.eval()

  def norm(model, x):
    return input_pipeline.normalize(x, model.pixel_mean, model.pixel_std)

  g_plain, st_plain = nnx.split(plain)
  g_sas, st_sas = nnx.split(sas)
  g_seg, st_seg = nnx.split(seg)

  def plain_forward(st, x):
    model = nnx.merge(g_plain, st)
    return model(norm(model, x))

  def segmenter_forward(st, x):
    return semantic_aware.semantic_input(nnx.merge(g_seg, st), x)

  def sasnet_forward(st, st_s, x):
    model = nnx.merge(g_sas, st)
    semantic = segmenter_forward(st_s, x)
    return model(norm(model, x), semantic)["logits"]

  def branches_forward(st, x, semantic):
    model = nnx.merge(g_sas, st)
    return model(norm(model, x), semantic)["logits"]

  semantic = jax.block_until_ready(jax.jit(segmenter_forward)(st_seg, images))
  calls = {
    "plain": (plain_forward, (st_plain, images)),
    "segmenter": (segmenter_forward, (st_seg, images)),
    "branches": (branches_forward, (st_sas, images, semantic)),
    "sasnet": (sasnet_forward, (st_sas, st_seg, images)),
  }
  jitted, flops = {}, {}
  for key, (fn, args) in calls.items():
    jitted[key], flops[key] = _compiled(fn, *args)
    jax.block_until_ready(jitted[key](*args))  # warm-up

  def timer(key):
    fn, args = jitted[key], calls[key][1]
    return lambda: jax.block_until_ready(fn(*args))

  repeats = max(3, s["repeats"])
  t_plain, t_sas = backbones.interleaved_medians(
    timer("plain"), timer("sasnet"), repeats=repeats
  )
  t_seg, t_branches = backbones.interleaved_medians(
    timer("segmenter"), timer("branches"), repeats=repeats
  )
  params = {
    "plain": _param_count(plain),
    "segmenter": _param_count(seg),
    "branches": _param_count(sas),
  }
  params["sasnet"] = params["segmenter"] + params["branches"]
  seconds = {
    "plain": t_plain,
    "segmenter": t_seg,
    "branches": t_branches,
    "sasnet": t_sas,
  }

  def cost(key):
    return (
      f"{params[key] / 1e6:,.2f} M parameters, "
      f"{flops[key] / batch / 1e9:,.3f} GFLOPs/image, "
      f"{batch / seconds[key]:,.1f} images/s"
    )

  setting = (
    f"batch {batch}, {size}² px, fp32, {classes} classes, "
    f"{jax.devices()[0].device_kind}"
  )
  what = {
    "segmenter": f"SAS-Net's segmenter ({seg_name}, top-3 → 152 channels)",
    "branches": f"SAS-Net's two branches ({sas_name}, semantic input given)",
  }
  out = [
    row(
      10,
      f"[SP] Table 5: deployment, {plain_name} (+ GLS + BCL: no cost) "
      f"vs SAS-Net ({seg_name} + {sas_name})",
      cost("plain"),
      cost("sasnet"),
      t_sas / t_plain,
      "report (ratio = SAS-Net / plain time per image)",
      None,
      setting,
      flops_per_image=dict((k, v / batch) for k, v in flops.items()),
      parameters=params,
      images_per_s={k: batch / v for k, v in seconds.items()},
    )
  ]
  for key in ("segmenter", "branches"):
    out.append(
      row(
        10,
        what[key],
        cost(key),
        cost("plain") + f" ({plain_name})",
        seconds[key] / t_plain,
        "report (ratio = this part / plain time per image)",
        None,
        setting,
      )
    )
  return out
