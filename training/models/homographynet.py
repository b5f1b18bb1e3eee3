"""HomographyNet exactly as in DeTone et al. 2016 ("Deep Image Homography Estimation").

Eight 3x3 convolutions with BatchNorm + ReLU, channels 64-64-64-64-128-128-128-128, a 2x2
max-pool after every two convolutions (but the last two), dropout 0.5 after conv8 and after
FC1 (1024 units), then 8 outputs (regression, offsets / rho) or 8 x 21 logits (classification).
For 128x128 inputs the FC1 layer has 128*16*16*1024 + 1024 = 33,555,456 parameters (134 MB).
"""

from __future__ import annotations

from torch import Tensor, nn

from app.inference.preprocess import PATCH_SIZE, RHO
from training.models.heads import classification_outputs, corner_confidence

__all__ = ["HomographyNet"]


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]


class HomographyNet(nn.Module):
    """(B, 2, P, P) normalised pair -> dict(offsets (B, 4, 2) px, ...); see the module doc."""

    def __init__(
        self,
        head: str = "regression",
        patch_size: int = PATCH_SIZE,
        rho: float = RHO,
        bins: int = 21,
        width: float = 1.0,
        fc: int = 1024,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if head not in ("regression", "classification"):
            raise ValueError(f"head must be regression or classification, got {head!r}")
        if patch_size % 8:
            raise ValueError("patch_size must be a multiple of 8")
        self.head, self.rho, self.bins, self.patch_size = head, float(rho), bins, patch_size
        c1, c2 = int(64 * width), int(128 * width)
        chans = [2, c1, c1, c1, c1, c2, c2, c2, c2]
        layers: list[nn.Module] = []
        for i in range(8):
            layers += _conv(chans[i], chans[i + 1])
            if i in (1, 3, 5):
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        s = patch_size // 8
        out = 8 if head == "regression" else 8 * bins
        self.regressor = nn.Sequential(
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(c2 * s * s, fc),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Linear(fc, out),
        )

    def forward(self, x: Tensor) -> dict[str, Tensor | list]:
        y = self.regressor(self.features(x))
        if self.head == "regression":
            off = y.reshape(-1, 4, 2) * self.rho
            return {"offsets": off, "iterations": [{"offsets": off}]}
        logits = y.reshape(-1, 8, self.bins)
        off, probs = classification_outputs(logits, self.rho)
        it = {"offsets": off, "logits": logits, "base": off.new_zeros(off.shape), "range": self.rho}
        return {
            "offsets": off,
            "probabilities": probs,
            "confidence": corner_confidence(probs),
            "iterations": [it],
        }
