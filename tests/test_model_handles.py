"""The default model's symbolic handles (``beam-embed:<model id>/<part>``), resolved in
each process's own ``$BEAM_EMBED_CACHE``.

Workers that do not share the launcher's disk (a container with the model baked into
a read-only cache, a Dataflow VM) must find or make the model themselves, and the
fingerprint must not depend on where one machine keeps its cache.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading

import numpy as np
import pyarrow.parquet as pq
import pytest

import models.convert
import models.export
import models.default_model as default_model
from models.config import ModelConfigError
from models.default_model import default_handle, ensure_default_model, resolve_handle
from pipeline.main import main
from pipeline.presets import resolve_model
from tests.pipeline_helpers import copy_model, file_tree, read_parquet_rows, run_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = ["The weather is lovely today.", "Il fait beau aujourd'hui.", "今天天气很好。", "Short."]
FOREIGN_ID = "all-MiniLM-L6-v2-000000000000-r2"  # a digest no package gives


@pytest.fixture(scope="module")
def converted():
    """The default model, converted in the session's cache."""
    return ensure_default_model()


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return str(path)


def forget_loaded_modules():
    """The per-process module caches, emptied: the next load resolves its handle again."""
    from transforms.encode import text_encoder
    from transforms.text_modules import load_encoder, load_module
    from transforms.tokenize import text_tokenizer
    for cached in (load_module, load_encoder, text_tokenizer, text_encoder):
        cached.cache_clear()


def test_default_handles_are_symbolic_and_name_the_converted_content(converted):
    handles = resolve_model(None, None, None)
    model_id = os.path.basename(converted.root)  # all-MiniLM-L6-v2-<digest>-r<revision>
    assert handles.preprocessor == f"beam-embed:{model_id}/preprocessor"
    assert handles.encoder == f"beam-embed:{model_id}/encoder"
    assert model_id.endswith(f"-r{default_model.CONVERTER_REVISION}")
    assert resolve_handle(handles.encoder) == converted.encoder
    assert resolve_handle(handles.preprocessor) == converted.preprocessor


def test_another_cache_directory_gives_the_same_fingerprint_and_rows(
        converted, corpus, tmp_path, monkeypatch):
    """Formerly the handles were paths in the launcher's cache, so the fingerprint (and
    with it --skip_existing) changed with the cache directory."""
    other_cache = str(tmp_path / "other-cache")
    copy_model(converted.root, other_cache)
    resolved = []
    real_resolve = default_model.resolve_handle
    monkeypatch.setattr(default_model, "resolve_handle",
                        lambda handle: resolved.append(real_resolve(handle)) or resolved[-1])
    outputs = {}
    for name, cache in (("session", os.environ["BEAM_EMBED_CACHE"]), ("other", other_cache)):
        monkeypatch.setenv("BEAM_EMBED_CACHE", cache)
        forget_loaded_modules()
        resolved.clear()
        outputs[name] = str(tmp_path / name / "emb")
        run_cli(f"--input={corpus}", f"--output={outputs[name]}")
        assert resolved and all(path.startswith(cache + os.sep) for path in resolved)
    forget_loaded_modules()
    metadata = {name: pq.read_schema(glob.glob(f"{prefix}-*.parquet")[0]).metadata
                for name, prefix in outputs.items()}
    for key in (b"beam_embed.fingerprint", b"encoder", b"preprocessor"):
        assert metadata["session"][key] == metadata["other"][key]
    assert metadata["session"][b"encoder"].startswith(b"beam-embed:all-MiniLM-L6-v2-")
    rows = {name: read_parquet_rows(prefix) for name, prefix in outputs.items()}
    assert set(rows["session"]) == set(rows["other"]) and len(rows["session"]) == len(TEXTS)
    for doc_id, row in rows["session"].items():
        assert np.array_equal(row["embedding"], rows["other"][doc_id]["embedding"])


