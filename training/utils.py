"""Small helpers for the CLIs: distributed set-up (torchrun), checkpoints, CSV log, curves."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "append_csv",
    "init_distributed",
    "is_main_process",
    "load_checkpoint",
    "plot_curves",
    "save_checkpoint",
]


def init_distributed(device: str) -> tuple[bool, int, int, torch.device]:
    """Set up DDP when launched by torchrun; returns (distributed, rank, world, device)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", 0))
        if device.startswith("cuda"):
            torch.cuda.set_device(local)
            dev = torch.device("cuda", local)
            backend = "nccl"
        else:
            dev, backend = torch.device("cpu"), "gloo"
        dist.init_process_group(backend=backend)
        return True, rank, world, dev
    return False, 0, 1, torch.device(device)


def is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Atomic torch.save (write then rename)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    return torch.load(Path(path), map_location="cpu", weights_only=False)


def append_csv(path: str | Path, row: dict[str, Any]) -> None:
    """Append one row (header written when the file is new)."""
    path = Path(path)
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def plot_curves(csv_path: str | Path, png_path: str | Path) -> None:
    """Training loss and train/val MACE against samples seen, from the CSV log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with Path(csv_path).open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    x = [float(r["samples"]) for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot(x, [float(r["train_loss"]) for r in rows], marker=".")
    ax[0].set(xlabel="samples", ylabel="train loss", yscale="log", title="loss")
    ax[1].plot(x, [float(r["train_mace"]) for r in rows], marker=".", label="train (running)")
    ax[1].plot(x, [float(r["val_mace"]) for r in rows], marker=".", label="val (fixed set)")
    ax[1].plot(x, [float(r["val_median"]) for r in rows], ls="--", label="val median")
    ax[1].set(xlabel="samples", ylabel="MACE (px)", title="mean average corner error")
    ax[1].legend()
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
