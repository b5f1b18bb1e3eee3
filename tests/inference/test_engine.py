"""OnnxHomographyEngine: checksum, providers, contract and outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from app.inference.engine import (
    ModelLoadError,
    OnnxHomographyEngine,
    file_sha256,
    read_model_card,
    select_providers,
)
from tests.inference.helpers import fixture_model, skimage_gray_stack

P = 128


@pytest.fixture(scope="module")
def regression() -> OnnxHomographyEngine:
    return OnnxHomographyEngine(fixture_model("regression"), warmup_batch_sizes=(1, 4))


@pytest.fixture(scope="module")
def classification() -> OnnxHomographyEngine:
    return OnnxHomographyEngine(fixture_model("classification"))


def copy_model(tmp_path: Path, head: str = "regression") -> Path:
    src = fixture_model(head)
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


class TestSelectProviders:
    def test_unavailable_skipped_cpu_last(self) -> None:
        got = select_providers(
            ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]
        )
        assert got == ["CPUExecutionProvider"]

    def test_order_kept(self) -> None:
        avail = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
        got = select_providers(["CUDAExecutionProvider", "TensorrtExecutionProvider"], avail)
        assert got == ["CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"]


class TestLoad:
    def test_card_and_info(self, regression: OnnxHomographyEngine) -> None:
        path = fixture_model("regression")
        card = json.loads(path.with_suffix(".json").read_text())
        assert regression.card.sha256 == card["sha256"] == file_sha256(path)
        assert regression.card.version == card["sha256"][:12]
        assert regression.kind == "regression"
        assert regression.patch_size == P
        info = regression.info
        assert info["sha256"] == card["sha256"]
        assert info["input"]["shape"] == ["B", 2, P, P]
        assert set(info["warmup_ms"]) == {1, 4}

    def test_providers_reported_are_the_active_ones(self, regression) -> None:
        active = regression.session.get_providers()
        assert regression.providers == active
        assert regression.info["providers"]["active"] == active
        assert "CPUExecutionProvider" in active
        # CUDA requested by default; reported active only if this build really runs it
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            assert "CUDAExecutionProvider" not in active
            assert regression.info["providers"]["requested"][0] == "CUDAExecutionProvider"

    def test_cpu_only(self) -> None:
        e = OnnxHomographyEngine(fixture_model("regression"), ["CPUExecutionProvider"])
        assert e.providers == ["CPUExecutionProvider"]
        assert e.provider_fallback is False

    def test_sha256_mismatch_refused(self, tmp_path: Path) -> None:
        path = copy_model(tmp_path)
        card = json.loads(path.with_suffix(".json").read_text())
        card["sha256"] = "0" * 64
        path.with_suffix(".json").write_text(json.dumps(card))
        with pytest.raises(
            ModelLoadError, match=r"sha256 of .* is [0-9a-f]{64} but its model card"
        ):
            OnnxHomographyEngine(path)

    def test_modified_file_refused(self, tmp_path: Path) -> None:
        path = copy_model(tmp_path)
        with path.open("ab") as f:
            f.write(b"\0")
        with pytest.raises(ModelLoadError, match="sha256"):
            OnnxHomographyEngine(path)

    def test_missing_card(self, tmp_path: Path) -> None:
        path = copy_model(tmp_path)
        path.with_suffix(".json").unlink()
        with pytest.raises(ModelLoadError, match=r"model card .* not found"):
            OnnxHomographyEngine(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ModelLoadError, match="not found"):
            OnnxHomographyEngine(tmp_path / "absent.onnx")

    def test_kind_mismatch_refused(self, tmp_path: Path) -> None:
        path = copy_model(tmp_path, "regression")
        card = json.loads(path.with_suffix(".json").read_text())
        card["architecture"]["head"] = "classification"
        path.with_suffix(".json").write_text(json.dumps(card))
        with pytest.raises(ModelLoadError, match="card says 'classification'"):
            OnnxHomographyEngine(path)

    def test_read_card_malformed(self, tmp_path: Path) -> None:
        path = tmp_path / "m.onnx"
        path.with_suffix(".json").write_text(json.dumps({"name": "x"}))
        with pytest.raises(ModelLoadError, match="malformed"):
            read_model_card(path)


class TestPredictBatch:
    @pytest.mark.parametrize("b", [1, 3, 17])
    def test_regression_shapes(self, regression, b: int) -> None:
        x = np.random.default_rng(b).uniform(-1, 1, (b, 2, P, P)).astype(np.float32)
        out = regression.predict_batch(x)
        assert set(out) == {"offsets"}
        assert out["offsets"].shape == (b, 4, 2)
        assert out["offsets"].dtype == np.float32
        assert np.all(np.isfinite(out["offsets"]))

    @pytest.mark.parametrize("b", [1, 5])
    def test_classification_shapes(self, classification, b: int) -> None:
        x = np.random.default_rng(b).uniform(-1, 1, (b, 2, P, P)).astype(np.float32)
        out = classification.predict_batch(x)
        assert out["offsets"].shape == (b, 4, 2)
        assert out["probabilities"].shape == (b, 8, 21)
        np.testing.assert_allclose(out["probabilities"].sum(-1), 1.0, atol=1e-5)
        conf = out["confidence"]
        assert conf.shape == (b, 4)
        assert np.all((conf > 0) & (conf <= 1))
        # offsets are within [-rho, rho] (softmax expectation over the bins)
        assert np.all(np.abs(out["offsets"]) <= 32.0 + 1e-4)

    def test_float64_input_cast(self, regression) -> None:
        x = np.zeros((2, 2, P, P))
        a = regression.predict_batch(x)["offsets"]
        b = regression.predict_batch(x.astype(np.float32))["offsets"]
        np.testing.assert_array_equal(a, b)

    @pytest.mark.parametrize("shape", [(2, P, P), (1, 3, P, P), (1, 2, 64, 64)])
    def test_wrong_shape(self, regression, shape) -> None:
        with pytest.raises(ValueError, match=r"\(B, 2, 128, 128\)"):
            regression.predict_batch(np.zeros(shape, np.float32))

    def test_matches_offline_evaluation_runner(self, regression) -> None:
        """The engine gives the offline evaluation's predictions (training.evaluate)."""
        from app.inference.preprocess import normalize
        from training.data.fixed import make_fixed_set
        from training.evaluate import load_predictor

        data = make_fixed_set(skimage_gray_stack(), 8, seed=3)
        ref = load_predictor(fixture_model("regression"))(data["patches"])
        got = regression.predict_batch(normalize(data["patches"]))["offsets"]
        np.testing.assert_allclose(got, ref, atol=1e-4)
        assert np.abs(ref).max() > 1.0  # the fixture model is not ~constant
