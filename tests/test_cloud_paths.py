"""Every path of a run on Cloud Storage (gs://), against gcp-storage-emulator in this
process: input glob, Parquet / TFRecord outputs, dead letters, summary,
--skip_existing and both model handles. Plus what happens without credentials or
without a reachable Cloud Storage, and that local runs never touch Google auth.

What is written is read back through the emulator's own client, never through
beam-embed's code.
"""
from __future__ import annotations

import io
import json
import os
import re
import threading
import time

import pyarrow.parquet as pq
import pytest

from pipeline.main import main
from tests.gcs_emulator import emulated_gcs, free_port, no_google_credentials

BUCKET = "beam-embed-cloud"


@pytest.fixture
def gcs(monkeypatch, tmp_path):
    """A storage.Client on an in-process emulator holding gs://BUCKET, reached anonymously."""
    from google.cloud import storage
    with emulated_gcs(monkeypatch, tmp_path, BUCKET):
        yield storage.Client.create_anonymous_client()


def upload_dir(client, local_dir: str, gs_dir: str) -> None:
    bucket, _, prefix = gs_dir[len("gs://"):].partition("/")
    for root, _, files in os.walk(local_dir):
        for name in files:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, local_dir).replace(os.sep, "/")
            client.bucket(bucket).blob(f"{prefix}/{relative}").upload_from_filename(path)


def put(client, path: str, data: bytes) -> None:
    bucket, _, name = path[len("gs://"):].partition("/")
    client.bucket(bucket).blob(name).upload_from_string(data)


def object_names(client, prefix: str) -> list[str]:
    return sorted(blob.name for blob in client.list_blobs(BUCKET, prefix=prefix))


def read_object(client, name: str) -> bytes:
    return client.bucket(BUCKET).blob(name).download_as_bytes()


def shards(client, prefix: str, extension: str) -> list[str]:
    pattern = re.compile(rf"{re.escape(prefix)}-\d{{5}}-of-\d{{5}}\.{extension}")
    return [n for n in object_names(client, prefix) if pattern.fullmatch(n)]


def parquet_ids(client, prefix: str) -> list[str]:
    return [i for name in shards(client, prefix, "parquet")
            for i in pq.read_table(io.BytesIO(read_object(client, name))).column("id").to_pylist()]


def jsonl_corpus(ids: list[str]) -> bytes:
    return "".join(json.dumps({"id": i, "text": f"document {i} about {i[::-1]}"}) + "\n"
                   for i in ids).encode()


def run(*args: str) -> None:
    assert main([*args, "--runner=FnApiRunner"]) == 0


