# [SADCL] (Ma et al. 2023): ResNet-101 (ImageNet-1k) under the SARL head on
# NUS-WIDE's 81 concepts with ASL + SSCL + PSCL, 448 px.
#
#   python -m scenejax.datasets prepare nus_wide --manual_dir=DIR
#   python -m scenejax.main --config=configs/nus_wide_sadcl_resnet101.py --workdir=/tmp/nus_sadcl
#
# init_from: the Hugging Face microsoft/resnet-101 directory. The official
# split (161,789 / 107,859 listed images), less those missing from the
# manual directory's Flickr/ and those without any concept.
# Recipe: as the COCO config (config_lib.multilabel_training), 20 epochs.
# Paper: [SADCL] NUS-WIDE mAP 65.9 (the image count it used is not given;
# mirrors of NUS-WIDE differ in which images survive).
# Expected wall time: not measured yet (no accelerator run so far).

from scenejax import config_lib


def get_config(arg=None):
  config = config_lib.multilabel_training(config_lib.base())
  config.dataset = "nus_wide"
  config.model = "resnet101"
  config.init_from = "checkpoints/resnet-101"
  config.data.image_size = 448
  config.data.resize_size = 512
  config.num_epochs = 20
  config.batch_size = 64
  config.eval_batch_size = 128
  return config_lib.apply_variant(config, arg)
