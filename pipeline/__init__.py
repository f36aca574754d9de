"""beam-embed's command line pipeline: read a corpus, embed it, write embeddings."""

import models  # noqa: F401,E402  (first: it picks TensorFlow's CPU kernels before TF loads, models/cpu_kernels.py)
