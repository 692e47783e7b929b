# ConvNeXt-B (ImageNet-22k) fine-tuned on SUN397 with GLS + BCL ([SP]).
#
#   python -m scenejax.main --config=configs/sun397_convnext.py --workdir=/tmp/sun397_convnext
#
# init_from: the Hugging Face facebook/convnext-base-224-22k directory
# (config.json + model.safetensors), downloaded beforehand. The prototype:
# the authors' SUN397 matrix (published:sun397/{metric}, fetched and cached).
# Every row of [SP] Tables 1-4 on SUN397:
#   python -m scenejax.reproduce --table=sp3 --dataset=sun397 --seeds=3 --workdir=runs/
# Expected wall time: not measured yet (no accelerator run so far).
# Paper: [SP] Table 3, ConvNeXt-B IN22k on SUN397, GLS + BCL cosine
# nonzero_inter_intra: Top-1 77.406 (baseline 74.675).

from scenejax import config_lib


def get_config(arg=None):
  config = config_lib.base()
  config.dataset = "sun397"
  config.model = "convnext_base"
  config.init_from = "checkpoints/convnext-base-224-22k"
  config.num_epochs = 30
  config.loss.bcl_reduction = "nonzero_inter_intra"
  config.prototype.path = "published:sun397/{metric}"
  return config_lib.apply_variant(config, arg)
