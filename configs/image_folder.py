# Your own scene images: DIR/train/CLASS/IMAGE, and DIR/test/CLASS/IMAGE or
# DIR/val/... (without one, 10% of each class of train/ is held out:
# config.data.holdout). Class names are the folder names, sorted.
#
#   python -m scenejax.prototype build --images=DIR/train --segmenter=upernet_convnext_small \
#     --init_from=checkpoints/upernet-convnext-small --out=DIR_cosine.npz
#   python -m scenejax.main --config=configs/image_folder.py --config.data.image_folder=DIR \
#     --config.prototype.path=DIR_cosine.npz --workdir=runs/mine
#   python -m scenejax.main --config=configs/image_folder.py:ce --config.data.image_folder=DIR
#
# ResNet-50 from ImageNet weights (the Hugging Face microsoft/resnet-50
# directory in checkpoints/resnet-50), [SP]'s recipe with GLS + BCL; the
# argument lists the loss terms (`ce` needs no prototype). `tiny` trains the
# demo's resnet_tiny from scratch at 32 px instead: a CPU trial of the
# whole path in a minute (`:ce,tiny`).
# Expected: no reference number; your data decides. Paper: none (a recipe
# for your own data, after [SP]'s).

from scenejax import config_lib


def get_config(arg=None):
  config = config_lib.base()
  config.dataset = "image_folder"
  config.data.image_folder = "my_scenes"  # --config.data.image_folder=DIR
  config.model = "resnet50"
  config.init_from = "checkpoints/resnet-50"
  config.num_epochs = 30
  config.optimizer.decay_epochs = (10, 20)
  options = [o for o in (arg or "").split(",") if o]
  if "tiny" in options:
    options.remove("tiny")
    config.model = "resnet_tiny"
    config.init_from = ""
    config.data.update(image_size=32, resize_size=36)
    config.num_epochs = 6
    config.batch_size = 16
    config.eval_batch_size = 32
    config.optimizer.update(
      dict(learning_rate=2e-3, backbone_learning_rate=0.0, schedule="cosine")
    )
    config.log_every_steps = 5
  return config_lib.apply_variant(
    config, ",".join(options) or None, own=("tiny",)
  )
