"""The papers' tables as data: each row's backbone and the recipe changes it
needs, each column's config variants, the numbers as published ([SP]
Tables 1-4, [PCL] Table 2, SAS-Net's official README)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Backbone:
  """A table row's model and the recipe changes it needs ([SP] §4.1)."""

  model: str  # scenejax.models name
  overrides: tuple[tuple[str, object], ...] = ()


@dataclasses.dataclass(frozen=True)
class Column:
  name: str
  # Config arguments; with several, the cell is the best of them (Table 4).
  variants: tuple[str, ...]
  # SAS-Net's stages: the column whose run this one starts from.
  after: str = ""


@dataclasses.dataclass(frozen=True)
class Table:
  title: str
  configs: dict  # dataset -> the recipe file the runs start from
  backbones: dict  # dataset -> {row name -> Backbone}
  columns: tuple  # the first is the baseline the deltas are taken to
  paper: dict  # (dataset, row) -> one number per column and metric
  metrics: tuple = ("top1",)


_IN1K = (("num_epochs", 100),)  # [SP] §4.1: 100 epochs ...
_IN22K = (("num_epochs", 30),)  # ... 30 for ImageNet-22k backbones

# [SP] Tables 1-4: the eight backbones, ImageNet-pretrained; batch 32, Adam,
# head 1e-3 / backbone 1e-5 (config_lib.base()).
SP_BACKBONES = {
  "resnet50": Backbone(
    "resnet50", (("init_from", "checkpoints/resnet-50"), *_IN1K)
  ),
  "vgg16": Backbone(
    "vgg16", (("init_from", "checkpoints/vgg16.tv_in1k"), *_IN1K)
  ),
  # torchvision's weights, converted (python -m scenejax.convert): IMAGENET1K_V1,
  # the pretrained=True file of the PyTorch code [SP] builds on.
  "mobilenet": Backbone(
    "mobilenetv3_large",
    (
      ("init_from", "checkpoints/mobilenet_v3_large-8738ca79.safetensors"),
      *_IN1K,
    ),
  ),
  # Width 2.0: [SP] Tables 1-3 give "7M" parameters (x1.0 has 2.3M, x2.0
  # 7.4M with the 1000-class head, as the table counts every model).
  "shufflenet": Backbone(
    "shufflenet_v2_x2_0",
    (
      ("init_from", "checkpoints/shufflenetv2_x2_0-8be3c8ee.safetensors"),
      *_IN1K,
    ),
  ),
  # [SP] §4.1: "For the MobileViT model, we increase the initial learning
  # rate by a factor of 10" (both rates).
  "mobilevit": Backbone(
    "mobilevit_s",
    (
      ("init_from", "checkpoints/mobilevit-small"),
      ("optimizer.learning_rate", 1e-2),
      ("optimizer.backbone_learning_rate", 1e-4),
      *_IN1K,
    ),
  ),
  "swin_b": Backbone(
    "swin_b",
    (("init_from", "checkpoints/swin-base-patch4-window7-224-in22k"), *_IN22K),
  ),
  "vit_b16": Backbone(
    "vit_b16",
    (
      (
        "init_from",
        "gs://vit_models/augreg/B_16-i21k-300ep-lr_0.001-aug_medium1-"
        "wd_0.1-do_0.0-sd_0.0.npz",
      ),
      *_IN22K,
    ),
  ),
  "convnext_base": Backbone(
    "convnext_base",
    (("init_from", "checkpoints/convnext-base-224-22k"), *_IN22K),
  ),
}
# The tests' and the demo's tiny grid (synthetic scenes, configs/demo.py).
DEMO_BACKBONES = {"resnet_tiny": Backbone("resnet_tiny")}
SP_CONFIGS = {
  "mit67": "configs/mit67_resnet50.py",
  "sun397": "configs/sun397_convnext.py",
  "synthetic_scenes": "configs/demo.py",
}
SP_ROWS = tuple(SP_BACKBONES)
_SP_ROWS_OF = {
  "mit67": SP_BACKBONES,
  "sun397": SP_BACKBONES,
  "synthetic_scenes": DEMO_BACKBONES,
}

