# SAS-Net ResNet-18 (López-Cifuentes et al., Pattern Recognition 2020) on
# ADE20K scene recognition (1,055 scene classes), trained in its three stages
# from SAS-Net's top-3 semantic files.
#
#   python -m scenejax.datasets prepare ade20k_scenes --manual_dir=DIR
#   for split in train test; do python -m scenejax.segment --segmenter=upernet_convnext_small \
#     --init_from=checkpoints/upernet-convnext-small --dataset=ade20k_scenes --split=$split \
#     --top3 --out=semantic/ade20k_top3; done
#   python -m scenejax.main --config=configs/ade20k_sasnet_resnet18.py:rgb --workdir=/tmp/ade20k_sasnet_rgb
#   python -m scenejax.main --config=configs/ade20k_sasnet_resnet18.py:semantic --workdir=/tmp/ade20k_sasnet_semantic
#   python -m scenejax.main --config=configs/ade20k_sasnet_resnet18.py:attention --workdir=/tmp/ade20k_sasnet_attention
#   ... :rgb,gls,bcl  :semantic,gls,bcl  :attention,gls,bcl  with --workdir=/tmp/NAME_gls_bcl_STAGE
#       (the stage's init_from default; SAS-Net with GLS + BCL: the
#       prototype prototypes/ade20k_{metric}.npz from `python -m scenejax.prototype build
#       --dataset=ade20k_scenes`, the dataset's own label maps)
#
# Each stage starts from the previous stage's workdir (the defaults below);
# the rgb stage from ImageNet (microsoft/resnet-18, local). Settings:
# `config_lib.sasnet_paper_training` (the official YAMLs, SGD for DFW;
# batch 100 as published: on 8 devices use --config.batch_size=96).
# Epochs per stage are not published: 60 (12k steps of 100) is our choice.
# Expected wall time: not measured yet (no accelerator run so far).
# Paper (official README, ADE20K): RGB branch alone Top-1 55.90 / Top-2 67.25
# / Top-5 78.00 / MCA 20.96; semantic alone 50.60 / 60.45 / 72.10 / 12.17;
# SAS-Net Top-1 62.55, Top-2 73.25, Top-5 82.75, MCA 27.00.

from scenejax import config_lib


def get_config(arg=None):
  config = config_lib.sasnet_paper_training(config_lib.base())
  config.dataset = "ade20k_scenes"
  config.model = "sasnet_resnet18"
  config.num_epochs = 60
  config.sasnet.semantic_dir = "semantic/ade20k_top3"
  return config_lib.sasnet_recipe(
    config,
    arg,
    name="ade20k_sasnet",
    pretrained="checkpoints/resnet-18",
    prototype_path="prototypes/ade20k_{metric}.npz",
  )
