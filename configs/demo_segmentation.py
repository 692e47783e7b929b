# The segmentation demo ([SEG], Jia et al. 2025): the synthetic scenes' label maps,
# learned by a small DeepLabV3+ with the weighted focal + pixel-embedding
# contrastive loss, on CPU, no download.
#
#   python -m scenejax.main --config=configs/demo_segmentation.py --workdir=/tmp/scenejax_seg
#
# 1,200 training maps of 32 px (32 object classes on a grey, unlabeled
# background); mIoU and pixel accuracy on the 400 test maps after each epoch.
# Expected: see the README (figures measured on 2 CPU cores).

from scenejax import config_lib


def get_config(arg=None):
  config = config_lib.base()
  config.task = "segmentation"
  config.dataset = "synthetic_scenes"
  config.data.image_size = 32  # rendered at 32 px, L = 32 objects
  config.model = "deeplabv3plus_resnet_tiny"
  config.num_epochs = 8
  config.batch_size = 32
  config.eval_batch_size = 100
  config.optimizer.update(
    dict(learning_rate=3e-3, backbone_learning_rate=0.0, schedule="poly")
  )
  config.segmentation.update(
    dict(
      crop_size=32,
      base_size=32,
      scale_range=(0.75, 1.5),  # 0.5 would shrink 32-px objects to specks
      aspp_rates=(1, 2, 3),  # the ASPP sees 8x8 maps
      aspp_width=32,
      low_level_width=16,
      decoder_width=32,
      embedding_dim=16,
      num_samples=256,
      per_class=16,
    )
  )
  config.log_every_steps = 10
  return config_lib.apply_variant(config, arg)
