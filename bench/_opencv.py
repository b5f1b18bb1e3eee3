"""The OpenCV pipelines the benchmarks compare with, written once: keypoints, brute-force
nearest-two matching with Lowe's ratio test (0.75), ``cv2.findHomography`` (the ten lines a user
would write)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

DETECTORS = {
    "sift": lambda: (cv2.SIFT_create(), cv2.NORM_L2),
    "orb": lambda: (cv2.ORB_create(nfeatures=4000), cv2.NORM_HAMMING),
    "orb2000": lambda: (cv2.ORB_create(nfeatures=2000), cv2.NORM_HAMMING),
    "asift": lambda: (cv2.AffineFeature_create(cv2.SIFT_create()), cv2.NORM_L2),
}


def opencv_pipeline(
    detector: str, robust: int = cv2.USAC_MAGSAC, threshold: float = 3.0
) -> Callable[[np.ndarray, np.ndarray], np.ndarray | None]:
    """``(a, b) -> b_H_a`` (3, 3) or None, for gray or BGR uint8 images: ``detector`` one of
    ``DETECTORS``, ``robust`` a ``cv2.findHomography`` method (``cv2.RANSAC``,
    ``cv2.USAC_MAGSAC``, ...) with ``threshold`` px."""
    det, norm = DETECTORS[detector]()
    matcher = cv2.BFMatcher(norm)

    def run(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        ga = a if a.ndim == 2 else cv2.cvtColor(a, cv2.COLOR_BGR2GRAY)
        gb = b if b.ndim == 2 else cv2.cvtColor(b, cv2.COLOR_BGR2GRAY)
        ka, da = det.detectAndCompute(ga, None)
        kb, db = det.detectAndCompute(gb, None)
        if da is None or db is None or len(ka) < 4 or len(kb) < 4:
            return None
        good = [
            m[0]
            for m in matcher.knnMatch(da, db, k=2)
            if len(m) == 2 and m[0].distance < 0.75 * m[1].distance
        ]
        if len(good) < 4:
            return None
        pa = np.float32([ka[m.queryIdx].pt for m in good])
        pb = np.float32([kb[m.trainIdx].pt for m in good])
        H, _ = cv2.findHomography(pa, pb, robust, threshold)
        return H if H is not None and np.isfinite(H).all() else None

    return run
