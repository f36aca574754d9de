"""``--model_copies``: encoder copies shared by a machine's SDK processes, and placement.

* Two SDK processes (``multi_processing``, 2 workers) with ``model_copies=1`` load the
  encoder exactly once between them (each real load leaves a marker file in
  ``$BEAM_EMBED_LOAD_MARKERS``), while both tokenize; the rows equal a per-process
  run's within 1e-5, and an out-of-memory raised in the copy's process still splits
  batches in the callers, down to one dead letter, nothing lost.
* A TensorFlow error that does not pickle arrives through Beam's proxy as its own
  class, not as multiprocessing's opaque RemoteError.
* Copies go round-robin over the devices TensorFlow sees (logical CPU devices here).
"""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import uuid

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.utils.multi_process_shared import MultiProcessShared

from tests.pipeline_helpers import fails_with, module_args, read_dead_letters, read_parquet_rows
from tests.portable_runner import REPO
from tests.test_oom_backoff import SmallerDeviceEncoder, documents
from transforms import counters
from transforms.embed import EmbedText
from transforms.encode import EmbeddingSpec, ServedEncoder, TextEncoder, parse_model_copies
from transforms.placement import claim_slot
from transforms.text_modules import LOAD_MARKERS_ENV
from transforms.write import WriteDeadLetters, WriteEmbeddings


def _embed(prefix, model, options, model_copies, encoder_class=SmallerDeviceEncoder):
    with beam.Pipeline(options=PipelineOptions(options)) as p:
        result = (p | beam.Create(documents())
                  | EmbedText(model.preprocessor, model.encoder, EmbeddingSpec(),
                              encoder_class=encoder_class, model_copies=model_copies))
        result.rows | WriteEmbeddings(prefix, dim=32)
        result.dead_letters | WriteDeadLetters(f"{prefix}-errors")
    return read_parquet_rows(prefix), read_dead_letters(f"{prefix}-errors"), \
        counters.committed_counters(p.result)


def _markers(directory) -> dict[str, set[int]]:
    """kind ('encoder' or 'module') -> the pids that loaded one."""
    found: dict[str, list[int]] = {}
    for name in os.listdir(directory):
        kind, pid, _ = name.split("-")
        found.setdefault(kind, []).append(int(pid))
    return found


def test_two_sdk_processes_share_one_encoder_and_oom_still_splits(tmp_path, tiny_random_model,
                                                                   monkeypatch):
    expected, _, _ = _embed(str(tmp_path / "per-process"), tiny_random_model,
                            ["--runner=FnApiRunner"], model_copies=0, encoder_class=TextEncoder)
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv(LOAD_MARKERS_ENV, str(markers))
    # The SDK processes unpickle SmallDeviceEncoder by module name: tests.test_oom_backoff.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    rows, letters, totals = _embed(
        str(tmp_path / "shared"), tiny_random_model,
        ["--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        model_copies=1)

    loads = _markers(markers)
    assert len(loads["encoder"]) == 1, loads
    assert os.getpid() not in loads["encoder"]  # loaded in an SDK process
    # Tokenizing stayed in each SDK process: both loaded the preprocessor.
    assert len(set(loads["module"])) == 2, loads
    assert totals[counters.OOM_SPLITS] > 0  # ResourceExhaustedError crossed back as itself
    assert set(rows) == set(expected) - {"too-big-alone"}
    for doc_id, row in rows.items():
        assert np.abs(row["embedding"] - expected[doc_id]["embedding"]).max() <= 1e-5, doc_id
    [letter] = letters
    assert letter["id"] == "too-big-alone" and letter["reason"] == "inference_error"
    assert letter["detail"].startswith("out of memory even alone: ResourceExhaustedError")
    assert totals[counters.EMBEDDED] == 80
    assert totals[counters.DEAD_LETTERED["inference_error"]] == 1


class _Unpicklable:
    """Stands for a graph error's op: an object pickle refuses."""

    def __init__(self):
        self.lock = threading.Lock()


class _FailingEncoder:
    def embed(self, pieces, seq_length=None):
        raise tf.errors.ResourceExhaustedError(None, _Unpicklable(), "OOM when allocating (test)")


def _through_proxy(make):
    return MultiProcessShared(make, tag=f"beam-embed-test-{uuid.uuid4().hex}", always_proxy=True).acquire()


def test_a_tf_error_crosses_the_proxy_as_its_own_class():
    bare = _through_proxy(_FailingEncoder)
    with pytest.raises(multiprocessing.managers.RemoteError):  # why ServedEncoder maps
        bare.embed([])
    served = _through_proxy(lambda: ServedEncoder(_FailingEncoder()))
    with pytest.raises(tf.errors.ResourceExhaustedError, match="OOM when allocating"):
        served.embed([])


def test_model_copies_values(tmp_path, capsys):
    assert parse_model_copies("auto") == "auto" and parse_model_copies("0") == 0
    assert parse_model_copies("3") == 3
    for bad in ("-1", "two", "1.5", "", "65", "１"):
        with pytest.raises(ValueError, match="--model_copies"):
            parse_model_copies(bad)
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello\n", encoding="utf-8")
    fails_with(capsys, [f"--input={corpus}", f"--output={tmp_path / 'o'}", "--model_copies=-1"],
               "--model_copies '-1'")


CLAIM = "import sys; from transforms.placement import claim_slot; " \
        "print(' '.join(str(claim_slot('job', sys.argv[1])) for _ in range(10)))"


def test_slots_are_claimed_once_each_across_processes(tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO}
    processes = [subprocess.Popen([sys.executable, "-c", CLAIM, str(tmp_path)], stdout=subprocess.PIPE,
                                  text=True, env=env, cwd=REPO) for _ in range(3)]
    claimed = sorted(int(slot) for process in processes for slot in process.communicate(timeout=60)[0].split())
    assert claimed == list(range(30))
    assert claim_slot("another job", str(tmp_path)) == 0


PLACEMENT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    [cpu] = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 3)
    from transforms.encode import EmbeddingSpec, EncoderModelHandler
    from transforms.tokenize import Piece
    handler = EncoderModelHandler(sys.argv[1], sys.argv[2], EmbeddingSpec(), model_copies=4)
    copies = [handler.load_model()._encoder for _ in range(4)]
    piece = Piece("d", "s", ((2023, 2003, 1037, 3231),), 6, False, 0, 1, None, None)
    vectors = [c.embed([piece]) for c in copies]
    from transforms.text_modules import load_encoder  # cached: the copies' own modules
    print(json.dumps({
        "variables": [sorted({v.device.rsplit("device:", 1)[-1] for v in
                              load_encoder(sys.argv[2], c.device).variables}) for c in copies],
        "devices": [c.device for c in copies],
        "same_object": copies[3] is copies[0],
        "max_diff": float(max(np.abs(v - vectors[0]).max() for v in vectors)),
    }))
""")


def test_copies_go_round_robin_over_the_visible_devices(tiny_random_model):
    """Three logical CPU devices stand for three GPUs: copies 0, 1, 2 land on devices
    0, 1, 2, copy 3 on device 0 again (the same process's copy there: one per device)."""
    result = subprocess.run([sys.executable, "-c", PLACEMENT, tiny_random_model.preprocessor,
                             tiny_random_model.encoder], capture_output=True, text=True, timeout=180,
                            cwd=REPO, env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    import json
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["devices"] == ["/CPU:0", "/CPU:1", "/CPU:2", "/CPU:0"]
    assert got["variables"] == [["CPU:0"], ["CPU:1"], ["CPU:2"], ["CPU:0"]]
    assert got["same_object"]
    assert got["max_diff"] <= 1e-6
