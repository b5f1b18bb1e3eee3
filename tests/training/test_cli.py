"""The training, export and evaluation CLIs end to end on a tiny folder and a tiny model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from training import evaluate, export, train
from training.utils import load_checkpoint

TINY = [
    "--patch-size",
    "32",
    "--rho",
    "8",
    "--work-size",
    "64",
    "48",
    "--val-pairs",
    "8",
    "--threads",
    "2",
    "--no-progress",
]


@pytest.fixture(scope="module")
def trained(tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    args = train.get_args_parser().parse_args(
        [
            "--data-path",
            str(tiny_folder),
            "--model",
            "corrnet",
            "--head",
            "classification",
            "--batch-size",
            "4",
            "--iterations",
            "2",
            "--steps-per-epoch",
            "1",
            "--opt",
            "adamw",
            "--lr",
            "1e-3",
            "--lr-schedule",
            "cosine",
            "--output-dir",
            str(out),
            *TINY,
        ]
    )
    train.main(args)
    return out


def test_train_writes_checkpoint_csv_png(trained: Path) -> None:
    for name in ("checkpoint.pth", "log.csv", "curves.png", "args.json"):
        assert (trained / name).is_file(), name
    rows = list(csv.DictReader((trained / "log.csv").open()))
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r["val_mace"])) for r in rows)
    ck = load_checkpoint(trained / "checkpoint.pth")
    assert ck["state"]["iteration"] == 2 and ck["model_name"] == "corrnet"
    assert {"model", "optimizer", "args", "model_kwargs"} <= set(ck)


def test_resume_continues(trained: Path, tiny_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    out.mkdir()
    (out / "checkpoint.pth").write_bytes((trained / "checkpoint.pth").read_bytes())
    args = train.get_args_parser().parse_args(
        [
            "--data-path",
            str(tiny_folder),
            "--model",
            "corrnet",
            "--head",
            "classification",
            "--batch-size",
            "4",
            "--iterations",
            "3",
            "--steps-per-epoch",
            "1",
            "--opt",
            "adamw",
            "--output-dir",
            str(out),
            "--resume",
            "auto",
            *TINY,
        ]
    )
    res = train.main(args)
    assert res["state"]["iteration"] == 3 and res["state"]["epoch"] == 3
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [int(r["iteration"]) for r in rows] == [3]


def test_paper_net_trains_two_steps(tiny_folder: Path, tmp_path: Path) -> None:
    args = train.get_args_parser().parse_args(
        [
            "--data-path",
            str(tiny_folder),
            "--width",
            "0.25",
            "--batch-size",
            "2",
            "--iterations",
            "2",
            "--steps-per-epoch",
            "2",
            "--output-dir",
            str(tmp_path),
            *TINY,
        ]
    )
    res = train.main(args)
    assert res["state"]["iteration"] == 2 and np.isfinite(res["val"]["mean"])


def test_export_parity_and_card(trained: Path, tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    card = export.main(
        export.get_args_parser().parse_args(
            [str(trained / "checkpoint.pth"), "--output", str(path)]
        )
    )
    assert card["onnx"]["ort_vs_torch_max_abs_diff"] <= 1e-4
    assert card["sha256"] == export.sha256(path)
    saved = json.loads(path.with_suffix(".json").read_text())
    assert saved["sha256"] == card["sha256"] and saved["input"]["shape"] == ["B", 2, 32, 32]
    m = onnx.load(str(path))
    assert [o.name for o in m.graph.output] == ["offsets", "probabilities", "confidence"]
    dim0 = m.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim0.dim_param and not dim0.dim_value  # dynamic batch axis


def test_evaluate_cli(trained: Path, tiny_folder: Path, tmp_path: Path) -> None:
    args = evaluate.get_args_parser().parse_args(
        [
            "--data-path",
            str(tiny_folder),
            "--test-set",
            str(tmp_path / "t.npz"),
            "--pairs",
            "12",
            "--patch-size",
            "32",
            "--rho",
            "8",
            "--work-size",
            "64",
            "48",
            "--model",
            f"tiny={trained / 'checkpoint.pth'}",
            "--output-dir",
            str(tmp_path / "ev"),
        ]
    )
    res = evaluate.main(args)["results"]
    assert set(res) == {"tiny", "identity", "ORB+RANSAC", "SIFT+RANSAC"}
    assert all(r["n"] == 12 for r in res.values())
    for name in ("results.json", "results.md", "errors.png"):
        assert (tmp_path / "ev" / name).is_file()
    again = evaluate.main(args)["results"]  # the cached set gives the same numbers
    assert again["identity"]["mean"] == res["identity"]["mean"]


def test_classical_baseline_recovers_homography() -> None:
    """SIFT+RANSAC on a textured pair recovers the labelled offsets (validates the direction)."""
    from tests.training.conftest import textured
    from training.data.pairs import PairGenerator

    img = torch.from_numpy(textured(5, 240, 320).mean(-1).astype(np.uint8))[None]
    pairs, off = PairGenerator(img, 128, 24.0, seed=2).sample(3, raw=True)
    pairs = pairs.round().clamp(0, 255).to(torch.uint8).numpy()
    for i in range(3):
        est = evaluate.classical_offsets(pairs[i, 0], pairs[i, 1], "sift")
        assert est is not None
        assert np.linalg.norm(est - off[i].numpy(), axis=-1).mean() < 1.0


MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.mark.parametrize("name", ["homographynet_regression", "homographynet_classification"])
def test_shipped_model_card(name: str) -> None:
    onnx_path, card_path = MODELS / f"{name}.onnx", MODELS / f"{name}.json"
    if not onnx_path.exists():
        pytest.skip(f"{onnx_path.name} not shipped yet")
    card = json.loads(card_path.read_text())
    assert card["sha256"] == export.sha256(onnx_path)
    assert onnx_path.stat().st_size <= 16 * 2**20
    assert card["input"]["shape"] == ["B", 2, 128, 128] and card["protocol"]["rho"] == 32.0
