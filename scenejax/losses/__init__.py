"""Loss kernels, one paper family per module (optax's layout), re-exported
here: `scenejax.losses.bcl_loss` is `scenejax.losses.similarity.bcl_loss`.

- `similarity`: [SP] Gradient Label Softening, the Batch-level Contrastive
  Loss, and the label-smoothing and classic contrastive-loss baselines.
- `consistency`: [PCL] pairwise consistency (KL between the original and
  the erased image's predictions).
- `segmentation`: [SEG] weighted focal loss and pixel-embedding contrastive
  loss.
- `multilabel`: [ASL] and [SADCL]'s SSCL and PSCL.

Pure functions of arrays: jittable, no Python branching on traced values,
inputs of any float dtype (bf16 included) computed in float32.
"""

from scenejax.losses.consistency import (
  kl_consistency,
  pcl_loss,
)
from scenejax.losses.multilabel import (
  PSCL_UNACTIVATED,
  asymmetric_loss,
  label_contrastive_loss,
  prototype_contrastive_loss,
)
from scenejax.losses.segmentation import (
  PIXEL_CONTRASTIVE_FORMS,
  nearest_labels,
  pairwise_contrastive_loss,
  pixel_contrastive_loss,
  sample_pixels,
  weighted_focal_loss,
)
from scenejax.losses.similarity import (
  BCL_METRICS,
  BCL_PAIRINGS,
  BCL_REDUCTIONS,
  bcl_loss,
  contrastive_loss,
  gls_label_matrix,
  label_smoothing_targets,
  max_off_diagonal,
  prediction_similarity,
)

__all__ = [
  "BCL_METRICS",
  "BCL_PAIRINGS",
  "BCL_REDUCTIONS",
  "PIXEL_CONTRASTIVE_FORMS",
  "PSCL_UNACTIVATED",
  "asymmetric_loss",
  "bcl_loss",
  "contrastive_loss",
  "gls_label_matrix",
  "kl_consistency",
  "label_contrastive_loss",
  "label_smoothing_targets",
  "max_off_diagonal",
  "nearest_labels",
  "pairwise_contrastive_loss",
  "pcl_loss",
  "pixel_contrastive_loss",
  "prediction_similarity",
  "prototype_contrastive_loss",
  "sample_pixels",
  "weighted_focal_loss",
]
