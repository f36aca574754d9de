"""make bench: beam-embed against its anchors (bench/run.py)."""

import models  # noqa: F401,E402  (first: TensorFlow's CPU kernels as beam-embed picks them, models/cpu_kernels.py)
