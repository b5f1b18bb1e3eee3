"""Planar geometry, usable as a library: no HTTP in here.

Conventions (written once, tested against OpenCV round trips in ``tests/geometry``):

- Points are pixel coordinates ``(x, y)``: x to the right, y down, the origin at the centre of the
  top-left pixel (OpenCV's convention; no align_corners ambiguity).
- Batches come first: points ``(B, N, 2)``, matrices ``(B, 3, 3)``.
- A matrix named ``dst_H_src`` maps homogeneous source points to target points:
  ``[x', y', w']^T = dst_H_src @ [x, y, 1]^T`` and ``(x_dst, y_dst) = (x'/w', y'/w')``; the same
  direction as ``cv2.getPerspectiveTransform(src, dst)`` and ``cv2.warpPerspective(src_img, H)``.
- Normalised matrices have ``H[2, 2] = 1``.
- Corner order for rectangles and patches: top-left, top-right, bottom-right, bottom-left.
- Degenerate items are never raised mid-batch: solvers return a per-item validity mask and a
  reason code (``app.geometry.reasons``), and never put inf/NaN in a valid item.
"""
