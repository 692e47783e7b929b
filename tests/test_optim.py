"""scenejax.training.optim against PyTorch's optimizers and schedulers, stepped the
way the papers' PyTorch code steps them, and the regex parameter groups."""

import numpy as np
import pytest
from flax import nnx

from scenejax import config_lib, models
from scenejax.errors import ConfigError
from scenejax.models import pcl
from scenejax.training import optim

# The PyTorch references (the test extra); skipped where torch is absent.
torch = pytest.importorskip("torch")

STEPS_PER_EPOCH = 2
SHAPES = {
  "head/kernel": (3, 4),
  "head/bias": (4,),
  "stem/conv/kernel": (2, 3),
  "stages/0/bn/scale": (5,),
}


def _tree(arrays):
  """{"head/kernel": a, ...} -> nested dicts, the layout optax sees."""
  tree = {}
  for path, value in arrays.items():
    *parents, leaf = path.split("/")
    node = tree
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def _flat(tree, prefix=""):
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}/"))
    else:
      out[prefix + key] = np.asarray(value)
  return out


def _run_both(cfg, num_epochs, torch_optimizer, torch_scheduler, per_epoch):
  """Parameters after every step from optax (scenejax.training.optim) and from
  PyTorch, fed the same random gradients."""
  import jax.numpy as jnp
  import optax

  rng = np.random.default_rng(0)
  init = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
  grads = [
    {k: rng.normal(size=s).astype(np.float32) * 0.1 for k, s in SHAPES.items()}
    for _ in range(num_epochs * STEPS_PER_EPOCH)
  ]
  tx = optim.make_optimizer(cfg, STEPS_PER_EPOCH, num_epochs)
  params = _tree({k: jnp.asarray(v) for k, v in init.items()})
  state = tx.init(params)
  torch_params = {
    k: torch.nn.Parameter(torch.tensor(v)) for k, v in init.items()
  }
  opt = torch_optimizer(torch_params)
  sched = torch_scheduler(opt)
  ours, theirs = [], []
  for step, g in enumerate(grads):
    updates, state = tx.update(
      _tree({k: jnp.asarray(v) for k, v in g.items()}), state, params
    )
    params = optax.apply_updates(params, updates)
    ours.append(_flat(params))
    for k, p in torch_params.items():
      p.grad = torch.tensor(g[k])
    opt.step()
    if not per_epoch or (step + 1) % STEPS_PER_EPOCH == 0:
      sched.step()
    theirs.append(
      {k: p.detach().numpy().copy() for k, p in torch_params.items()}
    )
  return ours, theirs


def test_adam_l2_two_rates_multistep_matches_pytorch():
  """[SP]: torch.optim.Adam(weight_decay=1e-5) with the head at 1e-3 and the
  backbone at 1e-5, MultiStepLR(milestones=[10, 15, 20], gamma=0.1) stepped
  once per epoch; 25 epochs of 2 steps."""
  cfg = config_lib.base().optimizer
  heads = ("head/kernel", "head/bias")

  def torch_adam(params):
    return torch.optim.Adam(
      [
        {"params": [params[k] for k in heads], "lr": 1e-3},
        {
          "params": [v for k, v in params.items() if k not in heads],
          "lr": 1e-5,
        },
      ],
      weight_decay=1e-5,
    )

  ours, theirs = _run_both(
    cfg,
    25,
    torch_adam,
    lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [10, 15, 20], 0.1),
    per_epoch=True,
  )
  for step, (a, b) in enumerate(zip(ours, theirs)):
    for key in SHAPES:
      np.testing.assert_allclose(
        a[key], b[key], rtol=2e-5, atol=1e-7, err_msg=f"step {step} {key}"
      )
  # The schedule did something: the last 10 steps moved the head far less
  # than the first 10 (x0.1, x0.01, x0.001).
  early = np.abs(ours[9]["head/kernel"] - ours[0]["head/kernel"]).mean()
  late = np.abs(ours[-1]["head/kernel"] - ours[-10]["head/kernel"]).mean()
  assert late < early / 50


