"""A BigQuery emulator (bqemulator, REST + Storage Read gRPC) for the tests.

It runs from its own venv, .venv-bq (tests/bqemulator-requirements.txt, made by
`make test`): it needs duckdb 1.5.5, whose spatial extension ships as a wheel,
while beam-embed's test venv pins duckdb 2. The emulator is started on free
loopback ports with HOME pointed at a session directory, where DuckDB's spatial
extension is installed from that wheel, so nothing is downloaded and nothing
outside the session is written.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request

from tests.gcs_emulator import free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROJECT = "beam-embed-test"
STARTUP_SECONDS = 60

# The spatial extension inside the duckdb-extension-spatial wheel, installed the
# way DuckDB installs a downloaded one (bqemulator's startup runs INSTALL spatial,
# which then finds it and does not go to the network).
_INSTALL_SPATIAL = """
import glob, os, duckdb, duckdb_extension_spatial
root = os.path.dirname(duckdb_extension_spatial.__file__)
path, = glob.glob(os.path.join(root, "extensions", "v" + duckdb.__version__, "spatial.duckdb_extension"))
duckdb.execute(f"INSTALL '{path}'")
"""


def emulator_bin() -> str:
    return os.environ.get("BEAM_EMBED_BQEMULATOR") or os.path.join(REPO, ".venv-bq", "bin", "bqemulator")


class Emulator:
    def __init__(self, workdir: str):
        self.home = os.path.join(workdir, "home")
        os.makedirs(self.home, exist_ok=True)
        self.log_path = os.path.join(workdir, "bqemulator.log")
        self.rest_port, self.grpc_port = free_port(), free_port()
        self.process = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def storage_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def _env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        # No avro extension download; HOME holds DuckDB's extension directory.
        env.update(HOME=self.home, BQEMU_ENABLE_FORMAT_EXTENSIONS="false")
        return env

    def start(self) -> "Emulator":
        binary = emulator_bin()
        python = os.path.join(os.path.dirname(binary), "python")
        subprocess.run([python, "-c", _INSTALL_SPATIAL], env=self._env(), check=True,
                       capture_output=True, timeout=120)
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [binary, "start", "--rest-host", "127.0.0.1", "--rest-port", str(self.rest_port),
             "--grpc-host", "127.0.0.1", "--grpc-port", str(self.grpc_port),
             "--project", PROJECT, "--ephemeral", "--log-format", "console", "--log-level", "warning"],
            env=self._env(), stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open(self.log_path, errors="replace") as f:
                    raise RuntimeError(f"bqemulator did not start:\n{f.read()[-4000:]}")
            time.sleep(0.2)
        return self

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.grpc_port), timeout=0.5):
                pass
            urllib.request.urlopen(
                f"{self.endpoint}/bigquery/v2/projects/{PROJECT}/datasets", timeout=2).read()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def client(self):
        """A google-cloud-bigquery client on the emulator, anonymous."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery
        return bigquery.Client(project=PROJECT, credentials=AnonymousCredentials(),
                               client_options=ClientOptions(api_endpoint=self.endpoint))
