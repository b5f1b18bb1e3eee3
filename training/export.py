"""Export a trained checkpoint to ONNX (dynamic batch axis), check it, write its model card.

    python -m training.export runs/corrnet_reg/checkpoint.pth \
        --output models/homographynet_regression.onnx \
        --metrics runs/eval/results.json --metrics-key regression

Contract of the exported file (also written in the card):

* input ``pairs``: float32 (B, 2, P, P); channel 0 patch A, channel 1 patch B, pixel values
  normalised by ``app.inference.preprocess.normalize`` ((v / 255 - 0.5) / 0.5).
* output ``offsets``: float32 (B, 4, 2), pixels of the P x P patch, corners TL, TR, BR, BL, (x, y),
  ``offset = corner in A - corner of the square``: ``a_H_b = solve(corners, corners + offsets)``.
* classification models add ``probabilities`` (B, 8, 21) (first-iteration bins over
  [-rho, rho] per coordinate x0, y0, x1, ... ) and ``confidence`` (B, 4).

The parity check runs ONNX Runtime (CPU) and torch on random pairs and fails if the largest
absolute difference of any output exceeds ``--tolerance`` (1e-4).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from app.inference.preprocess import NORM_MEAN, NORM_STD, PATCH_SIZE, RHO, WORK_SIZE
from training.metrics import FAILURE_PX
from training.models import build_model
from training.utils import load_checkpoint

__all__ = ["ExportWrapper", "check_parity", "export_onnx", "get_args_parser", "main", "sha256"]


class ExportWrapper(nn.Module):
    """Model -> tuple of tensors (offsets[, probabilities, confidence]) for ONNX."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.classification = getattr(model, "head", "regression") == "classification"

    def forward(self, pairs: Tensor) -> tuple[Tensor, ...]:
        out = self.model(pairs)
        if self.classification:
            return out["offsets"], out["probabilities"], out["confidence"]
        return (out["offsets"],)


def output_names(model: nn.Module) -> list[str]:
    if getattr(model, "head", "regression") == "classification":
        return ["offsets", "probabilities", "confidence"]
    return ["offsets"]


