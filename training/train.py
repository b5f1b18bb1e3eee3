"""Train HomographyNet (or our correlation variant) on pairs generated on the fly.

The default recipe is the paper's: SGD momentum 0.9, lr 0.005 divided by 10 every 30k
iterations, 90k iterations of batch 64, L2 loss, the exact network::

    python -m training.train --data-path /data/coco --output-dir runs/paper

Several GPUs (data parallel; the batch size is per GPU)::

    torchrun --nproc_per_node=4 -m training.train --data-path /data/coco --output-dir runs/ddp

The shipped model (CPU, time-boxed, cosine schedule over the time budget)::

    python -m training.train --data-path ../shared/data/photos --model corrnet --loss l1 \
        --opt adamw --lr 2e-3 --wd 1e-4 --lr-schedule cosine --batch-size 32 \
        --iterations 1000000 --time-budget-min 30 --output-dir runs/corrnet_reg

Images are decoded once (grayscale, 320x240) into a uint8 tensor on the training device; pairs
are rendered there in batches (kornia), so a GPU is not starved by the CPU. Photos are split by
file-name hash into train / val / test (``training.data.sources.split_by_hash``); validation
uses a fixed seeded set from the val photos. Every epoch writes ``checkpoint.pth`` (model,
optimiser, scaler, counters, args), appends ``log.csv`` and redraws ``curves.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from app.inference.preprocess import PATCH_SIZE, RHO, WORK_SIZE
from training.data.fixed import make_fixed_set
from training.data.pairs import PairGenerator
from training.data.sources import discover_images, load_gray_stack, split_by_hash
from training.engine import EpochConfig, NonFiniteLossError, evaluate, train_one_epoch
from training.losses import HomographyLoss
from training.models import MODELS, build_model
from training.utils import (
    append_csv,
    init_distributed,
    load_checkpoint,
    plot_curves,
    save_checkpoint,
)

__all__ = ["get_args_parser", "main", "model_kwargs"]


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train HomographyNet", add_help=add_help)
    a = p.add_argument
    a("--data-path", default=None, help="image folder or MS-COCO root (default: skimage data)")
    a("--coco-splits", nargs="*", default=None, help="COCO splits to use, e.g. train2014")
    a("--val-fraction", type=float, default=0.1)
    a("--test-fraction", type=float, default=0.1)
    a("--val-pairs", type=int, default=500, help="size of the fixed validation set")
    a("--val-seed", type=int, default=1)
    a("--model", default="homographynet", choices=MODELS)
    a("--head", default="regression", choices=("regression", "classification"))
    a("--width", type=float, default=1.0, help="homographynet channel multiplier")
    a("--strides", type=int, nargs="+", default=[8, 8, 8], help="corrnet: stride per iteration")
    a("--ranges", type=float, nargs="+", default=[1.0, 0.5, 0.25], help="corrnet: range/rho")
    a("--radius", type=int, default=4, help="corrnet: correlation radius")
    a("--patch-size", type=int, default=PATCH_SIZE)
    a("--rho", type=float, default=RHO)
    a("--work-size", type=int, nargs=2, default=list(WORK_SIZE), metavar=("W", "H"))
    a("--flip", action="store_true", help="random horizontal flips of the source images")
    a("--loss", default="mse", choices=("mse", "l1"), help="regression loss")
    a("--hard-bins", action="store_true", help="classification: one-hot (paper) bin targets")
    a("--gamma", type=float, default=0.8, help="weight decay of earlier iterations' losses")
    a("--batch-size", type=int, default=64, help="per process")
    a("--iterations", type=int, default=90_000)
    a("--steps-per-epoch", type=int, default=1000, help="checkpoint + validation period")
    a("--time-budget-min", type=float, default=0.0, help="stop (and anneal) by this wall time")
    a("--opt", default="sgd", choices=("sgd", "adamw"))
    a("--lr", type=float, default=0.005)
    a("--momentum", type=float, default=0.9)
    a("--wd", type=float, default=0.0)
    a("--lr-schedule", default="step", choices=("step", "cosine"))
    a("--lr-step-size", type=int, default=30_000, help="step schedule: iterations per step")
    a("--lr-gamma", type=float, default=0.1)
    a("--warmup", type=float, default=0.02, help="cosine: warm-up fraction")
    a("--clip-grad", type=float, default=0.0)
    a("--amp", action="store_true", help="mixed precision (CUDA only)")
    a("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    a("--seed", type=int, default=0)
    a("--output-dir", default="runs/train")
    a("--resume", default="", help="checkpoint to resume ('auto': output-dir/checkpoint.pth)")
    a("--no-progress", action="store_true")
    return p


def model_kwargs(args: argparse.Namespace) -> dict:
    """Constructor arguments of the model chosen by ``args`` (stored in checkpoints)."""
    kw: dict = {"head": args.head, "patch_size": args.patch_size, "rho": args.rho}
    if args.model == "homographynet":
        kw["width"] = args.width
    else:
        kw.update(strides=list(args.strides), ranges=list(args.ranges), radius=args.radius)
    return kw


def lr_factor(args: argparse.Namespace, iteration: int, progress: float) -> float:
    """Multiplier of the base lr: paper step schedule, or warm-up + cosine over ``progress``."""
    if args.lr_schedule == "step":
        return args.lr_gamma ** (iteration // args.lr_step_size)
    if progress < args.warmup:
        return max(progress / args.warmup, 1e-3)
    q = (progress - args.warmup) / max(1e-9, 1 - args.warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(q, 1.0)))


def main(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    distributed, rank, world, device = init_distributed(args.device)
    main_proc = rank == 0
    torch.manual_seed(args.seed + rank)
    out_dir = Path(args.output_dir)
    if main_proc:
        out_dir.mkdir(parents=True, exist_ok=True)
    progress = main_proc and not args.no_progress

    # data
    files = discover_images(args.data_path, args.coco_splits)
    splits = split_by_hash(files, args.val_fraction, args.test_fraction)
    work = tuple(args.work_size)
    train_imgs = load_gray_stack(splits["train"], work, progress=progress).to(device)
    gen = PairGenerator(
        train_imgs, args.patch_size, args.rho, seed=args.seed + 1000 * rank, flip=args.flip
    )
    val = None
    if main_proc:
        val_imgs = load_gray_stack(splits["val"], work)
        val = make_fixed_set(val_imgs, args.val_pairs, args.val_seed, args.patch_size, args.rho)
        print(
            f"images: {len(files)} found, train {len(splits['train'])} "
            f"val {len(splits['val'])} test {len(splits['test'])}; device {device}, world {world}"
        )

    # model, loss, optimiser
    kw = model_kwargs(args)
    model = build_model(args.model, **kw).to(device)
    core = model
    if distributed:
        model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    criterion = HomographyLoss(args.head, args.rho, args.loss, args.gamma, soft=not args.hard_bins)
    params = [p for p in model.parameters() if p.requires_grad]
    if args.opt == "sgd":
        optimizer = torch.optim.SGD(
            params, lr=args.lr, momentum=args.momentum, weight_decay=args.wd
        )
    else:
        optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.wd)
    amp = args.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if amp else None

    state = {"iteration": 0, "epoch": 0, "elapsed": 0.0, "best_val": float("inf")}
    resume = str(out_dir / "checkpoint.pth") if args.resume == "auto" else args.resume
    if resume and Path(resume).exists():
        ck = load_checkpoint(resume)
        core.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        if scaler is not None and ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        state.update(ck["state"])
        if main_proc:
            print(f"resumed from {resume} at iteration {state['iteration']}")

    budget = args.time_budget_min * 60.0
    t0 = time.time() - state["elapsed"]

    def progress_frac() -> float:
        p = state["iteration"] / max(1, args.iterations)
        if budget > 0:
            p = max(p, (time.time() - t0) / budget)
        return p

    def should_stop() -> bool:
        stop = progress_frac() >= 1.0
        if distributed:  # all ranks stop together
            flag = torch.tensor([float(stop)], device=device)
            torch.distributed.all_reduce(flag)
            stop = bool(flag.item() > 0)
        return stop

    def lr_at() -> float:
        return args.lr * lr_factor(args, state["iteration"], progress_frac())

    def on_step() -> None:
        state["iteration"] += 1

    if main_proc:
        (out_dir / "args.json").write_text(json.dumps(vars(args), indent=2))
    last_val: dict = {}
    epoch = EpochConfig(
        batch_size=args.batch_size,
        steps=args.steps_per_epoch,
        device=device,
        lr_at=lr_at,
        clip_grad=args.clip_grad,
        should_stop=should_stop,
        on_step=on_step,
        progress=progress,
    )
    while not should_stop():
        try:
            tr = train_one_epoch(model, criterion, optimizer, gen, epoch, scaler)
        except NonFiniteLossError as exc:
            print(f"[rank {rank}] {exc}")
            break
        state["epoch"] += 1
        state["elapsed"] = time.time() - t0
        if main_proc:
            last_val = evaluate(core, val["patches"], val["offsets"], device)
            state["best_val"] = min(state["best_val"], last_val["mean"])
            row = {
                "epoch": state["epoch"],
                "iteration": state["iteration"],
                "samples": state["iteration"] * args.batch_size * world,
                "minutes": round(state["elapsed"] / 60, 3),
                "lr": lr_at(),
                "train_loss": tr["train_loss"],
                "train_mace": tr["train_mace"],
                "val_mace": last_val["mean"],
                "val_median": last_val["median"],
                "val_p95": last_val["p95"],
                "val_failures": last_val["failures"],
            }
            append_csv(out_dir / "log.csv", row)
            plot_curves(out_dir / "log.csv", out_dir / "curves.png")
            ck = {
                "model": core.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "state": dict(state),
                "args": vars(args),
                "model_name": args.model,
                "model_kwargs": kw,
                "train_files": len(splits["train"]),
            }
            save_checkpoint(ck, out_dir / "checkpoint.pth")
            print(
                json.dumps(
                    {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
                ),
                flush=True,
            )
        if tr["steps"] == 0:
            break
    if distributed:
        torch.distributed.destroy_process_group()
    return {"state": state, "val": last_val}


def cli() -> None:
    main(get_args_parser().parse_args())


if __name__ == "__main__":
    cli()
