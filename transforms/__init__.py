"""Reusable Beam transforms: read a corpus, embed it, write embeddings and dead letters."""
from transforms import cpu_kernels  # noqa: F401  (before any module here loads TensorFlow)