# [SP] Tables 1-4, Top-1 % as published, rows in SP_ROWS order.
_SP1 = {  # baseline, LSR, GLS cosine, GLS Euclidean
  "mit67": [
    (76.493, 76.417, 78.805, 79.403),
    (73.358, 74.078, 74.104, 75.0),
    (69.179, 68.507, 71.045, 71.119),
    (72.090, 73.209, 74.925, 74.701),
    (74.552, 75.522, 78.134, 77.91),
    (88.681, 88.657, 89.03, 88.906),
    (86.194, 86.642, 86.940, 87.015),
    (87.388, 87.239, 88.507, 88.657),
  ],
  "sun397": [
    (60.423, 59.028, 61.863, 62.060),
    (57.204, 57.950, 58.503, 58.715),
    (53.375, 53.043, 55.657, 54.625),
    (58.181, 57.950, 59.385, 60.08),
    (59.033, 59.283, 61.219, 61.28),
    (75.063, 74.826, 77.013, 77.194),
    (75.078, 75.043, 75.758, 75.677),
    (74.675, 75.017, 77.274, 77.239),
  ],
}
_SP2 = {  # baseline, CL, BCL cos/euc mean_inter, cos/euc nonzero_inter_intra
  "mit67": [
    (76.493, 76.642, 77.014, 76.94, 76.866, 76.866),
    (73.358, 74.327, 74.851, 74.701, 74.254, 74.403),
    (69.179, 68.358, 69.478, 68.433, 68.582, 68.433),
    (72.090, 72.564, 73.134, 73.507, 74.104, 73.358),
    (74.552, 74.776, 75.149, 75.149, 76.194, 75.075),
    (88.681, 89.328, 89.179, 89.701, 89.403, 89.328),
    (86.194, 86.342, 86.269, 86.418, 86.493, 86.493),
    (87.388, 87.462, 87.835, 87.537, 88.657, 87.537),
  ],
  "sun397": [
    (60.423, 60.635, 61.033, 60.806, 60.916, 60.821),
    (57.204, 57.09, 57.436, 57.219, 57.108, 57.033),
    (53.375, 53.169, 53.270, 53.713, 54.055, 54.055),
    (58.181, 58.176, 58.761, 58.695, 59.073, 58.332),
    (59.033, 59.264, 59.511, 59.179, 60.121, 59.073),
    (75.063, 74.7, 75.037, 75.088, 75.95, 74.877),
    (75.078, 75.264, 75.416, 75.314, 75.521, 75.275),
    (74.675, 74.632, 74.942, 74.866, 75.592, 74.635),
  ],
}
_SP3 = {  # baseline, GLS + BCL cos/euc mean_inter, cos/euc nonzero_inter_intra
  "mit67": [
    (76.493, 79.104, 78.881, 78.433, 78.806),
    (73.358, 75.0, 75.522, 73.881, 75.746),
    (69.179, 71.045, 70.224, 70.149, 70.223),
    (72.090, 75.298, 74.402, 74.179, 74.328),
    (74.552, 79.104, 77.836, 74.851, 77.910),
    (88.681, 89.03, 89.104, 89.03, 89.179),
    (86.194, 87.388, 86.866, 86.567, 86.791),
    (87.388, 88.805, 88.433, 88.358, 88.433),
  ],
  "sun397": [
    (60.423, 62.086, 62.161, 62.358, 62.045),
    (57.204, 58.519, 58.982, 57.516, 58.872),
    (53.375, 55.869, 56.166, 54.232, 56.317),
    (58.181, 59.788, 60.171, 59.954, 60.171),
    (59.033, 61.274, 61.365, 60.71, 61.476),
    (75.063, 77.118, 77.083, 77.294, 77.108),
    (75.078, 75.682, 75.768, 75.768, 75.597),
    (74.675, 77.259, 77.259, 77.406, 77.229),
  ],
}


