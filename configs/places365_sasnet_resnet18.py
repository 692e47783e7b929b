# SAS-Net ResNet-18 (López-Cifuentes et al., Pattern Recognition 2020) on
# Places365-Standard (1,803,460 training images; TFDS places365_small, the
# 256 px release), trained in its three stages from SAS-Net's top-3 files.
#
#   python -m scenejax.datasets prepare places365
#   for split in train test; do python -m scenejax.segment --segmenter=upernet_convnext_small \
#     --init_from=checkpoints/upernet-convnext-small --dataset=places365 --split=$split \
#     --size=256 --top3 --out=semantic/places365_top3; done
#   python -m scenejax.main --config=configs/places365_sasnet_resnet18.py:rgb --workdir=/tmp/places365_sasnet_rgb
#   python -m scenejax.main --config=configs/places365_sasnet_resnet18.py:semantic --workdir=/tmp/places365_sasnet_semantic
#   python -m scenejax.main --config=configs/places365_sasnet_resnet18.py:attention --workdir=/tmp/places365_sasnet_attention
#   ... :rgb,gls,bcl  :semantic,gls,bcl  :attention,gls,bcl  with --workdir=/tmp/NAME_gls_bcl_STAGE
#       (the stage's init_from default; SAS-Net with GLS + BCL; a
#       365-class prototype built with `python -m scenejax.prototype build --dataset=places365`
#       as prototypes/places365_{metric}.npz)
#
# The official code's issue #9: Places365's training masks were never
# published; the segment command above writes them (1.8 M images: plan
# for it; it resumes where it stopped). Each stage starts from the
# previous stage's workdir (the defaults below); the rgb stage from
# ImageNet (microsoft/resnet-18, local). Settings:
# `config_lib.sasnet_paper_training` (the official YAMLs, SGD for DFW;
# batch 100 as published: on 8 devices use --config.batch_size=96).
# Epochs per stage are not published: 8 (144k steps of 100) is our choice.
# Expected wall time: not measured yet (no accelerator run so far).
# Paper (official README, Places365): SAS-Net ResNet-18 Top-1 56.51,
# Top-2 71.57, Top-5 86.00, MCA 56.51.

from scenejax import config_lib


def get_config(arg=None):
  config = config_lib.sasnet_paper_training(config_lib.base())
  config.dataset = "places365"
  config.model = "sasnet_resnet18"
  config.num_epochs = 8
  config.sasnet.semantic_dir = "semantic/places365_top3"
  return config_lib.sasnet_recipe(
    config,
    arg,
    name="places365_sasnet",
    pretrained="checkpoints/resnet-18",
    prototype_path="prototypes/places365_{metric}.npz",
  )
