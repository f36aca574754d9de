"""gcp-storage-emulator in the test process, for the tests that run on gs:// paths."""
from __future__ import annotations

import contextlib
import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def no_google_credentials(monkeypatch, tmp_path) -> None:
    """No Application Default Credentials anywhere google.auth looks, no GCE probe."""
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "empty-gcloud-config"))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)


@contextlib.contextmanager
def emulated_gcs(monkeypatch, tmp_path, bucket: str):
    """gs://``bucket`` on an in-process emulator, reached anonymously.

    Beam 2.77 looks for credentials for about 20 s (google.auth.default retried with
    back-off) before it connects anonymously, once per process; Beam's lookup is
    replaced by its anonymous outcome so that the tests do not wait for it.
    """
    from apache_beam.internal.gcp import auth
    from gcp_storage_emulator.server import create_server

    port = free_port()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    no_google_credentials(monkeypatch, tmp_path)
    monkeypatch.setattr(auth, "get_service_credentials", lambda options: None)
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.start()
    try:
        yield
    finally:
        server.stop()
