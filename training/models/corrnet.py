"""CorrHomographyNet: shared encoder + local correlation + iterative 4-point refinement.

Our variant of HomographyNet (regression or the paper's 21-bin classification head), small
enough to ship (about 1-2 M parameters) and trainable on a CPU:

1. A shared (siamese) conv encoder gives L2-normalised features of patch A and patch B at 1/8
   (and 1/4) of the patch resolution.
2. Iteration k (k = 1..K): with the current offsets d (zero at first), ``a_H_b =
   square_to_quad(square + d)``; A's features are warped into B's frame (``grid_sample`` at
   ``a_H_b u``), a local correlation volume of radius ``radius`` ((2r+1)^2 channels) is built
   between B's features and the warped A features, and a small CNN head predicts the residual
   offsets (regression: 8 values times ``range_k``; classification: 8 x bins logits over
   [-range_k, range_k]). ``range_k = rho * ranges[k]``.
3. ``d <- d + residual``; d is detached between iterations (as in RAFT/IHN).

All ops export to ONNX (opset >= 16, GridSample).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from app.geometry.points import image_corners_torch, transform_points_torch
from app.inference.preprocess import PATCH_SIZE, RHO
from training.geometry import square_to_quad
from training.models.heads import classification_outputs, corner_confidence

__all__ = ["CorrHomographyNet", "local_correlation"]


def _cbr(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(True),
    )


def _window_index(h: int, w: int, radius: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """(h*w, K) flat indices of u + d for the K = (2r+1)^2 shifts d (row-major dy, dx), and mask."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    r = torch.arange(-radius, radius + 1)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    ty = ys.reshape(-1, 1) + dy.reshape(1, -1)
    tx = xs.reshape(-1, 1) + dx.reshape(1, -1)
    valid = (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)
    idx = (ty.clamp(0, h - 1) * w + tx.clamp(0, w - 1)).to(device)
    return idx, valid.to(device)


def local_correlation(fb: Tensor, fa: Tensor, radius: int) -> Tensor:
    """(B, C, h, w) x2 -> (B, (2r+1)^2, h, w): ``<fb(u), fa(u + d)>`` for |d|_inf <= r.

    Shifts d run row-major over (dy, dx); positions outside the map give 0. Computed as one
    batched matmul (all pairs) and a gather, much faster on CPU than (2r+1)^2 shifted products.
    """
    B, _, h, w = fb.shape
    corr = torch.bmm(fb.flatten(2).transpose(1, 2), fa.flatten(2))  # (B, hw, hw)
    idx, valid = _window_index(h, w, radius, fb.device)
    out = corr.gather(2, idx.unsqueeze(0).expand(B, -1, -1)) * valid.to(corr.dtype)
    return out.transpose(1, 2).reshape(B, -1, h, w)


class Encoder(nn.Module):
    """(B, 1, P, P) -> {4: (B, dim, P/4, P/4), 8: (B, dim, P/8, P/8)} L2-normalised features."""

    def __init__(
        self, c: Sequence[int] = (16, 32, 64), dim: int = 64, stride4: bool = True
    ) -> None:
        super().__init__()
        c1, c2, c3 = c
        self.s4 = nn.Sequential(_cbr(1, c1, 2), _cbr(c1, c2, 2), _cbr(c2, c2))
        self.s8 = nn.Sequential(_cbr(c2, c3, 2), _cbr(c3, c3))
        self.p4 = nn.Conv2d(c2, dim, 1) if stride4 else None  # only when an iteration uses 1/4
        self.p8 = nn.Conv2d(c3, dim, 1)

    def forward(self, x: Tensor) -> dict[int, Tensor]:
        f4 = self.s4(x)
        out = {8: F.normalize(self.p8(self.s8(f4)), dim=1)}
        if self.p4 is not None:
            out[4] = F.normalize(self.p4(f4), dim=1)
        return out


class IterHead(nn.Module):
    """(B, (2r+1)^2, P/s, P/s) correlation -> (B, out) down to a 2x2 map, then a linear layer."""

    def __init__(self, cin: int, spatial: int, out: int, width: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = [_cbr(cin, width)]
        s, c = spatial, width
        while s > 2:
            cn = min(2 * c, 128)
            layers.append(_cbr(c, cn, 2))
            s, c = s // 2, cn
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(c * s * s, out)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.body(x).flatten(1))


