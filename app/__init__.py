"""homography-service: estimate, refine and solve planar homographies over HTTP."""

__version__ = "0.1.0"