def test_a_handle_whose_model_this_process_cannot_make_names_both_ids(tmp_path, monkeypatch):
    monkeypatch.setenv("BEAM_EMBED_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelConfigError) as error:
        resolve_handle(f"beam-embed:{FOREIGN_ID}/encoder")
    message = str(error.value)
    assert FOREIGN_ID in message and default_model.local_model_id() in message
    assert str(tmp_path / "cache") in message
    assert not os.path.exists(tmp_path / "cache" / "models" / FOREIGN_ID)


def test_the_cli_refuses_a_foreign_model_id_before_the_job(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BEAM_EMBED_CACHE", str(tmp_path / "cache"))
    out = str(tmp_path / "emb")
    assert main([f"--input={corpus}", f"--output={out}", "--runner=FnApiRunner",
                 f"--preprocessor=beam-embed:{FOREIGN_ID}/preprocessor",
                 f"--encoder=beam-embed:{FOREIGN_ID}/encoder"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("beam-embed: error: --preprocessor") and len(err.strip().splitlines()) == 1
    assert FOREIGN_ID in err and default_model.local_model_id() in err
    assert not glob.glob(f"{out}*")


def test_a_model_in_the_cache_is_used_without_converting(converted, tmp_path, monkeypatch):
    """The cache is looked at first: a model id this package would not give is served
    from a cache that holds it (an image baked with the launcher's versions)."""
    cache = str(tmp_path / "cache")
    target = copy_model(converted.root, cache, FOREIGN_ID)
    monkeypatch.setenv("BEAM_EMBED_CACHE", cache)
    monkeypatch.setattr(models.convert, "convert_checkpoint",
                        lambda *a, **k: pytest.fail("converted a model that was in the cache"))
    assert resolve_handle(f"beam-embed:{FOREIGN_ID}/encoder") == os.path.join(target, "encoder")


@pytest.mark.parametrize("handle, expected", [
    ("beam-embed:../../etc/encoder", "not an embedded model handle"),
    (f"beam-embed:{FOREIGN_ID}/../../encoder", "not an embedded model handle"),
    (f"beam-embed:{FOREIGN_ID}/tokenizer", "not an embedded model handle"),
    ("beam-embed:all-MiniLM-L6-v2/encoder", "not an embedded model handle"),
    ("beam-embed:bert-base-0123456789ab-r2/encoder", "embeds only all-MiniLM-L6-v2"),
])
def test_malformed_handles_are_refused(handle, expected, tmp_path, monkeypatch):
    monkeypatch.setenv("BEAM_EMBED_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelConfigError, match=expected):
        resolve_handle(handle)
    assert not os.path.exists(tmp_path / "cache")


def test_processes_converting_at_once_all_get_one_complete_model(converted, tmp_path, monkeypatch):
    """SDK processes of one VM start together and all find the cache empty. Each
    converts (here: a stand-in that copies the converted model, all at the same
    moment), one rename wins, nobody fails or sees a half-written directory."""
    cache = str(tmp_path / "cache")
    monkeypatch.setenv("BEAM_EMBED_CACHE", cache)
    callers = 4
    together = threading.Barrier(callers, timeout=30)

    def convert_at_once(checkpoint_dir, output_dir):
        together.wait()
        shutil.copytree(converted.root, output_dir)
        return models.export.ModuleDirs(output_dir)
    monkeypatch.setattr(models.convert, "convert_checkpoint", convert_at_once)
    results, errors = [], []

    def resolve():
        try:
            results.append(resolve_handle(default_handle("encoder")))
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append(e)
    threads = [threading.Thread(target=resolve) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and len(results) == callers and len(set(results)) == 1
    assert os.listdir(os.path.join(cache, "models")) == [os.path.basename(converted.root)]
    assert sorted(os.listdir(os.path.dirname(results[0]))) == sorted(os.listdir(converted.root))


# A worker of another machine: its own process, its own (read-only) cache ------------

_WORKER = """
import json, os, sys
from models.config import ModelConfigError
from transforms.embed import EmbedText
from transforms.module_cache import local_module_dir
preprocessor, encoder, empty_cache = sys.argv[1:]
result = {"uid": os.geteuid(), "paths": [local_module_dir(preprocessor), local_module_dir(encoder)],
          "vector": EmbedText(preprocessor, encoder).probe("Short.").tolist()}
os.environ["BEAM_EMBED_CACHE"] = empty_cache
try:
    local_module_dir(encoder)
except ModelConfigError as e:
    result["empty_cache_error"] = str(e)
print(json.dumps(result))
"""


def _set_writable(root: str, writable: bool):
    for d, dirs, files in os.walk(root):
        for name in files:
            os.chmod(os.path.join(d, name), 0o644 if writable else 0o444)
        os.chmod(d, 0o755 if writable else 0o555)


def _as_nobody() -> list[str]:
    """A command prefix that drops root (whom file modes do not stop) to ``nobody``.
    util-linux's setpriv: Popen(user=...) cannot exec this venv's python, whose
    interpreter lies under the 0700 /root, while setpriv can."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: cannot make a cache read-only")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def read_only_caches(converted):
    """(a cache holding the model, an empty one), neither writable by the worker: the
    worker runs as ``nobody`` when the tests run as root (root ignores modes)."""
    root = tempfile.mkdtemp(prefix="beam-embed-ro-")  # not under pytest's 0700 tmp dirs
    os.chmod(root, 0o755)
    baked, empty, home = (os.path.join(root, name) for name in ("baked", "empty", "home"))
    copy_model(converted.root, baked)
    os.makedirs(empty)
    os.makedirs(home)
    for cache in (baked, empty):
        _set_writable(cache, False)
    if os.geteuid() == 0:
        os.chown(home, 65534, 65534)
    yield baked, empty, home
    for cache in (baked, empty):
        _set_writable(cache, True)
    shutil.rmtree(root)


def test_a_worker_process_resolves_the_handles_in_its_own_read_only_cache(
        converted, read_only_caches):
    from transforms.embed import EmbedText
    baked, empty, home = read_only_caches
    before = file_tree(baked)
    preprocessor, encoder = default_handle("preprocessor"), default_handle("encoder")
    worker = subprocess.run(
        [*_as_nobody(), sys.executable, "-c", _WORKER, preprocessor, encoder, empty],
        capture_output=True, text=True, timeout=120, cwd=home,
        env={**os.environ, "BEAM_EMBED_CACHE": baked, "HOME": home, "PYTHONPATH": REPO})
    assert worker.returncode == 0, worker.stderr[-3000:]
    result = json.loads(worker.stdout.splitlines()[-1])
    assert os.geteuid() != 0 or result["uid"] == 65534
    model_dir = os.path.join(baked, "models", os.path.basename(converted.root))
    assert result["paths"] == [os.path.join(model_dir, "preprocessor"), os.path.join(model_dir, "encoder")]
    here = EmbedText(preprocessor, encoder).probe("Short.")
    assert np.abs(np.asarray(result["vector"]) - here).max() <= 1e-6
    assert file_tree(baked) == before  # nothing written
    # An empty cache the worker cannot write to: a clear error, not a traceback.
    assert result["empty_cache_error"].startswith(
        f"the default model is not in BEAM_EMBED_CACHE ({empty}) and cannot be converted there: ")
    assert os.listdir(empty) == [] and stat.S_IMODE(os.stat(empty).st_mode) == 0o555
