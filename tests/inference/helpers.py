"""Test models for /estimate: small HomographyNets exported by ``training.export`` (ONNX + card),
a fake engine that returns given offsets, and pairs with a known homography.

An untrained network's output hardly depends on its input (its offsets move by ~1e-3 px when A
and B are swapped), so a test comparing two pipelines through it could not fail. The fixture
model is therefore *calibrated*, not trained: BatchNorm statistics are set from real pairs and
the last layer is rescaled so that the offsets spread over several pixels with the input.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import threading
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from app.geometry.points import patch_corners
from app.inference.engine import ModelCard
from app.inference.preprocess import patch_to_image_matrix

PATCH = 128


@cache
def skimage_gray_stack() -> torch.Tensor:
    """(N, 240, 320) uint8: scikit-image's photos, loaded as training loads photos."""
    from training.data.sources import discover_images, load_gray_stack

    return load_gray_stack(discover_images(None))


@cache
def skimage_photo(name: str = "astronaut.png") -> np.ndarray:
    """A colour scikit-image photo as BGR uint8 (what cv2.imread returns)."""
    import skimage

    img = cv2.imread(str(Path(skimage.data_dir) / name), cv2.IMREAD_COLOR)
    assert img is not None, name
    return img


@torch.no_grad()
def _calibrate(model: torch.nn.Module, head: str, seed: int) -> None:
    from training.data.pairs import PairGenerator

    gen = PairGenerator(skimage_gray_stack(), patch_size=PATCH, seed=seed)
    x, _ = gen.sample(96)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    model.train()
    for chunk in x.split(32):
        model(chunk)
    model.eval()
    last = model.regressor[-1]
    feats: list[torch.Tensor] = []
    hook = last.register_forward_hook(lambda _m, inp, _o: feats.append(inp[0]))
    model(x)
    hook.remove()
    h = feats[0]
    y = h @ last.weight.T
    mean, std = y.mean(0), y.std(0).clamp_min(1e-6)
    target = 0.3 if head == "regression" else 3.0  # regression: x rho = ~10 px
    k = target / std
    last.weight.mul_(k[:, None])
    last.bias.copy_(-mean * k)


def export_fixture_model(directory: Path, head: str = "regression", seed: int = 0) -> Path:
    """Export a small calibrated HomographyNet with ``training.export`` (ONNX + model card)."""
    from training.export import check_parity, export_onnx, model_card
    from training.models import build_model

    torch.manual_seed(seed)
    kwargs = {"head": head, "patch_size": PATCH, "rho": 32.0, "width": 0.25, "fc": 64}
    model = build_model("homographynet", **kwargs)
    _calibrate(model, head, seed + 1)
    path = export_onnx(model, Path(directory) / f"fixture_{head}.onnx", PATCH)
    parity = check_parity(model, path, PATCH)
    assert parity < 1e-3, parity
    ck = {"model_name": "homographynet", "model_kwargs": kwargs, "args": {}, "state": {}}
    card = model_card(ck, model, path, parity, None, "calibrated, untrained test fixture")
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return path


@cache
def fixture_model(head: str = "regression") -> Path:
    """The exported fixture model for ``head``, built once per test process (removed at exit)."""
    directory = Path(tempfile.mkdtemp(prefix=f"estimate-{head}-"))
    atexit.register(shutil.rmtree, directory, True)
    return export_fixture_model(directory, head)


class FakeEngine:
    """A model runner that returns fixed offsets (float64, so that the geometry is exact);
    optionally blocks on ``gate`` (to fill the queue) or raises."""

    def __init__(
        self,
        offsets: np.ndarray | None = None,
        kind: str = "regression",
        gate: threading.Event | None = None,
    ) -> None:
        self.offsets = np.zeros((4, 2)) if offsets is None else np.asarray(offsets, np.float64)
        self.gate = gate
        self.calls: list[int] = []
        digest = "0" * 64
        self.card = ModelCard(
            name="fake",
            version="fake-1",
            kind=kind,
            sha256=digest,
            patch_size=PATCH,
            rho=32.0,
            exported_at=None,
            raw={},
        )
        self.providers = ["FakeExecutionProvider"]
        self.info: dict[str, Any] = {"model": "fake"}

    def predict_batch(self, pairs: np.ndarray) -> dict[str, np.ndarray]:
        assert pairs.shape[1:] == (2, PATCH, PATCH), pairs.shape
        self.calls.append(len(pairs))
        if self.gate is not None:
            assert self.gate.wait(30)
        out = {"offsets": np.repeat(self.offsets[None], len(pairs), axis=0)}
        if self.card.kind == "classification":
            out["confidence"] = np.full((len(pairs), 4), 0.5)
        return out


def true_offsets(b_H_a: np.ndarray, size_a: tuple[int, int], size_b: tuple[int, int]) -> np.ndarray:
    """(4, 2) float64 offsets a perfect network would return for images related by ``b_H_a``
    (derived from the preprocess docstring: patch-B corner c shows the content of patch-A point
    c + offset; image_S_patch uses cv2.resize's half-pixel convention)."""
    c = patch_corners(PATCH).astype(np.float64)
    S_a, S_b = patch_to_image_matrix(size_a), patch_to_image_matrix(size_b)
    M = np.linalg.inv(S_a) @ np.linalg.inv(b_H_a) @ S_b  # patch B -> patch A
    ph = np.c_[c, np.ones(4)] @ M.T
    return ph[:, :2] / ph[:, 2:] - c


def apply_h(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(3, 3) and (N, 2) -> (N, 2)."""
    ph = np.c_[pts, np.ones(len(pts))] @ H.T
    return ph[:, :2] / ph[:, 2:]


def encode(img: np.ndarray, ext: str = ".png") -> bytes:
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()
