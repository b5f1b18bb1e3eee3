"""Output heads shared by the models: regression and the paper's 21-bin classification.

Classification: each of the 8 coordinates of the 4-point offsets gets ``bins`` logits over
evenly spaced bin centres in [-range, range]; the offset is the softmax expectation; the
per-corner confidence is ``max p(x) * max p(y)`` of that corner.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["bin_centers", "classification_outputs", "corner_confidence"]


def bin_centers(bins: int, like: Tensor) -> Tensor:
    """(bins,) centres in [-1, 1] (multiply by the range)."""
    return torch.linspace(-1.0, 1.0, bins, dtype=like.dtype, device=like.device)


def corner_confidence(probs: Tensor) -> Tensor:
    """(B, 8, bins) probabilities -> (B, 4) per-corner confidence."""
    m = probs.amax(dim=-1).reshape(-1, 4, 2)
    return m[..., 0] * m[..., 1]


def classification_outputs(logits: Tensor, value_range: float) -> tuple[Tensor, Tensor]:
    """(B, 8, bins) logits -> (offsets (B, 4, 2) expectation in pixels, probs (B, 8, bins))."""
    probs = torch.softmax(logits.float(), dim=-1)
    off = (probs * bin_centers(logits.shape[-1], probs)).sum(-1) * value_range
    return off.reshape(-1, 4, 2), probs
