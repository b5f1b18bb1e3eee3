"""The paper's 5-step pair generation, batched in torch/kornia (runs where the images live).

For each pair: pick an image ``I`` (already grayscale at the working resolution), a square patch
of side ``P`` at top-left ``(x0, y0)`` kept ``rho`` from the border, move its four corners by
uniform offsets in [-rho, rho]; with ``a_H_b = solve(square, square + offsets)`` (patch-local
pixel coordinates), patch A is ``I`` cropped at the square and patch B is the crop at the same
square of ``I`` warped by ``inv(a_H_b)`` (the paper's ``H_BA``), i.e. ``B(u) = A(a_H_b u)``:
the content of B at square corner ``i`` is the content of A at ``corner_i + offset_i``.
Labels: ``offsets`` (B, 4, 2) pixels, corner order TL, TR, BR, BL, (x, y).
"""

from __future__ import annotations

import torch
from kornia.geometry.transform import warp_perspective
from torch import Tensor

from app.geometry.four_point import solve_homography_torch
from app.geometry.points import image_corners_torch
from app.inference.preprocess import PATCH_SIZE, RHO, normalize

__all__ = ["PairGenerator", "render_pairs"]


def render_pairs(images: Tensor, top_left: Tensor, offsets: Tensor, patch_size: int) -> Tensor:
    """Crop patch A and render patch B.

    images: (B, 1, H, W) float pixel values; top_left: (B, 2) integer (x0, y0) of the square;
    offsets: (B, 4, 2) float pixels. Returns (B, 2, P, P) float pixel values (A, B).
    """
    B, _, H, W = images.shape
    P = patch_size
    x0, y0 = top_left[:, 0].long(), top_left[:, 1].long()
    ar = torch.arange(P, device=images.device)
    rows = (y0[:, None] + ar[None]).clamp(0, H - 1)  # (B, P)
    cols = (x0[:, None] + ar[None]).clamp(0, W - 1)
    idx = rows[:, :, None] * W + cols[:, None, :]  # (B, P, P)
    patch_a = images.reshape(B, H * W).gather(1, idx.reshape(B, -1)).reshape(B, 1, P, P)
    # B(u) = I(T a_H_b u) with T the translation by (x0, y0); kornia takes dst_H_src = inv(T a_H_b)
    sq = image_corners_torch((P, P), offsets).expand(B, 4, 2)
    a_H_b = solve_homography_torch(sq, sq + offsets)
    T = torch.eye(3, dtype=offsets.dtype, device=offsets.device).repeat(B, 1, 1)
    T[:, 0, 2], T[:, 1, 2] = x0.to(offsets.dtype), y0.to(offsets.dtype)
    patchB_H_image = torch.linalg.inv(T @ a_H_b)
    patch_b = warp_perspective(
        images,
        patchB_H_image.to(images.dtype),
        (P, P),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )
    return torch.cat([patch_a, patch_b], dim=1)


class PairGenerator:
    """Endless random pairs from an in-memory image stack (on its device).

    images: (N, H, W) uint8 tensor. ``sample(B)`` returns ``(pairs, offsets)``:
    pairs (B, 2, P, P) float32 normalised (see ``app.inference.preprocess.normalize``) unless
    ``raw=True`` (pixel values 0..255), offsets (B, 4, 2) float32 pixels.
    """

    def __init__(
        self,
        images: Tensor,
        patch_size: int = PATCH_SIZE,
        rho: float = RHO,
        seed: int = 0,
        flip: bool = False,
    ) -> None:
        if images.ndim != 3 or images.dtype != torch.uint8:
            raise ValueError(
                f"expected (N, H, W) uint8 images, got {tuple(images.shape)} {images.dtype}"
            )
        _, H, W = images.shape
        need = patch_size + 2 * int(rho)
        if need > W or need > H:
            raise ValueError(f"images {W}x{H} too small for patch {patch_size} with rho {rho}")
        self.images, self.patch_size, self.rho, self.flip = images, patch_size, float(rho), flip
        self.device = images.device
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    def _rand(self, *shape: int) -> Tensor:
        return torch.rand(*shape, generator=self.generator, device=self.device)

    def draw(self, batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
        """Random (image index (B,), top-left (B, 2) long, offsets (B, 4, 2) float32)."""
        N, H, W = self.images.shape
        m, P = int(self.rho), self.patch_size
        idx = (self._rand(batch_size) * N).long().clamp_max(N - 1)
        span = torch.tensor([W - P - 2 * m + 1, H - P - 2 * m + 1], device=self.device)
        tl = (self._rand(batch_size, 2) * span).long().clamp_max(span - 1) + m
        offsets = (self._rand(batch_size, 4, 2) * 2.0 - 1.0) * self.rho
        return idx, tl, offsets

    def render(self, idx: Tensor, tl: Tensor, offsets: Tensor, raw: bool = False) -> Tensor:
        """(B,) indices, (B, 2) top-left, (B, 4, 2) offsets -> (B, 2, P, P) float32."""
        imgs = self.images[idx].unsqueeze(1).float()
        if self.flip:
            f = self._rand(idx.shape[0]) < 0.5
            imgs = torch.where(f[:, None, None, None], imgs.flip(-1), imgs)
        pairs = render_pairs(imgs, tl, offsets, self.patch_size)
        return pairs if raw else normalize(pairs)

    def sample(self, batch_size: int, raw: bool = False) -> tuple[Tensor, Tensor]:
        """A fresh random batch: (pairs (B, 2, P, P), offsets (B, 4, 2))."""
        idx, tl, offsets = self.draw(batch_size)
        return self.render(idx, tl, offsets, raw=raw), offsets