def test_a_run_entirely_on_cloud_storage(gcs, tmp_path, monkeypatch, tiny_random_model):
    started = time.monotonic()
    root = f"gs://{BUCKET}/e2e"
    monkeypatch.setenv("BEAM_EMBED_CACHE", str(tmp_path / "cache"))
    first_ids = [f"doc-{i:02d}" for i in range(12)]
    put(gcs, f"{root}/corpus/day1/part-0.jsonl", jsonl_corpus(first_ids[:7]))
    put(gcs, f"{root}/corpus/day1/part-1.jsonl",
        jsonl_corpus(first_ids[7:]) + b'{"id": "blank", "text": "  "}\n{not json\n')
    new_ids = ["new-1", "new-2", "new-3"]
    put(gcs, f"{root}/corpus/day2/part-0.jsonl", jsonl_corpus(first_ids + new_ids))
    upload_dir(gcs, tiny_random_model.preprocessor, f"{root}/models/preprocessor")
    upload_dir(gcs, tiny_random_model.encoder, f"{root}/models/encoder")
    model = [f"--preprocessor={root}/models/preprocessor", f"--encoder={root}/models/encoder"]

    # Parquet, dead letters beside it, summary.
    run(f"--input={root}/corpus/day1/*.jsonl", "--text_field=text",
        f"--output={root}/out/day1/emb", *model)
    summary = json.loads(read_object(gcs, "e2e/out/day1/emb-summary.json"))
    assert summary["read"] == 14 and summary["embedded"] == 12
    assert summary["dead_lettered"] == {"empty_text": 1, "malformed_record": 1}
    assert sorted(parquet_ids(gcs, "e2e/out/day1/emb")) == first_ids
    metadata = pq.read_schema(io.BytesIO(read_object(
        gcs, shards(gcs, "e2e/out/day1/emb", "parquet")[0]))).metadata
    assert metadata[b"encoder"].decode() == f"{root}/models/encoder"  # the handle, not the copy
    letters = [json.loads(line) for name in shards(gcs, "e2e/out/day1/emb-errors", "jsonl")
               for line in read_object(gcs, name).decode().splitlines()]
    assert sorted(letter["reason"] for letter in letters) == ["empty_text", "malformed_record"]
    assert all(letter["source"].startswith(f"{root}/corpus/day1/part-1.jsonl:")
               for letter in letters)

    # TFRecord, dead letters under their own prefix.
    run(f"--input={root}/corpus/day1/*.jsonl", "--text_field=text", "--output_format=tfrecord",
        f"--output={root}/out/tfrecord/emb", f"--dead_letter={root}/dead/tfrecord", *model)
    import tensorflow as tf
    from transforms.write import tfrecord_feature_spec
    spec = tfrecord_feature_spec(dim=32)
    records = []
    for name in shards(gcs, "e2e/out/tfrecord/emb", "tfrecord"):
        local = tmp_path / os.path.basename(name)
        local.write_bytes(read_object(gcs, name))
        records += [tf.io.parse_single_example(record, spec)
                    for record in tf.data.TFRecordDataset(str(local))]
    assert sorted(r["id"].numpy().decode() for r in records) == first_ids
    assert shards(gcs, "e2e/dead/tfrecord", "jsonl")
    assert json.loads(read_object(gcs, "e2e/out/tfrecord/emb-summary.json"))["embedded"] == 12

    # The next day: only the new documents, the rest found in the earlier Parquet output.
    run(f"--input={root}/corpus/day2/*.jsonl", "--text_field=text",
        f"--output={root}/out/day2/emb", f"--skip_existing={root}/out/*/emb-*.parquet", *model)
    summary = json.loads(read_object(gcs, "e2e/out/day2/emb-summary.json"))
    assert summary["skipped_existing"] == 12 and summary["embedded"] == 3
    assert sorted(parquet_ids(gcs, "e2e/out/day2/emb")) == new_ids

    # Nothing but finished files under the output prefixes: no beam-temp-*, no .partial.
    finished = re.compile(r"e2e/(out/\w+/emb(-errors)?-\d{5}-of-\d{5}\.(parquet|tfrecord|jsonl)"
                          r"|out/\w+/emb-summary\.json|dead/tfrecord-\d{5}-of-\d{5}\.jsonl)")
    leftovers = [n for n in object_names(gcs, "e2e/out/") + object_names(gcs, "e2e/dead/")
                 if not finished.fullmatch(n)]
    assert leftovers == []

    # The modules were copied to local disk once, whole, and loaded from there.
    cached = sorted(os.listdir(tmp_path / "cache" / "modules"))
    assert len(cached) == 2 and not [c for c in cached if c.startswith(".partial")]
    assert time.monotonic() - started < 90


# Model handles ------------------------------------------------------------------------

