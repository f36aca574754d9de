"""Reusable Beam transforms: read a corpus, embed it, write embeddings and dead letters."""

import models  # noqa: F401,E402  (first: it picks TensorFlow's CPU kernels before TF loads, models/cpu_kernels.py)