class CorrHomographyNet(nn.Module):
    """(B, 2, P, P) normalised pair -> dict(offsets (B, 4, 2) px, ...); see the module docstring."""

    def __init__(
        self,
        head: str = "regression",
        patch_size: int = PATCH_SIZE,
        rho: float = RHO,
        bins: int = 21,
        strides: Sequence[int] = (8, 8, 8),
        ranges: Sequence[float] = (1.0, 0.5, 0.25),
        radius: int = 4,
        head_width: int = 64,
    ) -> None:
        super().__init__()
        if head not in ("regression", "classification"):
            raise ValueError(f"head must be regression or classification, got {head!r}")
        if len(strides) != len(ranges) or any(s not in (4, 8) for s in strides):
            raise ValueError("strides (each 4 or 8) and ranges must have the same length")
        self.head, self.patch_size, self.rho, self.bins = head, patch_size, float(rho), bins
        self.strides, self.ranges, self.radius = tuple(strides), tuple(ranges), radius
        self.encoder = Encoder(stride4=4 in self.strides)
        out = 8 if head == "regression" else 8 * bins
        cin = (2 * radius + 1) ** 2
        self.heads = nn.ModuleList(
            IterHead(cin, patch_size // s, out, head_width) for s in self.strides
        )

    def _warp(self, fa: Tensor, a_H_b: Tensor, stride: int) -> Tensor:
        """Sample A's features at ``a_H_b u`` for every feature cell u of B (cell centres)."""
        B, _, h, w = fa.shape
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=fa.dtype, device=fa.device),
            torch.arange(w, dtype=fa.dtype, device=fa.device),
            indexing="ij",
        )
        cells = torch.stack([xs, ys], -1).reshape(1, -1, 2)
        half = (stride - 1) / 2.0
        pix = cells * stride + half  # patch pixel coordinates of the cell centres
        pa = transform_points_torch(a_H_b, pix.expand(B, -1, -1))
        fc = (pa - half) / stride  # feature coordinates in A
        scale = torch.tensor([2.0 / (w - 1), 2.0 / (h - 1)], dtype=fa.dtype, device=fa.device)
        grid = (fc * scale - 1.0).reshape(B, h, w, 2)
        return F.grid_sample(fa, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False) -> Any:
        """As nn.Module's, ignoring the 1/4-scale projection of older checkpoints when unused."""
        if self.encoder.p4 is None:
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith("encoder.p4.")}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, x: Tensor) -> dict[str, Tensor | list]:
        B = x.shape[0]
        feats = self.encoder(torch.cat([x[:, :1], x[:, 1:2]], dim=0))
        sq = image_corners_torch((self.patch_size, self.patch_size), x)
        d = x.new_zeros(B, 4, 2)
        iters: list[dict] = []
        probs = None
        for k, (stride, head) in enumerate(zip(self.strides, self.heads, strict=True)):
            fa, fb = feats[stride][:B], feats[stride][B:]
            base = d.detach()
            if k == 0:
                fa_w = fa
            else:
                a_H_b = square_to_quad((sq + base).float(), float(self.patch_size - 1))
                fa_w = self._warp(fa, a_H_b.to(fa.dtype), stride)
            y = head(local_correlation(fb, fa_w, self.radius))
            rng = self.rho * self.ranges[k]
            if self.head == "regression":
                d = base + y.reshape(B, 4, 2) * rng
                iters.append({"offsets": d})
            else:
                logits = y.reshape(B, 8, self.bins)
                res, probs_k = classification_outputs(logits, rng)
                d = base + res
                probs = probs_k if probs is None else probs
                iters.append({"offsets": d, "logits": logits, "base": base, "range": rng})
        out: dict[str, Tensor | list] = {"offsets": d, "iterations": iters}
        if probs is not None:  # the first iteration's bins: absolute offsets in [-rho, rho]
            out["probabilities"] = probs
            out["confidence"] = corner_confidence(probs)
        return out
