# The multi-label demo ([SADCL], Ma et al. 2023): which of the 32 objects each
# synthetic scene contains, learned by resnet_tiny under the SARL head with
# ASL + SSCL + PSCL, on CPU, no download.
#
#   python -m scenejax.main --config=configs/demo_multilabel.py --workdir=/tmp/scenejax_ml
#   python -m scenejax.main --config=configs/demo_multilabel.py:bce,nocl   (baseline)
#
# 1,200 training images of 32 px, L = 32 object labels; mAP, CF1 and OF1 on
# the 400 test images after each epoch. The presence model it trains builds a
# scene prototype without a segmenter:
#   python -m scenejax.prototype build --dataset=synthetic_scenes \
#     --presence_model=/tmp/scenejax_ml --out=/tmp/presence_cosine.npz
# Expected: see the README (figures measured on 2 CPU cores; a constant
# predictor's mAP is the mean label frequency, 0.17).

from scenejax import config_lib


def get_config(arg=None):
  config = config_lib.base()
  config.task = "multilabel"
  config.dataset = "synthetic_scenes"
  config.data.image_size = 32  # rendered at 32 px, L = 32 objects
  config.model = "resnet_tiny"
  config.num_epochs = 10
  config.batch_size = 64
  config.eval_batch_size = 100
  config.optimizer.update(
    dict(learning_rate=2e-3, backbone_learning_rate=0.0, schedule="cosine")
  )
  config.multilabel.update(dict(dim=64, num_heads=4))
  config.log_every_steps = 5
  return config_lib.apply_variant(config, arg)