def _best(*tables_columns):
  """[SP] Table 4's cells: the best of the given columns of Tables 1-3."""
  out = {}
  for dataset in ("mit67", "sun397"):
    rows = []
    for r in range(len(SP_ROWS)):
      rows.append(
        tuple(
          max(table[dataset][r][c] for c in cols)
          for table, cols in tables_columns
        )
      )
    out[dataset] = rows
  return out


def _paper(per_dataset):
  return {
    (dataset, row): values
    for dataset, rows in per_dataset.items()
    for row, values in zip(SP_ROWS, rows)
  }


_GLS = ("gls", "gls,euclidean")
_BCL = (
  "ce,bcl=mean_inter",
  "ce,bcl=mean_inter,euclidean",
  "ce,bcl=nonzero_inter_intra",
  "ce,bcl=nonzero_inter_intra,euclidean",
)
_GLS_BCL = tuple("gls," + v[3:] for v in _BCL)

# [PCL] Table 2: from scratch, SGD 0.1 cosine, batch 256 (the configs).
PCL_ROWS = ("shufflenet", "resnet18", "resnet34", "resnet50", "densenet121")
# ShuffleNetV2 at width 1.5: [PCL] Table 2 gives 2.85M parameters (x1.5
# with a 365-class head: 2,852,749; x1.0: 1,627,729). [PCL] §5: weight decay
# 1e-4 for it on Places365 (2e-4 for the others, the config's), 5e-4 for
# every model on Places365-small (the config's).
PCL_BACKBONES = {
  "shufflenet": Backbone("shufflenet_v2_x1_5"),
  "resnet18": Backbone("resnet18"),
  "resnet34": Backbone("resnet34"),
  "resnet50": Backbone("resnet50"),
  "densenet121": Backbone("densenet121"),
}
PCL_BACKBONES_PLACES365 = PCL_BACKBONES | {
  "shufflenet": Backbone(
    "shufflenet_v2_x1_5", (("optimizer.weight_decay", 1e-4),)
  ),
}
_PCL2 = {  # (baseline Top-1, Top-5, PCL Top-1, Top-5)
  "places365_1k": [
    (47.67, 78.68, 48.91, 79.76),
    (48.21, 79.22, 49.70, 80.62),
    (48.52, 79.58, 50.72, 81.31),
    (49.66, 80.67, 50.92, 81.70),
    (49.48, 80.87, 51.55, 82.20),
  ],
  "places365": [
    (54.01, 84.05, 54.95, 84.56),
    (54.36, 84.50, 55.12, 84.94),
    (54.84, 84.72, 56.23, 85.79),
    (55.53, 85.85, 56.61, 86.15),
    (55.40, 85.50, 56.84, 86.44),
  ],
}

# SAS-Net (official README): each dataset's one backbone, in three stages.
SASNET_BACKBONES = {
  "ade20k_scenes": {"sasnet_resnet18": Backbone("sasnet_resnet18")},
  "mit67": {"sasnet_resnet50": Backbone("sasnet_resnet50")},
  "sun397": {"sasnet_resnet50": Backbone("sasnet_resnet50")},
  "places365": {"sasnet_resnet18": Backbone("sasnet_resnet18")},
}
_NA = float("nan")  # not published

