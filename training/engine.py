"""Loop bodies of the training CLI: ``train_one_epoch`` and ``evaluate``."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from app.inference.preprocess import normalize
from training.data.pairs import PairGenerator
from training.metrics import corner_errors, summarize

__all__ = ["EpochConfig", "NonFiniteLossError", "evaluate", "predict", "train_one_epoch"]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def _never() -> bool:
    return False


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class EpochConfig:
    """How one epoch runs: ``steps`` of ``batch_size`` fresh pairs on ``device``; the learning
    rate set from ``lr_at()`` before every step; gradients clipped to ``clip_grad`` (0: off);
    ``should_stop()`` checked before every step (time budget, other ranks); ``on_step()``
    called after each; a progress bar when ``progress``."""

    batch_size: int
    steps: int
    device: torch.device
    lr_at: Callable[[], float]
    clip_grad: float = 0.0
    should_stop: Callable[[], bool] = _never
    on_step: Callable[[], None] = _nothing
    progress: bool = True


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: PairGenerator,
    config: EpochConfig,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """Up to ``config.steps`` steps of fresh random pairs (mixed precision when ``scaler`` is
    given); returns mean loss, MACE, steps done."""
    cfg = config
    model.train()
    amp = scaler is not None
    losses, maces, done = [], [], 0
    it = range(cfg.steps)
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(it, desc="train", unit="step", mininterval=10, leave=False)
        it = bar
    for _ in it:
        if cfg.should_stop():
            break
        for g in optimizer.param_groups:
            g["lr"] = cfg.lr_at()
        pairs, offsets = generator.sample(cfg.batch_size)
        with torch.autocast(device_type=cfg.device.type, dtype=torch.float16, enabled=amp):
            out = model(pairs)
            loss = criterion(out, offsets)
        if not math.isfinite(loss.item()):
            raise NonFiniteLossError(f"loss is {loss.item()}, stopping")
        optimizer.zero_grad(set_to_none=True)
        if amp:
            scaler.scale(loss).backward()
            if cfg.clip_grad > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if cfg.clip_grad > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            optimizer.step()
        losses.append(loss.item())
        maces.append(corner_errors(out["offsets"].detach(), offsets).mean().item())
        done += 1
        cfg.on_step()
        if bar is not None:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", mace=f"{np.mean(maces[-50:]):.2f}")
    return {
        "train_loss": float(np.mean(losses)) if losses else float("nan"),
        "train_mace": float(np.mean(maces[-max(1, len(maces) // 4) :])) if maces else float("nan"),
        "steps": done,
    }


@torch.inference_mode()
def predict(
    model: nn.Module, patches: np.ndarray, device: torch.device, batch_size: int = 128
) -> dict[str, np.ndarray]:
    """(N, 2, P, P) uint8 pairs -> {"offsets": (N, 4, 2), "iter_offsets": (K, N, 4, 2), ...}."""
    model.eval()
    offs, iters, conf = [], [], []
    for s in range(0, len(patches), batch_size):
        x = normalize(torch.from_numpy(patches[s : s + batch_size]).to(device))
        out = model(x)
        offs.append(out["offsets"].float().cpu())
        iters.append(torch.stack([i["offsets"].float().cpu() for i in out["iterations"]]))
        if "confidence" in out:
            conf.append(out["confidence"].float().cpu())
    res = {"offsets": torch.cat(offs).numpy(), "iter_offsets": torch.cat(iters, 1).numpy()}
    if conf:
        res["confidence"] = torch.cat(conf).numpy()
    return res


def evaluate(
    model: nn.Module,
    patches: np.ndarray,
    offsets: np.ndarray,
    device: torch.device,
    batch_size: int = 128,
) -> dict[str, float]:
    """MACE statistics of ``model`` on a fixed set, plus the mean after each iteration."""
    t = time.perf_counter()
    pred = predict(model, patches, device, batch_size)
    stats = summarize(corner_errors(pred["offsets"], offsets))
    for k, it in enumerate(pred["iter_offsets"]):
        stats[f"iter{k + 1}_mean"] = float(corner_errors(it, offsets).mean())
    stats["seconds"] = time.perf_counter() - t
    return stats
