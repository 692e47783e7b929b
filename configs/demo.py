# The embedded demo: synthetic scenes, no download.
#
#   python -m scenejax.main --config=configs/demo.py --workdir=/tmp/scenejax_demo
#   python -m scenejax.main --config=configs/demo.py:ce   (baseline: plain CE)
#
# SAS-Net (López-Cifuentes et al. 2020) on the same scenes, its semantic
# input from the segmentation demo's segmenter (train that first):
#   python -m scenejax.main --config=configs/demo_segmentation.py --workdir=/tmp/scenejax_seg
#   python -m scenejax.main --config=configs/demo.py:sasnet --workdir=/tmp/scenejax_sasnet
# with the semantic input precomputed as SAS-Net's top-3 PNGs instead (the
# same numbers on these unaugmented scenes):
#   for split in train test; do python -m scenejax.segment --segmenter=deeplabv3plus_resnet_tiny \
#     --init_from=/tmp/scenejax_seg --dataset=synthetic_scenes --split=$split --size=32 \
#     --top3 --out=/tmp/scenejax_top3; done
#   python -m scenejax.main --config=configs/demo.py:sasnet,semantic_files --workdir=/tmp/scenejax_sasnet_files
# or its staged recipe, each stage from the previous one's workdir:
#   python -m scenejax.main --config=configs/demo.py:sasnet_rgb --workdir=/tmp/sas_rgb
#   python -m scenejax.main --config=configs/demo.py:sasnet_semantic --workdir=/tmp/sas_sem --config.init_from=/tmp/sas_rgb
#   python -m scenejax.main --config=configs/demo.py:sasnet_attention --workdir=/tmp/sas_att --config.init_from=/tmp/sas_sem
#
# Builds the cosine similarity prototype from the training label maps, trains
# resnet_tiny with GLS soft labels + BCL (mean_inter) for 12 epochs, and
# evaluates Top-1 / mean class accuracy after each epoch.
# Expected: 35-60 s on 2 CPU cores (no accelerator); Top-1 0.693 (CE alone,
# :ce, reaches 0.700 on this small task; see README).

from scenejax import config_lib


def get_config(arg=None):
  config = config_lib.base()
  config.dataset = "synthetic_scenes"
  config.data.image_size = 32  # rendered at 32 px: 8 classes, L = 32
  config.model = "resnet_tiny"
  config.num_epochs = 12
  config.batch_size = 64
  config.eval_batch_size = 128
  config.optimizer.update(
    dict(learning_rate=2e-3, backbone_learning_rate=0.0, schedule="cosine")
  )
  config.loss.num_soft_epochs = 6  # GLS STEP (the paper uses 20 of 100)
  config.log_every_steps = 5
  first, _, rest = (arg or "").partition(",")
  if first in SASNET_STAGES:
    config.model = "sasnet_resnet_tiny"
    config.sasnet.segmenter = "deeplabv3plus_resnet_tiny"
    config.sasnet.segmenter_init_from = "/tmp/scenejax_seg"
    config_lib.sasnet_stage(config, SASNET_STAGES[first])
    options = rest.split(",") if rest else []
    if "semantic_files" in options:  # the segment command's top-3 PNGs
      options.remove("semantic_files")
      config.sasnet.update(
        dict(
          segmenter="",
          segmenter_init_from="",
          semantic_dir="/tmp/scenejax_top3",
        )
      )
    arg = ",".join(options)
  return config_lib.apply_variant(
    config, arg, own=(*SASNET_STAGES, "semantic_files")
  )


SASNET_STAGES = {
  "sasnet": "all",
  "sasnet_rgb": "rgb",
  "sasnet_semantic": "semantic",
  "sasnet_attention": "attention",
}
