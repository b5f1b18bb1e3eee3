"""Image sources, on-the-fly pair generation and fixed on-disk pair sets."""
