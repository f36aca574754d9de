"""Before a run with gs:// paths starts: can this machine reach those buckets?

Left to Beam, a Cloud Storage problem shows up late and slowly. Beam 2.77 looks for
credentials for about 20 s (``google.auth.default`` retried with back-off) before it
goes on anonymously, and a request that cannot connect is retried until the Cloud
Storage client's 120 s deadline, call after call. So the launcher first sends one
listing request per bucket the options name, without retries and with a short
timeout, with the credentials Beam would use (Application Default Credentials; none
against an emulator named by ``STORAGE_EMULATOR_HOST``), and turns a failure into
an error that names the option, the path and what to do about it.

Without credentials, reading gs:// goes on anonymously (public buckets work), but an
``--output`` or ``--dead_letter`` on gs:// is refused at once: nobody can write there
anonymously. A run whose paths are all local never gets here and never touches
Google auth.
"""
from __future__ import annotations

import logging
import os
import re

# The beam-embed options that may name gs:// paths, read ones first.
PATH_OPTIONS = ("input", "skip_existing", "preprocessor", "encoder", "output", "dead_letter")
WRITTEN_OPTIONS = ("--output", "--dead_letter")
HANDLE_OPTIONS = ("--preprocessor", "--encoder")
TIMEOUT = (5, 30)  # seconds to connect, to read an answer
PRODUCTION_ENDPOINT = "https://storage.googleapis.com"
CREDENTIALS_HINT = ("run `gcloud auth application-default login`, set "
                    "GOOGLE_APPLICATION_CREDENTIALS to a service account key file, or run on "
                    "Google Cloud, where the VM's service account is used")


def gcs_paths(options) -> dict[str, str]:
    """``{"--input": "gs://..."}``: the path options whose values are on Cloud Storage.

    Raises ValueError, naming the option, for a path on any other scheme (see
    ``check_scheme``): every path option is a local path or gs://."""
    paths = {}
    for name in PATH_OPTIONS:
        value = getattr(options, name, None)
        if value and name == "skip_existing" and _is_table(value):
            continue  # a table (--output_table's kinds), checked by its sink
        if value:
            check_scheme(f"--{name}", value)
        if value and value.startswith("gs://"):
            paths[f"--{name}"] = value
    return paths


def _is_table(value: str) -> bool:
    from transforms.sinks import table_sink_class
    return table_sink_class(value) is not None


def check_scheme(option: str, path: str) -> None:
    """Local paths and gs:// (model handles also http(s)://, for TF Hub and Kaggle).

    Beam has no file system for ``file://`` (it would answer "pip install
    apache-beam[gcp]", which is already installed); ``s3://`` and the like would fail
    later and less clearly, on a worker, if at all."""
    from apache_beam.io.filesystems import FileSystems

    scheme = FileSystems.get_scheme(path)
    if scheme is None or scheme == "gs" or (
            scheme in ("http", "https") and option in HANDLE_OPTIONS):
        return
    if scheme == "file":
        local = path[len("file://"):]
        if not local.startswith("/"):  # file://HOST/path
            local = "/" + local.partition("/")[2]
        raise ValueError(f"{option} {path!r}: file:// URLs are not supported; give the local "
                         f"path itself ({local!r})")
    kinds = "a local path, gs://, or an http(s):// TF Hub handle" if option in HANDLE_OPTIONS \
        else "a local path or gs://"
    raise ValueError(f"{option} {path!r}: {scheme}:// paths are not supported; use {kinds}")


def check_gcs_access(paths: dict[str, str]) -> None:
    """Raise ValueError naming the option if a bucket of ``paths`` cannot be listed."""
    if not paths:
        return
    buckets: dict[str, tuple[str, str, str]] = {}  # bucket -> (option, path, object prefix)
    for option, path in paths.items():
        bucket, name = _split(path)
        if not bucket:
            raise ValueError(f"{option} {path!r} names no bucket (gs://BUCKET/...)")
        buckets.setdefault(bucket, (option, path, _static_prefix(name)))
    client, connection = _client(paths)
    for bucket, (option, path, prefix) in buckets.items():
        try:
            blobs = client.list_blobs(bucket, prefix=prefix, max_results=1, timeout=TIMEOUT,
                                      retry=None)
            next(iter(blobs), None)
        except Exception as error:  # the client raises requests', google-auth's and its own
            raise ValueError(f"{option} {path!r}: {_explain(error, bucket, connection)}") from None
    logging.info("Cloud Storage: %s reachable, %s", ", ".join(f"gs://{b}" for b in buckets),
                 connection.describe)


