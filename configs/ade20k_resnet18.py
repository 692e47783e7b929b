# ResNet-18 (ImageNet-1k) on ADE20K scene recognition (SAS-Net's dataset:
# López-Cifuentes et al., Pattern Recognition 2020), with GLS + BCL from the
# prototype of ADE20K's own ground-truth 150-class maps.
#
#   python -m scenejax.datasets prepare ade20k_scenes --manual_dir=DIR
#   python -m scenejax.prototype build --dataset=ade20k_scenes --out=prototypes/ade20k_cosine.npz
#   python -m scenejax.main --config=configs/ade20k_resnet18.py --workdir=/tmp/ade20k_r18
#
# Expected wall time: not measured yet (no accelerator run so far).
# Paper: the seed texts give no ADE20K number for this recipe; compare
# against the `:ce` variant.

from scenejax import config_lib


def get_config(arg=None):
  config = config_lib.base()
  config.dataset = "ade20k_scenes"
  config.model = "resnet18"
  config.init_from = "checkpoints/resnet-18"
  config.num_epochs = 100
  config.prototype.path = "prototypes/ade20k_{metric}.npz"
  return config_lib.apply_variant(config, arg)
