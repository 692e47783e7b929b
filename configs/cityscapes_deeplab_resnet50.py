# [SEG] (Jia et al. 2025): DeepLabV3+ on a dilated ImageNet ResNet-50 on
# Cityscapes (19 classes), weighted focal + 0.1 × pixel-embedding
# contrastive loss.
#
#   python -m scenejax.datasets prepare cityscapes --manual_dir=DIR  # the two zips
#   python -m scenejax.main --config=configs/cityscapes_deeplab_resnet50.py --workdir=/tmp/cityscapes_deeplab
#   python -m scenejax.segment --segmenter=deeplabv3plus_resnet50 --init_from=/tmp/cityscapes_deeplab \
#     --dataset=cityscapes --evaluate --size=1024 --window=768   # full-size sliding-window mIoU
#
# Recipe (DeepLabV3+'s own Cityscapes setting, square 768-px crops; [SEG]
# gives none): SGD 0.01, momentum 0.9, weight decay 5e-4, poly 0.9, batch
# 8, images scaled 0.5-2.0x from 2048x1024, 215 epochs of 2,975 images
# (= 80k iterations, mmsegmentation's schedule).
# Paper: [SEG] reports Cityscapes mIoU 83.1; mmsegmentation's DeepLabV3+-R50-D8
# (output stride 8, auxiliary head, cross-entropy, 512x1024 crops, 80k)
# 80.09.
# Expected wall time: not measured yet (no accelerator run so far).

from scenejax import config_lib


def get_config(arg=None):
  config = config_lib.base()
  config.task = "segmentation"
  config.dataset = "cityscapes"
  config.model = "deeplabv3plus_resnet50"
  config.init_from = "checkpoints/resnet-50"  # microsoft/resnet-50, local
  config.num_epochs = 215
  config.batch_size = 8
  config.eval_batch_size = 8
  config.optimizer.update(
    dict(
      name="sgd",
      learning_rate=0.01,
      backbone_learning_rate=0.0,
      weight_decay=5e-4,
      schedule="poly",
    )
  )
  config.segmentation.update(crop_size=768, base_size=1024)
  config.log_every_steps = 50
  return config_lib.apply_variant(config, arg)
