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


def honour_generation_preconditions(monkeypatch) -> None:
    """Make the emulator answer ``ifGenerationMatch`` as Cloud Storage does.

    gcp-storage-emulator 2026.7.19 ignores the parameter: a second create with
    ``ifGenerationMatch=0`` overwrites the first, and a delete of a stale generation
    succeeds (checked in test_prefix_lock.py). Output locks rely on the precondition,
    so uploads and deletes are wrapped here: 412 when it does not hold (0: no live
    object of that name; G: the live object's generation is G). The emulator serves
    one request at a time, so the check and the write cannot interleave.
    """
    from http import HTTPStatus
    from gcp_storage_emulator import server
    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects

    def generation(storage, bucket, name):
        try:
            return str(storage.get_file_obj(bucket, name)["generation"])
        except NotFound:
            return None

    def fails(request, storage, name):
        wanted = request.query.get("ifGenerationMatch")
        if not wanted or name is None:
            return False
        current = generation(storage, request.params["bucket_name"], name)
        return (current is not None) if wanted[0] == "0" else current != wanted[0]

    def refuse(response):
        response.status = HTTPStatus.PRECONDITION_FAILED
        response.json({"error": {"code": 412, "message": "conditionNotMet"}})

    def upload_name(request):
        if "name" in request.query:
            return request.query["name"][0]
        data = request.data if request.method == "POST" else None
        if isinstance(data, dict):
            return (data.get("meta") or {}).get("name") or data.get("name")
        return None

    def checked(handler, name_of):
        def wrapper(request, response, storage, *args, **kwargs):
            if "upload_id" not in request.query and fails(request, storage, name_of(request)):
                return refuse(response)
            return handler(request, response, storage, *args, **kwargs)
        return wrapper

    wrapped = {objects.insert: checked(objects.insert, upload_name),
               objects.delete: checked(objects.delete, lambda r: r.params["object_id"])}
    monkeypatch.setattr(server, "HANDLERS", tuple(
        (regex, {method: wrapped.get(handler, handler) for method, handler in handlers.items()})
        for regex, handlers in server.HANDLERS))
    monkeypatch.setattr(objects, "insert", wrapped[objects.insert])


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
    honour_generation_preconditions(monkeypatch)
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.start()
    try:
        yield
    finally:
        server.stop()