def test_a_gs_module_is_copied_once_whole_and_again_when_it_changes(gcs, tmp_path,
                                                                    tiny_random_model):
    from apache_beam.io.filesystems import FileSystems

    from transforms.module_cache import local_module_dir
    handle = f"gs://{BUCKET}/cache-test/preprocessor"
    upload_dir(gcs, tiny_random_model.preprocessor, handle)
    cache = str(tmp_path / "modules")

    # Worker processes of one machine copying at the same moment: one copy wins, each
    # caller gets the complete directory, and no partial copy is left behind.
    barrier, results = threading.Barrier(4), []

    def copy():
        barrier.wait()
        results.append(local_module_dir(handle, cache))

    threads = [threading.Thread(target=copy) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and len(set(results)) == 1
    [copied] = set(results)
    assert os.listdir(cache) == [os.path.basename(copied)]
    assert tree(copied) == tree(tiny_random_model.preprocessor)

    # Copied once: the next call reads only the listing.
    def no_download(*args, **kwargs):
        raise AssertionError("downloaded again")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FileSystems, "open", no_download)
        assert local_module_dir(handle, cache) == copied

    # Replaced under the same handle: a new copy, never the stale one.
    put(gcs, f"{handle}/assets/extra.txt", b"a new file")
    updated = local_module_dir(handle, cache)
    assert updated != copied and os.path.isfile(os.path.join(updated, "assets", "extra.txt"))


def tree(directory: str) -> dict[str, bytes]:
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                files[os.path.relpath(os.path.join(root, name), directory)] = f.read()
    return files


def test_gs_module_handles_that_are_not_modules(gcs, tmp_path, capsys, tiny_random_model):
    corpus = tmp_path / "c.jsonl"
    corpus.write_bytes(jsonl_corpus(["a"]))
    put(gcs, f"gs://{BUCKET}/not-a-module/readme.txt", b"hello")
    for handle, fragment in ((f"gs://{BUCKET}/nowhere", "holds no files"),
                             (f"gs://{BUCKET}/not-a-module", "no saved_model.pb"),
                             (f"gs://{BUCKET}/not-a-module/readme.txt",
                              "must be a SavedModel directory")):
        assert main([f"--input={corpus}", "--text_field=text", f"--output={tmp_path}/o",
                     f"--preprocessor={tiny_random_model.preprocessor}", f"--encoder={handle}",
                     "--runner=FnApiRunner"]) == 2
        err = capsys.readouterr().err
        assert "--encoder" in err and handle in err and fragment in err, err


def test_tensorflows_own_gcs_file_system_ignores_the_emulator(gcs, monkeypatch):
    """Why gs:// handles are copied with Beam's FileSystems instead of handed to hub.load:
    TensorFlow's gs:// file system has its endpoints compiled in (www.googleapis.com,
    storage.googleapis.com) and honours neither STORAGE_EMULATOR_HOST nor
    CLOUD_STORAGE_EMULATOR_ENDPOINT, so it never sees what the emulator holds."""
    import tensorflow as tf
    put(gcs, f"gs://{BUCKET}/tf/object.txt", b"here")
    monkeypatch.setenv("CLOUD_STORAGE_EMULATOR_ENDPOINT", os.environ["STORAGE_EMULATOR_HOST"])
    monkeypatch.setenv("GCS_RETRY_CONFIG_MAX_RETRIES", "0")
    monkeypatch.setenv("GCS_REQUEST_CONNECTION_TIMEOUT_SECS", "5")
    monkeypatch.setenv("GOOGLE_AUTH_TOKEN_FOR_TESTING", "none")  # no metadata-server probe
    try:
        found = tf.io.gfile.exists(f"gs://{BUCKET}/tf/object.txt")
    except tf.errors.OpError as error:  # offline: "Could not resolve host: www.googleapis.com"
        found = False
        assert "googleapis.com" in str(error) or "gs://" in str(error), error
    assert not found


# Credentials and reachability ---------------------------------------------------------

