"""One settings object, read from ``HOMOGRAPHY_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class AdmissionLimits(BaseModel):
    """Overrides of one endpoint class's admission limits (unset fields keep the default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_in_flight: int | None = Field(None, ge=1, le=4096)
    max_waiting: int | None = Field(None, ge=0, le=100_000)
    max_wait_s: float | None = Field(None, ge=0, le=600)
    threads: int | None = Field(None, ge=1, le=1024)


class Settings(BaseSettings):
    """Service configuration; invalid values are refused at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="HOMOGRAPHY_", env_file=".env", extra="ignore", frozen=True
    )

    # Server
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True
    warm_up_in_background: bool = Field(
        True,
        description="Build and warm the engines after the server listens: /health answers at "
        "once and /ready says what is still loading. False: before it listens (tests, scripts).",
    )
    drain_seconds: float = Field(
        20.0,
        ge=0,
        le=3600,
        description="On SIGTERM/SIGINT: /ready turns 503, new requests get 503 + Retry-After, "
        "and requests in flight get this long to finish before they are cut. Keep it below the "
        "orchestrator's grace period (Kubernetes: 30 s) less any preStop delay.",
    )

    # Limits
    max_body_bytes: int = Field(
        512 * 1024 * 1024, ge=1024, description="Largest request body (binary /solve included)."
    )
    max_json_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest JSON request body."
    )
    max_solve_batch: int = Field(2_000_000, ge=1, description="Largest /solve batch (items).")
    max_solve_json_batch: int = Field(10_000, ge=1, description="Largest JSON /solve batch.")
    max_points_per_item: int = Field(100_000, ge=4, description="Largest N for robust fits.")
    max_robust_work: int = Field(
        5_000_000, ge=1, description="Largest total point count in one robust /solve request."
    )
    max_pose_batch: int = Field(1_000_000, ge=1, description="Largest /pose-loss batch.")
    max_pose_depth_samples: int = Field(
        4_000_000, ge=1, description="Most /pose-loss depth samples in one request, all lists."
    )

    # Engines
    model_path: Path = REPO_ROOT / "models" / "homographynet_regression.onnx"
    onnx_providers: tuple[str, ...] = ("CUDAExecutionProvider", "CPUExecutionProvider")
    torch_threads: int = Field(0, ge=0, description="0 keeps torch's default.")

    # /estimate
    estimate_max_batch: int = Field(16, ge=1, le=1024, description="Pairs per ONNX call, at most.")
    estimate_max_wait_ms: float = Field(
        5.0, ge=0, le=1000, description="Longest a pair waits for others to join its batch."
    )
    estimate_queue_size: int = Field(
        64, ge=1, description="Pairs waiting for inference beyond which /estimate answers 503."
    )
    max_image_pixels: int = Field(
        40_000_000, ge=256, le=100_000_000, description="Largest image (from its header)."
    )
    min_image_side: int = Field(16, ge=1, description="Smallest width/height of an image.")
    classification_model_path: Path | None = Field(
        REPO_ROOT / "models" / "homographynet_classification.onnx",
        description="A second HomographyNet (classification head), served with "
        "/estimate?model=classification when the file exists.",
    )
    onnx_threads: int = Field(0, ge=0, description="ONNX Runtime intra-op threads; 0: default.")
    estimate_work_pixels: int = Field(
        1_000_000,
        ge=4096,
        le=100_000_000,
        description="method=features/auto: larger images are matched, scored and refined at "
        "about this many pixels (b_H_a is rescaled).",
    )
    estimate_max_features: int = Field(
        4000, ge=8, le=100_000, description="Keypoints kept per image (method=features/auto)."
    )
    estimate_refine_seconds: float = Field(
        2.0, gt=0, le=60, description="method=auto: time budget of each candidate's refinement."
    )
    estimate_escalation_seconds: float = Field(
        4.0,
        ge=0,
        le=120,
        description="method=auto: time it may spend on stronger matching (affine-simulated "
        "SIFT, guided matching) when the fast candidates are weak; 0 turns it off. A request "
        "may ask for another budget with ?escalation_seconds=, up to "
        "estimate_max_escalation_seconds.",
    )
    estimate_max_escalation_seconds: float = Field(
        30.0, ge=0, le=600, description="The largest escalation budget a request may ask for."
    )
    estimate_low_confidence: float = Field(
        0.5, ge=0, le=1, description="Answers whose confidence is below this are flagged."
    )

    # /refine (images are limited by max_image_pixels above)
    refine_max_iterations: int = Field(
        500, ge=1, le=10_000, description="Largest per-level max_iterations a request may ask."
    )
    refine_max_seconds: float = Field(
        30.0, gt=0, le=600, description="Largest time budget a /refine request may ask."
    )
    refine_default_seconds: float = Field(
        5.0, gt=0, le=600, description="Time budget of a /refine request that names none."
    )
    refine_device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the aligner runs; auto: CUDA when available."
    )
    refine_overlay_max_side: int = Field(
        1024, ge=64, le=4096, description="Long side of the optional overlay PNG, at most."
    )
    refine_max_concurrent: int = Field(
        2, ge=1, le=64, description="Alignments running at once on a CPU (1 on a GPU)."
    )
    refine_max_work_pixels: int = Field(
        4_000_000,
        ge=4096,
        le=100_000_000,
        description="Larger images are aligned at about this many pixels (b_H_a is rescaled).",
    )

    # Admission control (app.services.admission): per endpoint class (estimate, refine, solve,
    # solve_batch, pose_loss) requests in flight, waiting, longest wait and worker threads
    admission_max_loop_lag_ms: float = Field(
        50.0,
        gt=0,
        le=60_000,
        description="Shed requests of every class while the event loop runs this late (ms), so "
        "that probes and light requests stay fast when cheap requests saturate it.",
    )
    admission_cpus: int = Field(
        0, ge=0, le=1024, description="CPUs the default admission limits are sized for; 0: all."
    )
    admission: dict[
        Literal["estimate", "refine", "solve", "solve_batch", "pose_loss"], AdmissionLimits
    ] = Field(
        default_factory=dict,
        description="Overrides of the default limits per class, e.g. "
        '{"refine": {"max_in_flight": 2, "max_wait_s": 2}} (JSON in HOMOGRAPHY_ADMISSION).',
    )

    # Security (both off by default)
    api_key: SecretStr | None = Field(
        None,
        description="When set, every endpoint but /health, /ready and /metrics needs it "
        "(header X-API-Key or Authorization: Bearer).",
    )
    cors_origins: tuple[str, ...] = Field((), description="Origins allowed by CORS; none: off.")

    @field_validator("*", mode="before")
    @classmethod
    def _empty_means_off(cls, value: object, info: ValidationInfo) -> object:
        """An optional setting (a secret, a path) given as ``""`` (what ``${VAR:-}`` in a compose
        file passes for an unset variable) is None: off. Blanks only are refused, not guessed."""
        if type(None) not in get_args(cls.model_fields[info.field_name].annotation):
            return value
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(raw, str) and not raw.strip():
            if raw:
                raise ValueError("is blank (whitespace only): unset it or give a real value")
            return None
        return value

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        if self.max_json_body_bytes > self.max_body_bytes:
            raise ValueError("max_json_body_bytes must not exceed max_body_bytes")
        if self.max_solve_json_batch > self.max_solve_batch:
            raise ValueError("max_solve_json_batch must not exceed max_solve_batch")
        if self.estimate_escalation_seconds > self.estimate_max_escalation_seconds:
            raise ValueError(
                "estimate_escalation_seconds must not exceed estimate_max_escalation_seconds"
            )
        if self.refine_default_seconds > self.refine_max_seconds:
            raise ValueError("refine_default_seconds must not exceed refine_max_seconds")
        return self


@lru_cache
def get_settings() -> Settings:
    """Process-wide settings (cached; tests build their own ``Settings``)."""
    return Settings()
