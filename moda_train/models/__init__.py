"""The MoDA multi-modal diffusion transformer (MMDiT) and its configuration."""

from moda_train.models.config import ModelConfig
from moda_train.models.moda import MoDA, count_parameters

__all__ = ["MoDA", "ModelConfig", "count_parameters"]
