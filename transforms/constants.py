"""Names, choices and defaults that the options and the transforms share, each
defined here once.

This module imports nothing: ``beam-embed --help`` builds its parser from these
without importing Beam or TensorFlow (seconds each), and every other module, in
pipeline/ and transforms/, imports them from here. The input formats and the pooling
modes are named by their registries, transforms/formats/__init__.py and
transforms/poolings/__init__.py (light as well).
"""

VERSION = "0.1.0"

DEFAULT_POOLING = "mean"  # one of transforms/poolings' POOLING_MODES (a test checks)
PRECISIONS = ("float32", "bfloat16", "float16")
DEFAULT_PRECISION = "float32"
LONG_TEXT_POLICIES = ("truncate", "chunk", "reject")
DEFAULT_LONG_TEXT = "truncate"
OUTPUT_FORMATS = ("parquet", "tfrecord")  # the file sinks in transforms/sinks (a test checks)
VECTOR_TYPES = ("vector", "halfvec")  # pgvector column types (transforms/sinks/postgres.py)
DEFAULT_OUTPUT_FORMAT = "parquet"
# Stored vector types (transforms/quantize.py), and the seeded int8/uint8 calibration
# sample's size in documents (transforms/calibration.py).
EMBEDDING_DTYPES = ("float32", "float16", "int8", "uint8", "binary", "ubinary")
CALIBRATION_SAMPLE = 10_000

# Tokens per text, special tokens included: BERT-family encoders' position table.
MAX_SEQ_LENGTH = 512
# Padded tokens per encoder batch when --batch_tokens is not given, on a CPU and on a
# GPU (transforms/batching.py: default_batch_tokens), and texts per batch.
CPU_BATCH_TOKENS = 4096
GPU_BATCH_TOKENS = 8192
MAX_BATCH_SIZE = 256

# --model_copies: "auto" is one shared copy per visible GPU and one model per process on
# CPU (transforms/encode.py). Each copy is a server (thread, socket) in some SDK process,
# and every process opens a proxy to each; more than a few per GPU buys nothing.
MODEL_COPIES_AUTO = "auto"
MAX_MODEL_COPIES = 64
