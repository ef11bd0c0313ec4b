"""Training losses, one per module (see each module's docstring for what it optimises)."""

from model_export.training.losses.alignment import AlignmentLoss, alignment_loss
from model_export.training.losses.clear import CLEARLoss, clear_loss
from model_export.training.losses.continual_pretraining import ContinualPretrainingLoss
from model_export.training.losses.infonce import InfoNCELoss, info_nce
from model_export.training.losses.mlm import MLMHead, mask_tokens, mlm_loss
from model_export.training.losses.optical import OpticalLoss, optical_loss, sinkhorn

__all__ = [
    "AlignmentLoss",
    "CLEARLoss",
    "ContinualPretrainingLoss",
    "InfoNCELoss",
    "MLMHead",
    "OpticalLoss",
    "alignment_loss",
    "clear_loss",
    "info_nce",
    "mask_tokens",
    "mlm_loss",
    "optical_loss",
    "sinkhorn",
]
