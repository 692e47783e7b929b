# ResNet-18 from scratch on [PCL]'s "Places365-small" (1,000 training images
# per class of Places365-Standard, 365,000 images; evaluated on the full
# validation set, 36,500) with pairwise consistency learning ([PCL] §5).
#
#   python -m scenejax.datasets prepare places365
#   python -m scenejax.main --config=configs/places365_1k_resnet18_pcl.py
#   (baseline: --config=configs/places365_1k_resnet18_pcl.py:ce; the default
#   is :ce,pcl)
#
# The subset is drawn with seed 0 (the authors' draw is unpublished), see
# scenejax.datasets.per_class_sample.
# Expected wall time: not measured yet (no accelerator run so far).
# Paper: [PCL] Table 2, ResNet18 on Places365-small: Top-1 49.70 / Top-5
# 80.62 (baseline 48.21 / 79.22).

from scenejax import config_lib


def get_config(arg=None):
  config = config_lib.base()
  config.dataset = "places365_1k"
  config.model = "resnet18"
  config.num_epochs = 30  # [PCL] §5: 30 epochs on Places365-small
  config.batch_size = 256
  config.eval_batch_size = 256
  config.optimizer.update(
    dict(
      name="sgd",
      learning_rate=0.1,
      backbone_learning_rate=0.0,
      momentum=0.9,
      weight_decay=5e-4,
      schedule="cosine",
    )
  )
  config.loss.update(dict(labels="ce", bcl_weight=0.0, pcl=True))
  return config_lib.apply_variant(config, arg)
