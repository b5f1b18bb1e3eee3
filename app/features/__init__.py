"""Feature-based homography estimation (keypoints, ratio-test matching, robust fit)."""

from app.features.matching import (
    Detector,
    FeatureEstimate,
    FeatureOptions,
    Robust,
    estimate_features,
)

__all__ = ["Detector", "FeatureEstimate", "FeatureOptions", "Robust", "estimate_features"]
