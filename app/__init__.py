"""homography-service: estimate, refine and solve planar homographies over HTTP."""

import os

# OpenCV reads its decoder's pixel limit once, when cv2 is first imported; set it here, before
# any module of the package imports cv2, as defence in depth behind the header check of
# ``app.services.images`` (``settings.max_image_pixels`` is at most this). A value already in the
# environment (e.g. the container's) is kept.
OPENCV_MAX_IMAGE_PIXELS = 100_000_000
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(OPENCV_MAX_IMAGE_PIXELS))

__version__ = "0.1.0"
