# ViT-B/16 (AugReg ImageNet-21k) fine-tuned on SUN397 with GLS + BCL ([SP]).
#
#   python -m scenejax.main --config=configs/sun397_vit.py --workdir=/tmp/sun397_vit
#   (variants: --config=configs/sun397_vit.py:ce  for the baseline)
#
# Needs: SUN397 prepared (python -m scenejax.datasets prepare sun397) and
# the AugReg checkpoint in init_from. The prototype is the authors' SUN397
# matrix (published:sun397/{metric}: fetched once and cached, rows in TFDS
# label order; see scenejax.prototype.published).
# Expected wall time: not measured yet (no accelerator run so far).
# Paper: [SP] Table 3, ViT-B IN22k on SUN397, GLS + BCL cosine
# nonzero_inter_intra: Top-1 75.768 (baseline 75.078).

from scenejax import config_lib


def get_config(arg=None):
  config = config_lib.base()
  config.dataset = "sun397"
  config.model = "vit_b16"
  config.init_from = (
    "gs://vit_models/augreg/B_16-i21k-300ep-lr_0.001-"
    "aug_medium1-wd_0.1-do_0.0-sd_0.0.npz"
  )
  config.num_epochs = 30  # [SP]: 30 epochs for IN22k backbones
  config.batch_size = 32
  config.loss.bcl_reduction = "nonzero_inter_intra"
  config.prototype.path = "published:sun397/{metric}"
  return config_lib.apply_variant(config, arg)
