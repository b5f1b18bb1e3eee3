"""Feature-based homography estimation (keypoints, ratio-test matching, robust fit), with the
matches kept as evidence for any other estimate."""

from app.features.matching import (
    Correspondences,
    Detector,
    FeatureEstimate,
    FeatureOptions,
    Keypoints,
    Robust,
    Support,
    detect,
    estimate_features,
    fit_homography,
    guided_matches,
    match_keypoints,
    support,
)

__all__ = [
    "Correspondences",
    "Detector",
    "FeatureEstimate",
    "FeatureOptions",
    "Keypoints",
    "Robust",
    "Support",
    "detect",
    "estimate_features",
    "fit_homography",
    "guided_matches",
    "match_keypoints",
    "support",
]
