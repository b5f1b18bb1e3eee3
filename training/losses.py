"""Losses over the models' per-iteration outputs.

Regression: ``mse`` (the paper's L2 on offsets / rho) or ``l1`` (on offsets / rho).
Classification: cross-entropy over the 21 bins of each coordinate; ``hard`` targets (the nearest
bin, the paper) or ``soft`` two-hot targets (linear interpolation between the two nearest bins,
so the expectation is unbiased). Iterations are weighted ``gamma ** (K - 1 - k)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["HomographyLoss", "bin_targets"]


def bin_targets(values: Tensor, value_range: float, bins: int, soft: bool) -> Tensor:
    """(B, 8) offsets (px) -> (B, 8, bins) target distributions over [-range, range]."""
    pos = ((values / value_range).clamp(-1, 1) + 1) * 0.5 * (bins - 1)
    if not soft:
        return F.one_hot(pos.round().long(), bins).to(values.dtype)
    lo = pos.floor().clamp_max(bins - 2)
    w = pos - lo
    t = F.one_hot(lo.long(), bins).to(values.dtype) * (1 - w)[..., None]
    return t + F.one_hot(lo.long() + 1, bins).to(values.dtype) * w[..., None]


class HomographyLoss(nn.Module):
    """``loss(outputs, offsets (B, 4, 2))`` -> scalar."""

    def __init__(
        self, head: str, rho: float, kind: str = "mse", gamma: float = 0.8, soft: bool = True
    ) -> None:
        super().__init__()
        if kind not in ("mse", "l1"):
            raise ValueError(f"unknown regression loss {kind!r}")
        self.head, self.rho, self.kind, self.gamma, self.soft = head, float(rho), kind, gamma, soft

    def forward(self, outputs: dict, offsets: Tensor) -> Tensor:
        its = outputs["iterations"]
        K = len(its)
        total = offsets.new_zeros(())
        for k, it in enumerate(its):
            w = self.gamma ** (K - 1 - k)
            if self.head == "regression":
                diff = (it["offsets"].float() - offsets) / self.rho
                loss = diff.pow(2).mean() if self.kind == "mse" else diff.abs().mean()
            else:
                logits = it["logits"].float()
                res = (offsets - it["base"]).reshape(-1, 8)
                tgt = bin_targets(res, it["range"], logits.shape[-1], self.soft)
                loss = -(tgt * torch.log_softmax(logits, dim=-1)).sum(-1).mean()
            total = total + w * loss
        return total
