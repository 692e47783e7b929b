# ResNet-50 (ImageNet-1k) on Places365-14 with GLS + BCL ([SP] §4.2, Fig. 3).
#
#   python -m scenejax.main --config=configs/places14_resnet50.py --workdir=/tmp/places14
#
# Needs places365_small prepared; the prototype is the authors' Places365-14
# matrix (published:places365_14/{metric}, fetched and cached).
# Expected wall time: not measured yet (no accelerator run so far).
# Paper: [SP] uses Places365-14 for visualisation (Fig. 3, 8) and gives no
# accuracy table for it; compare against the `:ce` variant.

from scenejax import config_lib


def get_config(arg=None):
  config = config_lib.base()
  config.dataset = "places365_14"
  config.model = "resnet50"
  config.init_from = "checkpoints/resnet-50"
  config.num_epochs = 30  # [SP]: Places365 converges in 30 epochs
  config.batch_size = 64
  config.prototype.path = "published:places365_14/{metric}"
  return config_lib.apply_variant(config, arg)
