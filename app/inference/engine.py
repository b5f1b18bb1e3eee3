"""HomographyNet on ONNX Runtime: the model runner behind ``/estimate`` (no HTTP here).

The runner is built once at start-up. It reads the model card (the JSON that
``training.export`` writes beside the ``.onnx``), checks the file's sha256 against the card
*before* creating a session, opens the session on the configured execution providers (those
this ONNX Runtime build offers, in the configured order), reports which providers are really
active (``session.get_providers()``: onnxruntime-gpu falls back to CPU silently on a CUDA/cuDNN
mismatch) and runs a warm-up batch.

Network contract (see :mod:`app.inference.preprocess` and the card):

* input ``pairs``: float32 ``(B, 2, P, P)``, channel 0 patch A, channel 1 patch B, normalised;
* output ``offsets``: float32 ``(B, 4, 2)`` pixels of the patch, corners TL, TR, BR, BL, (x, y),
  ``offset_i = corner_i in A - corner_i of the square``;
* classification models add ``probabilities`` ``(B, 8, bins)`` and ``confidence`` ``(B, 4)``.

Example:
    >>> engine = OnnxHomographyEngine("models/homographynet_regression.onnx")  # doctest: +SKIP
    >>> engine.predict_batch(np.zeros((3, 2, 128, 128), np.float32))["offsets"].shape  # +SKIP
    (3, 4, 2)
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import structlog

__all__ = [
    "HomographyEngine",
    "ModelCard",
    "ModelLoadError",
    "OnnxHomographyEngine",
    "file_sha256",
    "read_model_card",
    "select_providers",
]

Kind = Literal["regression", "classification"]

log = structlog.get_logger("app.inference")


class ModelLoadError(RuntimeError):
    """The model cannot be served: file or card missing, checksum mismatch, wrong contract."""


class HomographyEngine(Protocol):
    """What the server needs of a model runner (the ONNX engine, or a fake in tests)."""

    card: ModelCard
    providers: list[str]
    info: dict[str, Any]

    def predict_batch(self, pairs: np.ndarray) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class ModelCard:
    """The fields of the model card the server relies on.

    ``version`` is the card's ``version`` when it has one, else the first 12 hex digits of the
    file's sha256 (the weights' identity); ``patch_size`` P and ``rho`` come from the card's
    ``protocol``.
    """

    name: str
    version: str
    kind: Kind
    sha256: str
    patch_size: int
    rho: float
    exported_at: str | None
    raw: dict[str, Any]

    @classmethod
    def from_dict(cls, card: dict[str, Any], source: str = "model card") -> ModelCard:
        try:
            digest = str(card["sha256"]).lower()
            protocol = card.get("protocol", {})
            arch = card.get("architecture", {})
            kind = arch.get("head") or arch.get("kwargs", {}).get("head") or "regression"
            patch = int(protocol.get("patch_size") or card["input"]["shape"][-1])
            rho = float(protocol.get("rho", 32.0))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelLoadError(f"{source}: missing or malformed field ({exc!r})") from exc
        if kind not in ("regression", "classification"):
            raise ModelLoadError(f"{source}: unknown head {kind!r}")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ModelLoadError(f"{source}: sha256 {digest!r} is not 64 hex digits")
        return cls(
            name=str(card.get("name", "homographynet")),
            version=str(card.get("version") or digest[:12]),
            kind=kind,
            sha256=digest,
            patch_size=patch,
            rho=rho,
            exported_at=(card.get("exported") or {}).get("at"),
            raw=card,
        )


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_model_card(model_path: str | Path) -> ModelCard:
    """The card beside ``model_path`` (same stem, ``.json``)."""
    card_path = Path(model_path).with_suffix(".json")
    if not card_path.is_file():
        raise ModelLoadError(
            f"model card {card_path} not found: the card (with the file's sha256) must lie "
            "beside the ONNX file (training.export writes both)"
        )
    try:
        card = json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"model card {card_path} is not readable JSON ({exc})") from exc
    if not isinstance(card, dict):
        raise ModelLoadError(f"model card {card_path} is not a JSON object")
    return ModelCard.from_dict(card, str(card_path))


def select_providers(requested: Sequence[str], available: Sequence[str]) -> list[str]:
    """The requested execution providers this build offers, in the requested order; the CPU
    provider is appended as the last resort (it is always available)."""
    chosen = [p for p in requested if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


class OnnxHomographyEngine:
    """A HomographyNet ONNX model on ONNX Runtime, checked and warmed up at construction.

    Args:
        model_path: the ``.onnx`` file; its card is ``model_path.with_suffix(".json")``.
        providers: execution providers in order of preference (unavailable ones are skipped;
            CPU is always the fallback).
        threads: ONNX Runtime intra-op threads (0: its default, one per core).
        warmup_batch_sizes: batch sizes run once at construction.
        spin: let ONNX Runtime's worker threads spin-wait between runs (lower latency, but
            they burn CPU while idle; off by default on a shared CPU).

    Raises:
        ModelLoadError: missing file or card, sha256 mismatch, or a model whose inputs and
            outputs do not follow the contract above.
    """

    def __init__(
        self,
        model_path: str | Path,
        providers: Sequence[str] = ("CUDAExecutionProvider", "CPUExecutionProvider"),
        *,
        threads: int = 0,
        warmup_batch_sizes: Sequence[int] = (1,),
        spin: bool = False,
    ) -> None:
        import onnxruntime as ort

        path = Path(model_path)
        if not path.is_file():
            raise ModelLoadError(f"model file {path} not found")
        self.path = path
        self.card = read_model_card(path)
        digest = file_sha256(path)
        if digest != self.card.sha256:
            raise ModelLoadError(
                f"sha256 of {path} is {digest} but its model card says {self.card.sha256}: "
                "refusing to load a file that is not the one the card describes"
            )
        available = ort.get_available_providers()
        self.requested_providers = list(providers)
        chosen = select_providers(providers, available)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        if threads:
            so.intra_op_num_threads = threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), so, providers=chosen)
        except Exception as exc:  # ORT raises its own exception types
            raise ModelLoadError(f"ONNX Runtime cannot load {path}: {exc}") from exc
        self.providers: list[str] = list(self.session.get_providers())
        self.provider_fallback = self.providers[0] != chosen[0]
        if self.provider_fallback:
            log.warning(
                "onnx_provider_fallback", model=str(path), wanted=chosen, active=self.providers
            )
        self._check_contract()
        self.warmup_ms: dict[int, float] = {}
        for b in warmup_batch_sizes:
            t = time.perf_counter()
            self.predict_batch(np.zeros((b, 2, self.patch_size, self.patch_size), np.float32))
            self.warmup_ms[int(b)] = round((time.perf_counter() - t) * 1e3, 2)
        self.info: dict[str, Any] = {
            "model": self.card.name,
            "version": self.card.version,
            "kind": self.card.kind,
            "sha256": self.card.sha256,
            "exported_at": self.card.exported_at,
            "path": str(path),
            "input": {"name": self.input_name, "shape": ["B", 2, self.patch_size, self.patch_size]},
            "outputs": self.output_names,
            "providers": {
                "requested": self.requested_providers,
                "available": list(available),
                "active": self.providers,
                "fallback": self.provider_fallback,
            },
            "onnxruntime": ort.__version__,
            "threads": threads or "default",
            "warmup_ms": self.warmup_ms,
        }

    def _check_contract(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise ModelLoadError(f"expected one input, the model has {len(inputs)}")
        shape = list(inputs[0].shape)
        if len(shape) != 4 or shape[1] != 2:
            raise ModelLoadError(f"input must be (B, 2, P, P), the model's is {shape}")
        P = self.card.patch_size
        if any(isinstance(s, int) and s != P for s in shape[2:]):
            raise ModelLoadError(f"input is {shape} but the card's patch size is {P}")
        self.input_name: str = inputs[0].name
        self.patch_size: int = P
        self.output_names: list[str] = [o.name for o in outputs]
        if "offsets" not in self.output_names:
            raise ModelLoadError(f"no 'offsets' output (outputs: {self.output_names})")
        is_cls = "confidence" in self.output_names
        if is_cls != (self.card.kind == "classification"):
            raise ModelLoadError(
                f"the card says {self.card.kind!r} but the outputs are {self.output_names}"
            )

    @property
    def kind(self) -> Kind:
        return self.card.kind

    def predict_batch(self, pairs: np.ndarray) -> dict[str, np.ndarray]:
        """Run the network on a batch.

        Args:
            pairs: (B, 2, P, P) float32 normalised pairs (see
                :func:`app.inference.preprocess.prepare_pair`).

        Returns:
            ``{"offsets": (B, 4, 2) float32 px}``; classification models add
            ``"probabilities"`` (B, 8, bins) and ``"confidence"`` (B, 4).
        """
        P = self.patch_size
        if pairs.ndim != 4 or pairs.shape[1:] != (2, P, P):
            raise ValueError(f"pairs must have shape (B, 2, {P}, {P}), got {pairs.shape}")
        x = np.ascontiguousarray(pairs, dtype=np.float32)
        out = self.session.run(self.output_names, {self.input_name: x})
        return dict(zip(self.output_names, out, strict=True))