def test_a_local_run_never_touches_google_auth(tmp_path, monkeypatch, tiny_random_model):
    import google.auth
    from apache_beam.internal.gcp import auth
    calls = []

    def default(*args, **kwargs):
        calls.append(args)
        raise AssertionError("google.auth.default called by a local run")

    monkeypatch.setattr(google.auth, "default", default)
    # Forget any credentials Beam looked up earlier in this process, so it would look again.
    monkeypatch.setattr(auth._Credentials, "_credentials_init", False)
    monkeypatch.setattr(auth._Credentials, "_credentials", None)
    corpus = tmp_path / "c.jsonl"
    corpus.write_bytes(jsonl_corpus(["a", "b", "c"]))
    run(f"--input={corpus}", "--text_field=text", f"--output={tmp_path}/out/emb",
        f"--skip_existing={tmp_path}/out/*/emb-*.parquet",
        f"--preprocessor={tiny_random_model.preprocessor}",
        f"--encoder={tiny_random_model.encoder}")
    assert calls == []
    assert json.loads((tmp_path / "out" / "emb-summary.json").read_text())["embedded"] == 3


@pytest.mark.parametrize("option", ["input", "output", "dead_letter", "skip_existing", "encoder"])
def test_gs_paths_with_no_cloud_storage_to_reach_fail_fast(option, tmp_path, monkeypatch, capsys):
    """STORAGE_EMULATOR_HOST names a port where nothing listens: left to Beam, each call
    would wait ~20 s for credentials and then retry for 120 s."""
    port = free_port()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    no_google_credentials(monkeypatch, tmp_path)
    corpus = tmp_path / "c.jsonl"
    corpus.write_bytes(jsonl_corpus(["a"]))
    args = {"input": str(corpus), "output": f"{tmp_path}/out/emb"}
    args[option] = {"input": "gs://corpus-bucket/day1/*.jsonl", "output": "gs://out-bucket/emb",
                    "dead_letter": "gs://out-bucket/errors",
                    "skip_existing": "gs://out-bucket/*/emb-*.parquet",
                    "encoder": "gs://models-bucket/encoder"}[option]
    started = time.monotonic()
    code = main([*(f"--{name}={value}" for name, value in args.items()), "--text_field=text",
                 "--runner=FnApiRunner"])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 2 and elapsed < 15
    assert f"--{option} {args[option]!r}" in err, err
    assert f"cannot reach Cloud Storage at http://127.0.0.1:{port}" in err, err
    assert "Connection refused" in err, err


def test_gs_output_without_credentials_is_refused_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    no_google_credentials(monkeypatch, tmp_path)
    corpus = tmp_path / "c.jsonl"
    corpus.write_bytes(jsonl_corpus(["a"]))
    started = time.monotonic()
    code = main([f"--input={corpus}", "--text_field=text", "--output=gs://out-bucket/emb",
                 "--runner=FnApiRunner"])
    err = capsys.readouterr().err
    assert code == 2 and time.monotonic() - started < 15
    assert "--output 'gs://out-bucket/emb' is on Cloud Storage" in err, err
    assert "no Google credentials" in err and "gcloud auth application-default login" in err


def test_a_missing_bucket_is_named(gcs, tmp_path, capsys):
    corpus = tmp_path / "c.jsonl"
    corpus.write_bytes(jsonl_corpus(["a"]))
    assert main([f"--input={corpus}", "--text_field=text", "--output=gs://no-such-bucket/emb",
                 "--runner=FnApiRunner"]) == 2
    err = capsys.readouterr().err
    assert "--output 'gs://no-such-bucket/emb': bucket 'no-such-bucket' does not exist" in err, err


def test_denied_access_and_dead_credentials_say_what_to_do():
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    from pipeline.storage_access import _Connection, _explain
    anonymous = _Connection("https://storage.googleapis.com",
                            "anonymously: no Google credentials were found", True)
    message = _explain(api.Forbidden("anonymous caller does not have storage.objects.list"),
                       "private", anonymous)
    assert message.startswith("access to gs://private denied, connecting anonymously")
    assert "gcloud auth application-default login" in message and "storage.objects.list" in message
    expired = _explain(auth.RefreshError("invalid_grant: Token has been expired or revoked."),
                       "b", _Connection("https://storage.googleapis.com", "as me", False))
    assert "cannot get an access token" in expired and "expired or revoked" in expired
