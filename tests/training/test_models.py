"""training.models: output shapes, the paper network's structure, the correlation layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from training.losses import HomographyLoss, bin_targets
from training.models import build_model
from training.models.corrnet import local_correlation
from training.models.homographynet import HomographyNet


@pytest.mark.parametrize("name", ["homographynet", "corrnet"])
@pytest.mark.parametrize("head", ["regression", "classification"])
def test_output_shapes_and_loss(name: str, head: str) -> None:
    kw = {"width": 0.25, "fc": 32} if name == "homographynet" else {}
    m = build_model(name, head=head, patch_size=32, rho=8.0, **kw)
    x = torch.randn(3, 2, 32, 32)
    out = m(x)
    assert out["offsets"].shape == (3, 4, 2)
    if head == "classification":
        assert out["probabilities"].shape == (3, 8, 21)
        assert torch.allclose(out["probabilities"].sum(-1), torch.ones(3, 8))
        assert out["confidence"].shape == (3, 4)
        assert (out["confidence"] > 0).all() and (out["confidence"] <= 1).all()
    loss = HomographyLoss(head, 8.0, "l1")(out, torch.rand(3, 4, 2) * 16 - 8)
    loss.backward()
    assert torch.isfinite(loss)


def test_paper_network_structure() -> None:
    m = HomographyNet()
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    assert len(convs) == 8
    assert [c.out_channels for c in convs] == [64, 64, 64, 64, 128, 128, 128, 128]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(mod, nn.BatchNorm2d) for mod in m.modules()) == 8
    assert sum(isinstance(mod, nn.MaxPool2d) for mod in m.modules()) == 3
    assert [mod.p for mod in m.modules() if isinstance(mod, nn.Dropout)] == [0.5, 0.5]
    fcs = [mod for mod in m.modules() if isinstance(mod, nn.Linear)]
    assert fcs[0].in_features == 128 * 16 * 16 and fcs[0].out_features == 1024
    assert sum(p.numel() for p in fcs[0].parameters()) == 33_555_456  # 134 MB in float32
    assert fcs[1].out_features == 8
    assert HomographyNet(head="classification").regressor[-1].out_features == 8 * 21


def test_local_correlation_matches_naive() -> None:
    torch.manual_seed(0)
    fb, fa = torch.randn(2, 5, 6, 7), torch.randn(2, 5, 6, 7)
    r = 2
    got = local_correlation(fb, fa, r)
    assert got.shape == (2, 25, 6, 7)
    k = 0
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            for y in range(6):
                for x in range(7):
                    ty, tx = y + dy, x + dx
                    ref = (
                        (fb[:, :, y, x] * fa[:, :, ty, tx]).sum(1)
                        if (0 <= ty < 6 and 0 <= tx < 7)
                        else torch.zeros(2)
                    )
                    assert torch.allclose(got[:, k, y, x], ref, atol=1e-5)
            k += 1


def test_bin_targets() -> None:
    v = torch.tensor([[-32.0, 0.0, 32.0, 1.6, 100.0, -3.2, 8.0, 0.1]])
    soft = bin_targets(v, 32.0, 21, soft=True)
    centers = torch.linspace(-32, 32, 21)
    assert torch.allclose(soft.sum(-1), torch.ones(1, 8))
    assert torch.allclose((soft * centers).sum(-1), v.clamp(-32, 32), atol=1e-5)
    hard = bin_targets(v, 32.0, 21, soft=False)
    assert hard.sum() == 8 and hard[0, 1, 10] == 1
