# [SADCL] (Ma et al. 2023): ResNet-101 under the SARL head on PASCAL VOC 2007
# (20 labels), started from the COCO run, with ASL + SSCL + PSCL, 448 px.
#
#   python -m scenejax.datasets prepare voc2007
#   python -m scenejax.main --config=configs/coco_sadcl_resnet101.py --workdir=/tmp/coco_sadcl
#   python -m scenejax.main --config=configs/voc2007_sadcl_resnet101.py --workdir=/tmp/voc_sadcl
#
# init_from: [SADCL]'s VOC figure is "COCO-pretrained": the backbone of the
# COCO run (its HF-format export is not needed: set init_from to
# checkpoints/resnet-101 for the ImageNet start). Train on trainval (5,011
# images), evaluate on test (4,952); difficult objects count as present
# (ML-GCN's reading).
# Recipe: as the COCO config, 20 epochs (VOC is 16x smaller).
# Paper: [SADCL] VOC 2007 mAP 96.4 (COCO-pretrained).
# Expected wall time: not measured yet (no accelerator run so far).

from scenejax import config_lib


def get_config(arg=None):
  config = config_lib.base()
  config.task = "multilabel"
  config.dataset = "voc2007"
  config.model = "resnet101"
  config.init_from = "checkpoints/resnet-101"
  config.data.image_size = 448
  config.data.resize_size = 512
  config.num_epochs = 20
  config.batch_size = 32
  config.eval_batch_size = 64
  config.optimizer.update(
    dict(
      learning_rate=1e-4,
      backbone_learning_rate=0.0,
      weight_decay=1e-4,
      schedule="cosine",
    )
  )
  return config_lib.apply_variant(config, arg)
