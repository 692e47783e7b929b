# ResNet-50 (ImageNet-1k) fine-tuned on MIT Indoor 67 with GLS + BCL ([SP]).
#
#   python -m scenejax.main --config=configs/mit67_resnet50.py --workdir=/tmp/mit67_r50
#   python -m scenejax.main --config=configs/mit67_resnet50.py:gls,bcl=nonzero_inter_intra ...
#
# init_from: the Hugging Face microsoft/resnet-50 directory. The prototype:
# the authors' MIT-67 matrix (import_xlsx) or one built from your
# segmenter's label maps (prototype build --label_maps ... --list ...),
# saved as prototypes/MIT67_SP_cosine.npz (and _euclidean.npz).
# Expected wall time: not measured yet (no accelerator run so far).
# Paper: [SP] Table 3, ResNet50 on MIT-67, GLS + BCL cosine mean_inter:
# Top-1 79.104 (baseline 76.493).

from scenejax import config_lib


def get_config(arg=None):
  config = config_lib.base()
  config.dataset = "mit67"
  config.model = "resnet50"
  config.init_from = "checkpoints/resnet-50"
  config.num_epochs = 100
  config.prototype.path = "prototypes/MIT67_SP_{metric}.npz"
  return config_lib.apply_variant(config, arg)