def export_onnx(
    model: nn.Module, path: str | Path, patch_size: int = PATCH_SIZE, opset: int = 18
) -> Path:
    """Export ``model`` (eval mode, CPU) with a dynamic batch axis; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(model.eval().cpu()).eval()
    x = torch.randn(2, 2, patch_size, patch_size)
    names = output_names(model)
    try:
        batch = torch.export.Dim("batch", min=1, max=4096)
        prog = torch.onnx.export(
            wrapper,
            (x,),
            dynamo=True,
            input_names=["pairs"],
            output_names=names,
            dynamic_shapes={"pairs": {0: batch}},
            opset_version=opset,
            external_data=False,
        )
        prog.save(str(path), external_data=False)
    except Exception as exc:  # fall back to the TorchScript exporter
        print(f"dynamo export failed ({type(exc).__name__}: {exc}); using the legacy exporter")
        dyn = {"pairs": {0: "batch"}} | {n: {0: "batch"} for n in names}
        torch.onnx.export(
            wrapper,
            (x,),
            str(path),
            dynamo=False,
            input_names=["pairs"],
            output_names=names,
            dynamic_axes=dyn,
            opset_version=17,
        )
    return path


@torch.inference_mode()
def check_parity(
    model: nn.Module,
    path: str | Path,
    patch_size: int = PATCH_SIZE,
    batches: tuple[int, ...] = (1, 5),
    seed: int = 0,
) -> float:
    """Largest |ORT - torch| over all outputs on random normalised pairs of several batch sizes."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wrapper = ExportWrapper(model.eval().cpu()).eval()
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    for b in batches:
        x = torch.rand(b, 2, patch_size, patch_size, generator=g) * 2 - 1
        ref = wrapper(x)
        got = sess.run(None, {"pairs": x.numpy()})
        for r, o in zip(ref, got, strict=True):
            if tuple(r.shape) != o.shape:
                raise AssertionError(f"shape {o.shape} != {tuple(r.shape)}")
            worst = max(worst, float(np.abs(r.numpy() - o).max()))
    return worst


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_card(
    ck: dict,
    model: nn.Module,
    onnx_path: Path,
    parity: float,
    metrics: dict | None,
    data_name: str | None,
) -> dict:
    """The JSON written beside the ONNX file."""
    args, state, kw = ck.get("args", {}), ck.get("state", {}), ck["model_kwargs"]
    P, rho = kw.get("patch_size", PATCH_SIZE), kw.get("rho", RHO)
    head = kw.get("head", "regression")
    outputs = [
        {
            "name": "offsets",
            "shape": ["B", 4, 2],
            "dtype": "float32",
            "meaning": "pixels of the PxP patch; corners TL, TR, BR, BL; (x, y); offset = "
            "corner in A - corner of the square, i.e. a_H_b = solve(corners, "
            "corners + offsets) maps patch-B pixels to patch-A pixels",
        }
    ]
    if head == "classification":
        outputs += [
            {
                "name": "probabilities",
                "shape": ["B", 8, kw.get("bins", 21)],
                "dtype": "float32",
                "meaning": "softmax over 21 bins evenly spaced in [-rho, rho] for x0, y0, x1, ..., "
                "y3 (first iteration, absolute offsets)",
            },
            {
                "name": "confidence",
                "shape": ["B", 4],
                "dtype": "float32",
                "meaning": "per corner: max p(x) * max p(y)",
            },
        ]
    n_params = sum(p.numel() for p in model.parameters())
    samples = state.get("iteration", 0) * args.get("batch_size", 0)
    card = {
        "name": onnx_path.stem,
        "file": onnx_path.name,
        "sha256": sha256(onnx_path),
        "bytes": onnx_path.stat().st_size,
        "architecture": {
            "model": ck["model_name"],
            "head": head,
            "kwargs": kw,
            "parameters": n_params,
            "description": _first_line(sys.modules[type(model).__module__].__doc__),
        },
        "input": {
            "name": "pairs",
            "shape": ["B", 2, P, P],
            "dtype": "float32",
            "channels": ["patch A", "patch B"],
            "normalisation": f"(v / 255 - {NORM_MEAN}) / {NORM_STD} for uint8 gray v",
            "preprocess": "app.inference.preprocess (grayscale, resize; cv2 half-pixel convention)",
        },
        "outputs": outputs,
        "protocol": {
            "work_size": list(args.get("work_size", WORK_SIZE)),
            "patch_size": P,
            "rho": rho,
            "offsets_target": "offsets / rho",
            "corner_pixel_centres": [[0, 0], [P - 1, 0], [P - 1, P - 1], [0, P - 1]],
        },
        "training": {
            "data": data_name or args.get("data_path"),
            "train_photos": ck.get("train_files"),
            "split": "sha1(file name): test 10 %, val 10 %, train 80 % "
            "(training.data.sources.split_by_hash)",
            "iterations": state.get("iteration"),
            "batch_size": args.get("batch_size"),
            "samples": samples,
            "minutes": round(state.get("elapsed", 0.0) / 60, 1),
            "optimizer": args.get("opt"),
            "lr": args.get("lr"),
            "lr_schedule": args.get("lr_schedule"),
            "loss": _loss_name(head, args),
            "device": "cpu (2 cores)" if args.get("device", "cpu") == "cpu" else args.get("device"),
            "val_mace_best": state.get("best_val"),
        },
        "onnx": {
            "opset": _opset(onnx_path),
            "dynamic_axes": {"pairs": [0]} | {o["name"]: [0] for o in outputs},
            "ort_vs_torch_max_abs_diff": parity,
        },
        "metrics": metrics or {},
        "exported": {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    return card


def _loss_name(head: str, args: dict) -> str:
    if head == "classification":
        kind = "one-hot" if args.get("hard_bins") else "two-hot (soft)"
        bins = args.get("bins", 21)
        return f"cross-entropy over {bins} bins per coordinate, {kind} targets, every iteration"
    return f"{args.get('loss')} on offsets / rho, every iteration (weights gamma^(K-1-k))"


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc else ""


def _opset(path: Path) -> int | None:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Export a checkpoint to ONNX", add_help=add_help)
    p.add_argument("checkpoint")
    p.add_argument("--output", required=True, help="path of the .onnx file (card: .json beside)")
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--max-mib", type=float, default=16.0, help="refuse larger files")
    p.add_argument("--metrics", default="", help="results.json of training.evaluate")
    p.add_argument("--metrics-key", default="", help="which entry of results.json")
    p.add_argument("--data-name", default=None, help="training data description for the card")
    return p


def main(args: argparse.Namespace) -> dict:
    ck = load_checkpoint(args.checkpoint)
    model = build_model(ck["model_name"], **ck["model_kwargs"])
    model.load_state_dict(ck["model"])
    model.eval()
    out = export_onnx(model, args.output, ck["model_kwargs"].get("patch_size", PATCH_SIZE))
    parity = check_parity(model, out, ck["model_kwargs"].get("patch_size", PATCH_SIZE))
    print(f"ORT vs torch max abs diff: {parity:.2e}")
    if parity > args.tolerance:
        raise SystemExit(f"parity check failed: {parity:.3e} > {args.tolerance:g}")
    mib = out.stat().st_size / 2**20
    if mib > args.max_mib:
        raise SystemExit(f"{out} is {mib:.1f} MiB > {args.max_mib} MiB")
    metrics = None
    if args.metrics:
        res = json.loads(Path(args.metrics).read_text())
        metrics = {
            "test": res["meta"] | {"failure_px": res["meta"].get("failure_px", FAILURE_PX)},
            "mace": res["results"][args.metrics_key or out.stem],
        }
    card = model_card(ck, model, out, parity, metrics, args.data_name)
    card_path = out.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {out} ({mib:.2f} MiB, sha256 {card['sha256'][:12]}...) and {card_path}")
    return card


def cli() -> None:
    main(get_args_parser().parse_args())


if __name__ == "__main__":
    cli()
