"""Offline stand-ins for the Dockerfile's base images, tagged with their production names.

No registry is reachable here, so each image the Dockerfile names in ``FROM`` or
``COPY --from`` is replaced by one made on this machine, and given the exact
production name and tag; the Dockerfile's own steps then run unchanged on it.

* Beam's SDK image (apache/beam_python3.11_sdk): Debian bookworm (the real one is
  python:3.11-slim-bookworm based) made with debootstrap, with Debian's Python 3.11,
  ``python3`` and ``venv`` (the Dockerfile makes its venv with them), and a
  stand-in for Beam's boot binary that only says what it is: the test starts the
  worker pool itself, as boot does in worker-pool mode.
* Google's template launcher base: only the launcher file the Dockerfile copies,
  a script doing what the real launcher does for the test's purpose: run
  ``python $FLEX_TEMPLATE_PYTHON_PY_FILE`` with the template's parameters.

Each stand-in is kept in the test's Docker data root as ``beam-embed-standin/…:KEY``,
KEY a hash of its recipe, and rebuilt only when the recipe changes.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile

from dockerd import DEBOOTSTRAP, DOCKER, Dockerd

BOOT_STANDIN = """#!/bin/sh
# STAND-IN, made by beam-embed's image test (image/standins.py), for Apache Beam's
# boot binary, which the real apache/beam_python3.11_sdk image holds here. It
# boots nothing: the test starts apache_beam.runners.worker.worker_pool_main itself.
echo "stand-in for Beam's boot binary (beam-embed image test); not a real SDK harness boot" >&2
exit 64
"""

LAUNCHER_STANDIN = """#!/bin/sh
# STAND-IN, made by beam-embed's image test (image/standins.py), for Google's Flex
# Template launcher binary. Like the real launcher, it runs the template's Python
# file (FLEX_TEMPLATE_PYTHON_PY_FILE) with the template's parameters as flags;
# here those are this script's arguments.
set -e
: "${FLEX_TEMPLATE_PYTHON_PY_FILE:?FLEX_TEMPLATE_PYTHON_PY_FILE is not set}"
exec python "$FLEX_TEMPLATE_PYTHON_PY_FILE" "$@"
"""

BEAM_SDK = {
    "kind": "debootstrap",
    "suite": "bookworm",
    "variant": "minbase",
    "packages": ["python3.11", "python3.11-venv", "python3", "python3-venv"],
    "files": {"opt/apache/beam/boot": BOOT_STANDIN},
    "changes": ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "ENV LANG=C.UTF-8",
                'ENTRYPOINT ["/opt/apache/beam/boot"]'],
}
TEMPLATE_LAUNCHER = {
    "kind": "files",
    "files": {"opt/google/dataflow/python_template_launcher": LAUNCHER_STANDIN},
    "changes": [],
}
# Production repository -> recipe of its stand-in. The tags come from the Dockerfile.
RECIPES = {
    "apache/beam_python3.11_sdk": BEAM_SDK,
    "gcr.io/dataflow-templates-base/python311-template-launcher-base": TEMPLATE_LAUNCHER,
}


def base_images(dockerfile: str) -> list[str]:
    """Every image the Dockerfile pulls (FROM or COPY --from), build stages excluded."""
    with open(dockerfile, encoding="utf-8") as f:
        text = f.read()
    stages, images = set(), []
    for line in text.splitlines():
        match = re.match(r"\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            if match[1] not in stages:
                images.append(match[1])
            if match[2]:
                stages.add(match[2])
        for source in re.findall(r"\bCOPY\s+(?:--\S+\s+)*?--from=(\S+)", line):
            if source not in stages and not source.isdigit():
                images.append(source)
    return list(dict.fromkeys(images))


def recipe_key(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (override: BEAM_EMBED_DEBIAN_MIRROR)."""
    if os.environ.get("BEAM_EMBED_DEBIAN_MIRROR"):
        return os.environ["BEAM_EMBED_DEBIAN_MIRROR"]
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path, encoding="utf-8") as f:
            for stanza in f.read().split("\n\n"):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.+)$", stanza, re.MULTILINE))
                if "bookworm" in fields.get("Suites", "").split() and "main" in fields.get(
                        "Components", "").split():
                    return fields["URIs"].split()[0]
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                match = re.search(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s.*\bmain\b", f.read(),
                                  re.MULTILINE)
            if match:
                return match[1]
    return "http://deb.debian.org/debian"


def _files_tar(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _debootstrap(recipe: dict, rootfs: str) -> None:
    subprocess.run(
        [DEBOOTSTRAP, f"--variant={recipe['variant']}", f"--include={','.join(recipe['packages'])}",
         recipe["suite"], rootfs, debian_mirror()],
        check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(os.path.join(rootfs, "var/cache/apt/archives"), ignore_errors=True)
    for name, text in recipe["files"].items():
        path = os.path.join(rootfs, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(path, 0o755)


@contextlib.contextmanager
def _scratch_rootfs(work_dir: str):
    """A directory for the root file system, on a tmpfs of its own when possible:
    deleting 30,000 files one by one took minutes on this machine's disk (mounted
    with discard); unmounting a tmpfs is instant."""
    rootfs = tempfile.mkdtemp(prefix="rootfs-", dir=work_dir)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4g,mode=0755", "tmpfs", rootfs],
                             stderr=subprocess.DEVNULL).returncode == 0
    try:
        yield rootfs
    finally:
        if mounted:
            subprocess.run(["umount", rootfs], check=True)
        shutil.rmtree(rootfs, ignore_errors=True)


def _import(daemon: Dockerd, recipe: dict, name: str, work_dir: str) -> None:
    changes = [arg for change in recipe["changes"] for arg in ("--change", change)]
    if recipe["kind"] == "files":
        daemon.docker("import", *changes, "-", name, input=_files_tar(recipe["files"]),
                      capture=True)
        return
    with _scratch_rootfs(work_dir) as rootfs:
        _debootstrap(recipe, rootfs)
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run([DOCKER, "import", *changes, "-", name], stdin=tar.stdout,
                       env=daemon.env, check=True, stdout=subprocess.DEVNULL)
        tar.stdout.close()
        if tar.wait() != 0:
            raise RuntimeError(f"tar of {rootfs} failed")


def prepare(daemon: Dockerd, dockerfile: str, work_dir: str) -> dict[str, str]:
    """Tag a stand-in under every base image name of the Dockerfile.

    Returns production name -> stand-in name. Fails on a base with no recipe, so a
    new FROM cannot silently be pulled or skipped.
    """
    tagged = {}
    for image in base_images(dockerfile):
        repository, _, tag = image.rpartition(":")
        if not repository or "/" in tag:
            raise ValueError(f"{dockerfile}: base image {image!r} is not pinned by a tag")
        recipe = RECIPES.get(repository)
        if recipe is None:
            raise ValueError(f"{dockerfile}: no stand-in recipe for {image!r} (image/standins.py)")
        standin = f"beam-embed-standin/{repository.rsplit('/', 1)[-1]}:{recipe_key(recipe)}"
        if daemon.docker("image", "inspect", standin, check=False, capture=True).returncode != 0:
            _import(daemon, recipe, standin, work_dir)
        daemon.docker("tag", standin, image)
        tagged[image] = standin
    return tagged
