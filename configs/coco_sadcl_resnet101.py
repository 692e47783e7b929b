# [SADCL] (Ma et al. 2023): ResNet-101 (ImageNet-1k) under the SARL head, trained
# on MS-COCO 2014 object presence (80 labels) with ASL + SSCL + PSCL, 448 px.
#
#   python -m scenejax.datasets prepare coco2014
#   python -m scenejax.main --config=configs/coco_sadcl_resnet101.py --workdir=/tmp/coco_sadcl
#   python -m scenejax.main --config=configs/coco_sadcl_resnet101.py:asl,nocl ...  (ASL alone)
#
# init_from: the Hugging Face microsoft/resnet-101 directory. Train on
# train2014 (82,081 images with an object), evaluate on val2014 (40,137):
# mAP, CP, CR, CF1, OP, OR, OF1 (ML-GCN's protocol).
# Recipe: the poster gives none; ASL's and Query2Label's COCO recipes at
# 448 px: Adam 1e-4 for every parameter, weight decay 1e-4, cosine over 40
# epochs, batch 64, shorter side 512 then random 448 crops and flips.
# Paper: [SADCL] COCO mAP 85.6 (ResNet-101, 448 px).
# Expected wall time: not measured yet (no accelerator run so far).

from scenejax import config_lib


def get_config(arg=None):
  config = config_lib.multilabel_training(config_lib.base())
  config.dataset = "coco2014"
  config.model = "resnet101"
  config.init_from = "checkpoints/resnet-101"
  config.data.image_size = 448
  config.data.resize_size = 512
  config.num_epochs = 40
  config.batch_size = 64
  config.eval_batch_size = 128
  return config_lib.apply_variant(config, arg)
