"""Generate the demo page's sample pairs (app/web/static/samples/) from scikit-image's photos.

    .venv/bin/python scripts/demo_samples.py

Each pair is two views of one photo through known homographies, so the page can show the true
corner error next to the answer: A is the photo seen through the quad ``qa`` (warped onto a
W_a x H_a rectangle), B through ``qb``; ``b_H_a = b_H_p @ inv(a_H_p)``. B gets its own lighting
(gain/bias) and both are saved as JPEG. The photos are public domain or CC0 (see ``CREDITS``).
Deterministic: running it again rewrites the same files.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from skimage import data

OUT = Path(__file__).resolve().parents[1] / "app" / "web" / "static" / "samples"

CREDITS = {
    "coffee": "scikit-image data.coffee(), CC0 (Rachel Michetti)",
    "astronaut": "scikit-image data.astronaut(), public domain (NASA)",
    "rocket": "scikit-image data.rocket(), public domain (SpaceX)",
}

# id, photo, title, note, (W_a, H_a), qa, (W_b, H_b), qb (quads as fractions of the photo,
# corners TL, TR, BR, BL), B's gain and bias
PAIRS = [
    (
        "coffee",
        data.coffee,
        "Coffee cup: small viewpoint change",
        "A few degrees of perspective; every method should agree.",
        (480, 320),
        [(0.05, 0.06), (0.95, 0.06), (0.95, 0.94), (0.05, 0.94)],
        (480, 320),
        [(0.09, 0.02), (0.93, 0.10), (0.97, 0.90), (0.03, 0.97)],
        (1.0, 0.0),
    ),
    (
        "astronaut",
        data.astronaut,
        "Astronaut: rotation, zoom and a brighter exposure",
        "B is rotated by 10 degrees, zoomed in and brighter: the features find it, the "
        "photometric refinement is blind to the exposure.",
        (400, 400),
        [(0.04, 0.04), (0.96, 0.04), (0.96, 0.96), (0.04, 0.96)],
        (360, 360),
        [(0.22, 0.12), (0.90, 0.22), (0.80, 0.90), (0.12, 0.80)],
        (1.25, 18.0),
    ),
    (
        "rocket",
        data.rocket,
        "Rocket: strong perspective, darker",
        "A wide change of viewpoint and a darker B; the network alone is out of its range.",
        (480, 320),
        [(0.02, 0.03), (0.98, 0.03), (0.98, 0.97), (0.02, 0.97)],
        (400, 300),
        [(0.18, 0.10), (0.86, 0.02), (0.98, 0.99), (0.06, 0.86)],
        (0.7, -10.0),
    ),
]


def _homography(quad: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """view_H_photo: the photo's quad onto the (W, H) view's corners (pixel centres)."""
    w, h = size
    rect = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
    return cv2.getPerspectiveTransform(np.float32(quad), rect).astype(np.float64)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = []
    for sid, load, title, note, size_a, qa, size_b, qb, (gain, bias) in PAIRS:
        photo = cv2.cvtColor(load(), cv2.COLOR_RGB2BGR)
        ph, pw = photo.shape[:2]
        scale = np.array([pw - 1, ph - 1], dtype=np.float64)
        a_H_p = _homography(np.asarray(qa) * scale, size_a)
        b_H_p = _homography(np.asarray(qb) * scale, size_b)
        img_a = cv2.warpPerspective(photo, a_H_p, size_a, flags=cv2.INTER_AREA)
        img_b = cv2.warpPerspective(photo, b_H_p, size_b, flags=cv2.INTER_AREA)
        img_b = np.clip(img_b.astype(np.float64) * gain + bias, 0, 255).astype(np.uint8)
        b_H_a = b_H_p @ np.linalg.inv(a_H_p)
        b_H_a /= b_H_a[2, 2]
        files = {}
        for side, img in (("a", img_a), ("b", img_b)):
            name = f"{sid}_{side}.jpg"
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 88])
            assert ok
            (OUT / name).write_bytes(buf.tobytes())
            files[side] = name
        manifest.append(
            {
                "id": sid,
                "title": title,
                "note": note,
                "image_a": files["a"],
                "image_b": files["b"],
                "b_H_a": np.round(b_H_a, 10).tolist(),
                "credit": CREDITS[sid],
            }
        )
        print(f"{sid}: A {size_a}, B {size_b}")
    (OUT / "samples.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(manifest)} pairs to {OUT}")


if __name__ == "__main__":
    main()