def test_sgd_momentum_cosine_matches_pytorch():
  """[PCL]: SGD(lr 0.1, momentum 0.9, weight decay 5e-4), one rate, cosine
  annealing to 0 over the run (CosineAnnealingLR stepped per step)."""
  cfg = config_lib.base().optimizer
  cfg.update(
    dict(
      name="sgd",
      learning_rate=0.1,
      backbone_learning_rate=0.0,
      weight_decay=5e-4,
      schedule="cosine",
    )
  )
  total = 10 * STEPS_PER_EPOCH
  ours, theirs = _run_both(
    cfg,
    10,
    lambda p: torch.optim.SGD(
      list(p.values()), lr=0.1, momentum=0.9, weight_decay=5e-4
    ),
    lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total),
    per_epoch=False,
  )
  for step, (a, b) in enumerate(zip(ours, theirs)):
    for key in SHAPES:
      np.testing.assert_allclose(
        a[key], b[key], rtol=2e-5, atol=1e-6, err_msg=f"step {step} {key}"
      )


def _groups(model, rules=None):
  if rules is None:
    rules = config_lib.base().optimizer.param_groups
  labels = optim.parameter_groups(nnx.state(model, nnx.Param), rules)
  import jax

  flat = jax.tree_util.tree_flatten_with_path(labels)[0]
  return {optim.parameter_path(path): group for path, group in flat}


def test_default_groups_put_every_parameter_in_one_group():
  model = models.create("resnet_tiny", 5, rngs=nnx.Rngs(0))
  groups = _groups(model)
  assert {k for k, g in groups.items() if g == "head"} == {
    "head/kernel",
    "head/bias",
  }
  assert all(
    g == "backbone" for k, g in groups.items() if not k.startswith("head/")
  )
  wrapped = pcl.PCLModel(
    models.create("resnet_tiny", 5, rngs=nnx.Rngs(0)), 5, rngs=nnx.Rngs(1)
  )
  heads = {k for k, g in _groups(wrapped).items() if g == "head"}
  assert heads == {
    "backbone/head/kernel",
    "backbone/head/bias",
    "cam_conv/kernel",
    "cam_conv/bias",
    "cam_head/kernel",
    "cam_head/bias",
    "mod_head/kernel",
    "mod_head/bias",
  }


def test_group_rules_that_miss_are_errors():
  model = models.create("resnet_tiny", 5, rngs=nnx.Rngs(0))
  with pytest.raises(ConfigError, match=r"match no rule, e.g. \['stages/"):
    _groups(model, (("head", r"head/.*"),))
  with pytest.raises(
    ConfigError,
    match=r"rule\(s\) \[\('head', 'classifier"
    r"/\.\*'\)\] match no parameter",
  ):
    _groups(model, (("head", r"classifier/.*"), ("backbone", r".*")))
  with pytest.raises(ConfigError, match="group 'neck'"):
    _groups(model, (("neck", r".*"),))
  with pytest.raises(ConfigError, match="bad regex"):
    _groups(model, (("head", r"head/(.*"),))
  # One rule for everything is a valid single group.
  assert set(_groups(model, (("backbone", r".*"),)).values()) == {"backbone"}


def test_frozen_group_is_not_updated_and_the_rest_is_plain_sgd():
  """A "frozen" rule: those parameters stay bit for bit (no weight decay
  either); the others follow p <- p - lr (g + wd p) (SGD, momentum 0,
  written here), at the head's rate when backbone_learning_rate = 0."""
  import jax.numpy as jnp
  import optax

  cfg = config_lib.base().optimizer
  cfg.update(
    name="sgd", learning_rate=0.1, backbone_learning_rate=0.0,
    weight_decay=0.01, momentum=0.0, schedule="constant",
    param_groups=(("head", r"head/.*"), ("frozen", r"stem/.*"),
                  ("backbone", r".*")),
  )  # fmt: skip
  rng = np.random.default_rng(0)
  init = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
  grads = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
  tx = optim.make_optimizer(cfg, STEPS_PER_EPOCH, 1)
  params = _tree({k: jnp.asarray(v) for k, v in init.items()})
  updates, _ = tx.update(
    _tree({k: jnp.asarray(v) for k, v in grads.items()}),
    tx.init(params),
    params,
  )
  got = _flat(optax.apply_updates(params, updates))
  for key in SHAPES:
    if key.startswith("stem/"):
      np.testing.assert_array_equal(got[key], init[key])
    else:
      want = init[key] - 0.1 * (grads[key] + 0.01 * init[key])
      np.testing.assert_allclose(got[key], want, rtol=1e-6, err_msg=key)
