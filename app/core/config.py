"""One settings object, read from ``HOMOGRAPHY_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


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

    # Engines
    model_path: Path = REPO_ROOT / "models" / "homographynet_regression.onnx"
    onnx_providers: tuple[str, ...] = ("CUDAExecutionProvider", "CPUExecutionProvider")
    torch_threads: int = Field(0, ge=0, description="0 keeps torch's default.")

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        if self.max_json_body_bytes > self.max_body_bytes:
            raise ValueError("max_json_body_bytes must not exceed max_body_bytes")
        if self.max_solve_json_batch > self.max_solve_batch:
            raise ValueError("max_solve_json_batch must not exceed max_solve_batch")
        return self


@lru_cache
def get_settings() -> Settings:
    """Process-wide settings (cached; tests build their own ``Settings``)."""
    return Settings()
