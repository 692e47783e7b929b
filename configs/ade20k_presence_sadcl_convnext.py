# A presence model: ConvNeXt-T (ImageNet-22k) under the SARL head, trained on
# which of ADE20K's 150 objects each image contains ([SADCL] losses); it
# then builds an [SP] similarity prototype for any scene dataset with one
# classification pass per image instead of a segmenter.
#
#   python -m scenejax.datasets prepare ade20k_scenes --manual_dir=DIR
#   python -m scenejax.main --config=configs/ade20k_presence_sadcl_convnext.py \
#     --workdir=workdirs/ade20k_presence_sadcl_convnext
#   python -m scenejax.prototype build --dataset=mit67 \
#     --presence_model=workdirs/ade20k_presence_sadcl_convnext --out=mit67_presence.npz
#
# init_from: the Hugging Face facebook/convnext-tiny-224 directory (or -22k).
# Train on ADE20K train (20,210 images), evaluate on validation (2,000):
# labels = the ids of the 150-class maps.
# Recipe: as the COCO config at 384 px (ADE20K's objects are smaller than
# the scene, so resolution matters more than for the scene labels).
# Paper: none (scenejax's own use of [SADCL], for [SP]'s Algorithm 1).
# Expected wall time: not measured yet (no accelerator run so far).

from scenejax import config_lib


def get_config(arg=None):
  config = config_lib.multilabel_training(config_lib.base())
  config.dataset = "ade20k_scenes"
  config.model = "convnext_tiny"
  config.init_from = "checkpoints/convnext-tiny-224"
  config.data.image_size = 384
  config.data.resize_size = 448
  config.num_epochs = 40
  config.batch_size = 64
  config.eval_batch_size = 128
  return config_lib.apply_variant(config, arg)
