# [SEG] (Jia et al. 2025): DeepLabV3+ on a dilated ImageNet ResNet-50 (output stride
# 16), trained on ADE20K SceneParse150 with the weighted focal loss (median
# frequency weights, γ = 2) + 0.1 × the pixel-embedding contrastive loss.
#
#   python -m scenejax.datasets prepare ade20k_scenes --manual_dir=DIR
#   python -m scenejax.main --config=configs/ade20k_deeplab_resnet50.py --workdir=/tmp/ade20k_deeplab
#   python -m scenejax.segment --segmenter=deeplabv3plus_resnet50 --init_from=/tmp/ade20k_deeplab \
#     --dataset=ade20k_scenes --evaluate --window=512   # single-scale sliding-window mIoU
#   ... --flip --scales=0.5,0.75,1.0,1.25,1.5,1.75     # mmsegmentation's multi-scale + flip mIoU
#
# Recipe (mmsegmentation's DeepLabV3+ ADE20K 80k schedule, as [SEG] gives
# none): SGD 0.01, momentum 0.9, weight decay 5e-4, poly 0.9, batch 16,
# 512x512 crops of images scaled 0.5-2.0x, ~80k iterations (127 epochs of
# 20,210 images at batch 16 = 160k; 64 epochs ≈ 80k).
# Paper: [SEG] reports ADE20K mIoU 47.6; mmsegmentation's DeepLabV3+-R50-D8
# (output stride 8, auxiliary FCN head, cross-entropy) 42.72 (80k) / 43.95
# (160k).
# Expected wall time: not measured yet (no accelerator run so far).
# `:ce` is the cross-entropy baseline, `:focal` drops the contrastive term.

from scenejax import config_lib


def get_config(arg=None):
  config = config_lib.base()
  config.task = "segmentation"
  config.dataset = "ade20k_scenes"
  config.model = "deeplabv3plus_resnet50"
  config.init_from = "checkpoints/resnet-50"  # microsoft/resnet-50, local
  config.num_epochs = 64
  config.batch_size = 16
  config.eval_batch_size = 16
  config.optimizer.update(
    dict(
      name="sgd",
      learning_rate=0.01,
      backbone_learning_rate=0.0,  # one rate (mmsegmentation's)
      weight_decay=5e-4,
      schedule="poly",
    )
  )
  config.log_every_steps = 50
  return config_lib.apply_variant(config, arg)
