"""Build the project's Dockerfile, unchanged, on the stand-in bases; time and size it."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import time

from dockerd import DOCKER, Dockerd

# What a build on this machine needs and the Dockerfile must not contain: the CA
# bundle pip trusts here (this machine intercepts TLS), passed as a build secret.
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@dataclasses.dataclass
class Built:
    tag: str
    seconds: float
    size_bytes: int
    log_path: str


def build_image(daemon: Dockerd, context: str, tag: str, log_path: str) -> Built:
    args = [DOCKER, "build", "--network", "host", "--progress", "plain", "-t", tag]
    ca_bundle = os.environ.get("BEAM_EMBED_BUILD_CA_BUNDLE", HOST_CA_BUNDLE)
    if ca_bundle and os.path.isfile(ca_bundle):
        args += ["--secret", f"id=pip_cert,src={ca_bundle}"]
    started = time.monotonic()
    with open(log_path, "wb") as log:
        result = subprocess.run([*args, context], env=daemon.env, stdout=log,
                                stderr=subprocess.STDOUT)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        with open(log_path, "rb") as f:
            tail = f.read()[-6000:].decode(errors="replace")
        raise RuntimeError(f"docker build failed ({result.returncode}); {log_path} ends:\n{tail}")
    size = int(daemon.output("image", "inspect", "--format", "{{.Size}}", tag))
    return Built(tag, seconds, size, log_path)
