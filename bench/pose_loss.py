"""Throughput of the homography pose loss against a direct transcription of the paper's formula.

    .venv/bin/python bench/pose_loss.py               # batches 1e4, 1e5, 1e6 (1.5 to 3 minutes)
    .venv/bin/python bench/pose_loss.py --quick       # batches 1e4, 1e5 (about 15 s)
    .venv/bin/python bench/pose_loss.py --threads 1   # the 1-thread control
    .venv/bin/python bench/pose_loss.py --batches 1e6 --repeats 9

Both implementations get the same inputs (positions and unnormalised quaternions, per-pair
xmin/xmax) and are timed alternately in the same process with 2 torch threads (``--threads``;
on a loaded machine, see BENCHMARKS.md, the 1-thread control is the steadier one); the figure is
the best of the repeats (as ``timeit`` reports: on a shared machine the slower runs measure the
other processes), in pairs per second. "forward" is the per-pair loss and its mean;
"fwd+bwd" adds the backward pass to the estimated position and quaternion. The transcription
builds rotation matrices from the quaternions, forms R_rel = R̂Rᵀ and t = R̂(c - ĉ) with batched
matmuls and uses the trace formulas (tr A = 6 - 2 tr R_rel, i.e. 4(1 - cos θ)).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.geometry.pose_loss import homography_pose_loss


def _matrix(q: torch.Tensor) -> torch.Tensor:
    q = torch.nn.functional.normalize(q, dim=-1)
    w, x, y, z = q.unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )  # fmt: skip
    return torch.stack(rows, -1).unflatten(-1, (3, 3))


def transcription(c_est, q_est, c_gt, q_gt, xmin, xmax) -> torch.Tensor:
    """The paper's closed form written straight from its equations (the baseline)."""
    R_est, R_gt = _matrix(q_est), _matrix(q_gt)
    R_rel = R_est @ R_gt.transpose(-1, -2)
    t = (R_est @ (c_gt - c_est).unsqueeze(-1)).squeeze(-1)
    tr_A = 6.0 - 2.0 * R_rel.diagonal(dim1=-2, dim2=-1).sum(-1)
    # 2 tᵀ(I - R_rel)n with n = (0, 0, -1)
    tr_B = 2.0 * ((t * R_rel[..., :, 2]).sum(-1) - t[..., 2])
    tr_C = (t * t).sum(-1)
    loss = tr_A + tr_B * torch.log(xmax / xmin) / (xmax - xmin) + tr_C / (xmin * xmax)
    return loss.mean()


def ours(c_est, q_est, c_gt, q_gt, xmin, xmax) -> torch.Tensor:
    return homography_pose_loss(c_est, q_est, c_gt, q_gt, xmin, xmax)


def make_inputs(n: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(n)
    q_gt = torch.nn.functional.normalize(torch.randn(n, 4, generator=g, dtype=dtype), dim=-1)
    q_est = q_gt + 0.05 * torch.randn(n, 4, generator=g, dtype=dtype)
    c_gt = 10 * torch.randn(n, 3, generator=g, dtype=dtype)
    c_est = c_gt + 0.5 * torch.randn(n, 3, generator=g, dtype=dtype)
    xmin = 1 + 4 * torch.rand(n, generator=g, dtype=dtype)
    xmax = xmin * (1 + 20 * torch.rand(n, generator=g, dtype=dtype))
    return c_est, q_est, c_gt, q_gt, xmin, xmax


def timed(fn: Callable, args: tuple[torch.Tensor, ...], backward: bool) -> float:
    if backward:
        c_est = args[0].detach().requires_grad_()
        q_est = args[1].detach().requires_grad_()
        args = (c_est, q_est, *args[2:])
    start = time.perf_counter()
    loss = fn(*args)
    if backward:
        loss.backward()
    else:
        float(loss)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batches 1e4 and 1e5 only")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--batches", type=float, nargs="+", help="batch sizes, e.g. 1e6")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = (10**4, 10**5) if args.quick else (10**4, 10**5, 10**6)
    if args.batches:
        batches = tuple(int(b) for b in args.batches)
    repeats = args.repeats or 5

    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, best of {repeats}")
    header = "| dtype | batch | pass | transcription (pairs/s) | ours (pairs/s) | ours / transcr. |"
    print(header)
    print("|---|---:|---|---:|---:|---:|")
    for dtype in (torch.float32, torch.float64):
        for n in batches:
            inputs = make_inputs(n, dtype)
            a, b = ours(*inputs), transcription(*inputs)
            assert torch.allclose(a, b, rtol=1e-3 if dtype == torch.float32 else 1e-9), (a, b)
            for backward in (False, True):
                for fn in (ours, transcription):  # warm-up
                    timed(fn, inputs, backward)
                t_ref, t_ours = [], []
                for _ in range(repeats):  # alternate, so both see the same machine load
                    t_ref.append(timed(transcription, inputs, backward))
                    t_ours.append(timed(ours, inputs, backward))
                r, o = min(t_ref), min(t_ours)
                name = "fwd+bwd" if backward else "forward"
                dt = str(dtype).removeprefix("torch.")
                print(f"| {dt} | {n:.0e} | {name} | {n / r:.3g} | {n / o:.3g} | {r / o:.2f}x |")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
