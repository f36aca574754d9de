"""The image test's session: its own dockerd, stand-in bases, the built image.

State (the daemon's data root: stand-in images and build cache) is kept in
BEAM_EMBED_IMAGE_STATE, by default /var/cache/beam-embed-image-test, so a second
run on this machine reuses what the first built; an empty or new directory is a
fresh machine. The measurements go to out/image-test/measurements.json and the
end of pytest's output.
"""
from __future__ import annotations

import json
import os
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [HERE, REPO]

import build  # noqa: E402  (image/ and the repository are on sys.path from here on)
import standins  # noqa: E402
from dockerd import running_dockerd  # noqa: E402

IMAGE_TAG = "beam-embed:image-test"
STATE_DIR = os.environ.get("BEAM_EMBED_IMAGE_STATE", "/var/cache/beam-embed-image-test")
MEASUREMENTS = os.path.join(REPO, "out", "image-test", "measurements.json")
_measured: dict[str, object] = {}


@pytest.fixture(scope="session")
def daemon():
    os.makedirs(STATE_DIR, exist_ok=True)
    started = time.monotonic()
    with running_dockerd(STATE_DIR) as d:
        _measured["dockerd_start_s"] = round(time.monotonic() - started, 1)
        yield d


@pytest.fixture(scope="session")
def image(daemon) -> build.Built:
    started = time.monotonic()
    _measured["stand_ins"] = standins.prepare(daemon, os.path.join(REPO, "Dockerfile"), STATE_DIR)
    _measured["stand_ins_s"] = round(time.monotonic() - started, 1)
    built = build.build_image(daemon, REPO, IMAGE_TAG, os.path.join(STATE_DIR, "build.log"))
    _measured.update(build_s=round(built.seconds, 1), image_size_bytes=built.size_bytes,
                     image_size_gb=round(built.size_bytes / 1e9, 2),
                     cached_layers=_cached_steps(built.log_path))
    return built


@pytest.fixture(scope="session")
def measurements() -> dict:
    """Figures tests add to the report (besides the build's)."""
    return _measured


def _cached_steps(log_path: str) -> int:
    with open(log_path, encoding="utf-8", errors="replace") as f:
        return sum(line.rstrip().endswith(" CACHED") for line in f)


def pytest_sessionstart(session):
    session.config._image_test_started = time.monotonic()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _measured:
        return
    _measured["session_s"] = round(time.monotonic() - config._image_test_started, 1)
    os.makedirs(os.path.dirname(MEASUREMENTS), exist_ok=True)
    with open(MEASUREMENTS, "w", encoding="utf-8") as f:
        json.dump(_measured, f, indent=2)
    terminalreporter.section("image test measurements")
    for key, value in _measured.items():
        terminalreporter.write_line(f"{key}: {value}")
    terminalreporter.write_line(f"(also in {os.path.relpath(MEASUREMENTS, os.getcwd())})")