_CLIENTS: dict = {}


def storage_client():
    """The client ``check_gcs_access`` uses (anonymous at ``STORAGE_EMULATOR_HOST``,
    else Application Default Credentials), for the few requests the launcher makes
    outside Beam: output locks and write probes. One per endpoint and process."""
    endpoint = os.environ.get("STORAGE_EMULATOR_HOST")
    if endpoint not in _CLIENTS:
        _CLIENTS[endpoint] = _client({})[0]
    return _CLIENTS[endpoint]


class _Connection:
    def __init__(self, endpoint: str, describe: str, anonymous: bool):
        self.endpoint = endpoint
        self.describe = describe
        self.anonymous = anonymous


def _client(paths: dict[str, str]):
    from google.cloud import storage

    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:  # what the storage client (and so Beam's GcsIO) connects to
        return storage.Client.create_anonymous_client(), _Connection(
            emulator, f"anonymously at STORAGE_EMULATOR_HOST={emulator}", True)
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError
    try:
        credentials, project = google.auth.default()
    except DefaultCredentialsError:
        written = [option for option in WRITTEN_OPTIONS if option in paths]
        if written:
            option = written[0]
            raise ValueError(
                f"{option} {paths[option]!r} is on Cloud Storage, and no Google credentials "
                f"were found to write it with: {CREDENTIALS_HINT}") from None
        logging.warning("no Google credentials found: reading Cloud Storage anonymously "
                        "(Beam itself retries the lookup for about 20 s first)")
        return storage.Client.create_anonymous_client(), _Connection(
            PRODUCTION_ENDPOINT, "anonymously: no Google credentials were found", True)
    who = getattr(credentials, "service_account_email", None) or type(credentials).__name__
    return storage.Client(credentials=credentials, project=project), _Connection(
        PRODUCTION_ENDPOINT, f"as {who}", False)


def _explain(error: Exception, bucket: str, connection: _Connection) -> str:
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    if isinstance(error, api.NotFound):
        return f"bucket {bucket!r} does not exist"
    if isinstance(error, (api.Unauthorized, api.Forbidden)):
        hint = f"; {CREDENTIALS_HINT}" if connection.anonymous else ""
        return (f"access to gs://{bucket} denied, connecting {connection.describe}{hint} "
                f"({error.message})")
    if isinstance(error, auth.RefreshError):
        return (f"the Google credentials cannot get an access token ({_reason(error)}); "
                f"{CREDENTIALS_HINT}")
    if isinstance(error, api.GoogleAPICallError):
        return f"Cloud Storage answered {error.code}: {error.message}"
    return f"cannot reach Cloud Storage at {connection.endpoint}: {_reason(error)}"


def _reason(error: Exception) -> str:
    """The innermost cause: "[Errno 111] Connection refused" rather than requests'
    three nested wrappers around it."""
    while True:
        inner = getattr(error, "reason", None) or error.__cause__
        if not isinstance(inner, BaseException) or inner is error:
            break
        error = inner
    message = str(error)
    errno = re.search(r"\[Errno [^]]+\].*", message)
    return (errno.group(0).rstrip("')\"") if errno else message)[:300] or type(error).__name__


def _split(path: str) -> tuple[str, str]:
    bucket, _, name = path[len("gs://"):].partition("/")
    return bucket, name


def _static_prefix(name: str) -> str:
    """The part of an object name or glob before its first wildcard."""
    match = re.search(r"[*?\[]", name)
    return name[:match.start()] if match else name
