# ResNet-50 (ImageNet-1k) fine-tuned on MIT Indoor 67 with GLS + BCL ([SP]).
#
#   python -m scenejax.main --config=configs/mit67_resnet50.py --workdir=/tmp/mit67_r50
#   python -m scenejax.main --config=configs/mit67_resnet50.py:gls,bcl=nonzero_inter_intra ...
#
# init_from: the Hugging Face microsoft/resnet-50 directory. The prototype:
# the authors' published MIT-67 matrix (published:mit67/{metric}: fetched
# once and cached, see scenejax.prototype.published), or set prototype.path
# to one you built (prototype build --label_maps ... --list ...).
# Every row of [SP] Tables 1-4 on MIT-67:
#   python -m scenejax.reproduce --table=sp3 --dataset=mit67 --seeds=3 --workdir=runs/
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
  config.prototype.path = "published:mit67/{metric}"
  return config_lib.apply_variant(config, arg)
