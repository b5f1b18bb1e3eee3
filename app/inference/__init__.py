"""Inference helpers shared by training and serving (no HTTP here)."""
