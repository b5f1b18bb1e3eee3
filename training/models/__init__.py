"""Models: the paper's HomographyNet and a correlation variant; ``build_model`` picks one.

Every model maps (B, 2, P, P) normalised pairs to a dict with ``offsets`` (B, 4, 2) pixels
(corner order TL, TR, BR, BL; (x, y)); classification models add ``probabilities``
(B, 8, bins) and ``confidence`` (B, 4); ``iterations`` lists per-iteration outputs for the loss.
"""

from __future__ import annotations

from torch import nn

from app.inference.preprocess import PATCH_SIZE, RHO
from training.models.corrnet import CorrHomographyNet
from training.models.homographynet import HomographyNet

__all__ = ["MODELS", "CorrHomographyNet", "HomographyNet", "build_model"]

MODELS = ("homographynet", "corrnet")


def build_model(
    name: str, head: str = "regression", patch_size: int = PATCH_SIZE, rho: float = RHO, **kw
) -> nn.Module:
    """Build a model by name ("homographynet" or "corrnet")."""
    if name == "homographynet":
        return HomographyNet(head=head, patch_size=patch_size, rho=rho, **kw)
    if name == "corrnet":
        return CorrHomographyNet(head=head, patch_size=patch_size, rho=rho, **kw)
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")
