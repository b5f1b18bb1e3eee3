"""Python client of homography-service (sync and async), on httpx and NumPy.

from homography_client import HomographyClient

with HomographyClient("http://127.0.0.1:8000") as hc:
    est = hc.estimate("a.jpg", "b.jpg", method="auto")     # est.b_H_a (3, 3), est.confidence
    sol = hc.solve(src, dst)                                # sol.dst_H_src (B, 3, 3), .valid
"""

from homography_client._core import REFINE_OPTIONS, RetryPolicy
from homography_client._encode import ImageInput, encode_png
from homography_client._npz import read_npz
from homography_client.async_client import AsyncHomographyClient
from homography_client.client import HomographyClient
from homography_client.errors import HomographyError
from homography_client.models import (
    Candidate,
    ChainedRefine,
    EstimateResult,
    FeaturesInfo,
    ModelInfo,
    PhotometricError,
    PhotometricScore,
    PoseLossGradients,
    PoseLossResult,
    Quality,
    RefineLevel,
    RefineResult,
    SolveResult,
)

__version__ = "0.1.0"

__all__ = [
    "REFINE_OPTIONS",
    "AsyncHomographyClient",
    "Candidate",
    "ChainedRefine",
    "EstimateResult",
    "FeaturesInfo",
    "HomographyClient",
    "HomographyError",
    "ImageInput",
    "ModelInfo",
    "PhotometricError",
    "PhotometricScore",
    "PoseLossGradients",
    "PoseLossResult",
    "Quality",
    "RefineLevel",
    "RefineResult",
    "RetryPolicy",
    "SolveResult",
    "encode_png",
    "read_npz",
]