TABLES = {
  "sp1": Table(
    "[SP] Table 1: Gradient Label Softening (Top-1 %)",
    SP_CONFIGS,
    _SP_ROWS_OF,
    (
      Column("Baseline", ("ce",)),
      Column("LSR", ("lsr",)),
      Column("GLS cosine", ("gls",)),
      Column("GLS Euclidean", ("gls,euclidean",)),
    ),
    _paper(_SP1),
  ),
  "sp2": Table(
    "[SP] Table 2: Batch-level Contrastive Loss (Top-1 %)",
    SP_CONFIGS,
    _SP_ROWS_OF,
    (
      Column("Baseline", ("ce",)),
      Column("CL", ("ce,cl",)),
      Column("BCL cosine mean_inter", (_BCL[0],)),
      Column("BCL Euclidean mean_inter", (_BCL[1],)),
      Column("BCL cosine nonzero_inter_intra", (_BCL[2],)),
      Column("BCL Euclidean nonzero_inter_intra", (_BCL[3],)),
    ),
    _paper(_SP2),
  ),
  "sp3": Table(
    "[SP] Table 3: GLS + BCL (Top-1 %)",
    SP_CONFIGS,
    _SP_ROWS_OF,
    (
      Column("Baseline", ("ce",)),
      *(
        Column(f"GLS + BCL {m} {r}", (v,))
        for (r, m), v in zip(
          [
            ("mean_inter", "cosine"),
            ("mean_inter", "Euclidean"),
            ("nonzero_inter_intra", "cosine"),
            ("nonzero_inter_intra", "Euclidean"),
          ],
          _GLS_BCL,
        )
      ),
    ),
    _paper(_SP3),
  ),
  "sp4": Table(
    "[SP] Table 4: the best of GLS, BCL and GLS + BCL (Top-1 %)",
    SP_CONFIGS,
    _SP_ROWS_OF,
    (
      Column("Baseline", ("ce",)),
      Column("GLS (best)", _GLS),
      Column("BCL (best)", _BCL),
      Column("GLS + BCL (best)", _GLS_BCL),
    ),
    _paper(
      _best(
        (_SP1, (0,)), (_SP1, (2, 3)), (_SP2, (2, 3, 4, 5)), (_SP3, (1, 2, 3, 4))
      )
    ),
  ),
  "pcl2": Table(
    "[PCL] Table 2: pairwise consistency learning (Top-1 / Top-5 %)",
    {
      "places365_1k": "configs/places365_1k_resnet18_pcl.py",
      "places365": "configs/places365_resnet18_pcl.py",
      "synthetic_scenes": "configs/demo.py",
    },
    {
      "places365_1k": PCL_BACKBONES,
      "places365": PCL_BACKBONES_PLACES365,
      "synthetic_scenes": DEMO_BACKBONES,
    },
    (Column("Baseline", ("ce",)), Column("PCL", ("ce,pcl",))),
    {
      (dataset, row): values
      for dataset, rows in _PCL2.items()
      for row, values in zip(PCL_ROWS, rows)
    },
    metrics=("top1", "top5"),
  ),
  "sasnet": Table(
    "SAS-Net (official README): RGB branch, semantic branch, SAS-Net "
    "(Top-1 / Top-2 / Top-5 / MCA %)",
    {
      "ade20k_scenes": "configs/ade20k_sasnet_resnet18.py",
      "mit67": "configs/mit67_sasnet_resnet50.py",
      "sun397": "configs/sun397_sasnet_resnet50.py",
      "places365": "configs/places365_sasnet_resnet18.py",
    },
    SASNET_BACKBONES,
    (
      Column("RGB branch", ("rgb",)),
      Column("Semantic branch", ("semantic",), after="RGB branch"),
      Column("SAS-Net", ("attention",), after="Semantic branch"),
    ),
    {
      ("ade20k_scenes", "sasnet_resnet18"): (
        55.90,
        67.25,
        78.00,
        20.96,
        50.60,
        60.45,
        72.10,
        12.17,
        62.55,
        73.25,
        82.75,
        27.00,
      ),  # fmt: skip
      ("mit67", "sasnet_resnet50"): (*[_NA] * 8, 87.10, _NA, _NA, _NA),
      ("sun397", "sasnet_resnet50"): (*[_NA] * 8, 74.04, _NA, _NA, _NA),
      ("places365", "sasnet_resnet18"): (
        *[_NA] * 8,
        56.51,
        71.57,
        86.00,
        56.51,
      ),  # fmt: skip
    },
    metrics=("top1", "top2", "top5", "mean_class_accuracy"),
  ),
}
