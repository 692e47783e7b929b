# ResNet-18 from scratch on the whole Places365-Standard (1,803,460 training
# images; TFDS places365_small, i.e. the 256 px release) with pairwise
# consistency learning ([PCL] §5).
#
#   python -m scenejax.datasets prepare places365
#   python -m scenejax.main --config=configs/places365_resnet18_pcl.py
#   (baseline: --config=configs/places365_resnet18_pcl.py:ce; the default
#   is :ce,pcl)
#
# Expected wall time: not measured yet (no accelerator run so far).
# Paper: [PCL] Table 2, ResNet18 on Places365: Top-1 55.12 / Top-5 84.94
# (baseline 54.36 / 84.50).

from scenejax import config_lib


def get_config(arg=None):
  config = config_lib.base()
  config.dataset = "places365"
  config.model = "resnet18"
  config.num_epochs = 40  # [PCL] §5: 40 epochs on Places365
  config.batch_size = 256
  config.eval_batch_size = 256
  config.optimizer.update(
    dict(
      name="sgd",
      learning_rate=0.1,
      backbone_learning_rate=0.0,
      momentum=0.9,
      weight_decay=2e-4,
      schedule="cosine",
    )
  )
  config.loss.update(dict(labels="ce", bcl_weight=0.0, pcl=True))
  return config_lib.apply_variant(config, arg)
