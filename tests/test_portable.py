"""The real CLI through Beam's portable Fn API path, as Dataflow Runner v2 runs it.

A job service and an external SDK worker pool run as processes of their own, from
this environment (tests/portable_runner.py); the CLI submits the pipeline proto, and
its stages (pickled DoFns, coders, RunInference's shared models) run in SDK harness
processes the worker pool starts. The rows must equal an in-process FnApiRunner run's.

Where the work ran is made visible with two caches. The worker pool's
``BEAM_EMBED_CACHE`` holds the real default model; the client's holds a decoy under
the same model id, with the tokenizer's vocabulary reordered (it loads, probes and
declares the same dimension, but gives other token ids). Rows equal to the
reference run's therefore show that the default model's symbolic handles reached
the workers and were resolved there, in the workers' own cache, and that nothing
was embedded in the client's process.
"""
from __future__ import annotations

import concurrent.futures
import json
import os

import numpy as np
import pytest

from models.default_model import ensure_default_model
from tests import portable_runner
from transforms.text_modules import LOAD_MARKERS_ENV
from tests.pipeline_helpers import copy_model, file_tree, read_dead_letters, read_parquet_rows, run_cli

TEXTS = ["The weather is lovely today.", "Il fait beau aujourd'hui.", "今天天气很好。",
         "A much longer text about cooking pasta, with tomatoes, garlic, olive oil and basil, "
         "simmered slowly while the water boils and the kitchen fills with a wonderful smell, "
         "then served with bread and a green salad to friends who came from far away.",
         "Short.", "Habari za asubuhi 🌞"]
# Windows of 32 tokens: the long text is embedded in chunks, merged after a GroupByKey.
OPTIONS = ["--long_text=chunk", "--max_seq_length=32", "--keep_text"]
# Two duplicates and one blank line: the summary must count them through the job service.
CORPUS = TEXTS + ["", TEXTS[0], TEXTS[1]]
TOLERANCE = 1e-5
FIRST_WORDPIECE = 999  # BERT vocabularies: [PAD], [unused*], [UNK], [CLS], [SEP], [MASK] first


def _make_decoy(model_root: str) -> None:
    """Reorder the word pieces of the preprocessor's vocabulary (an asset read when the
    module loads): same size and special tokens, other ids for every word."""
    vocab = os.path.join(model_root, "preprocessor", "assets", "vocab.txt")
    with open(vocab, encoding="utf-8") as f:
        lines = f.read().splitlines()
    with open(vocab, "w", encoding="utf-8") as f:
        f.write("\n".join(lines[:FIRST_WORDPIECE] + lines[FIRST_WORDPIECE:][::-1]) + "\n")


def test_cli_on_the_portable_runner_with_an_external_worker_pool(tmp_path):
    model = ensure_default_model()  # the session's cache: the reference run's model
    worker_cache, client_cache = str(tmp_path / "worker-cache"), str(tmp_path / "client-cache")
    copy_model(model.root, worker_cache)
    _make_decoy(copy_model(model.root, client_cache))
    worker_files = file_tree(worker_cache)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    logs = str(tmp_path / "logs")
    markers = tmp_path / "load-markers"  # one file per real module load in the workers
    markers.mkdir()

    reference, portable = str(tmp_path / "reference" / "emb"), str(tmp_path / "portable" / "emb")
    with portable_runner.job_service_and_worker_pool(
            logs, worker_env={"BEAM_EMBED_CACHE": worker_cache,
                              LOAD_MARKERS_ENV: str(markers)}) as (jobs, workers), \
            concurrent.futures.ThreadPoolExecutor(1) as client:
        # The client process starts up (TensorFlow, the probe) while this process
        # makes the reference run: on two cores that saves a good part of a minute.
        submitted = client.submit(
            portable_runner.run_cli_portable,
            # One encoder copy per machine: the workers' calls go through Beam's
            # multi_process_shared server, as on a Dataflow GPU worker.
            [f"--input={corpus}", f"--output={portable}", *OPTIONS, "--model_copies=1"],
            jobs, workers, env={"BEAM_EMBED_CACHE": client_cache}, log_dir=logs)
        expected_summary = run_cli(f"--input={corpus}", f"--output={reference}", *OPTIONS)
        result = submitted.result()
        assert result.returncode == 0, (f"{result.stderr[-4000:]}\nworker pool:\n{workers.log_tail()}"
                                        f"\njob service:\n{jobs.log_tail()}")
        workers.check_alive()
        assert "Requesting worker at " + workers.endpoint in jobs.log_tail(1 << 20)
        assert "Starting worker with command" in workers.log_tail(1 << 20)

    # The summary the CLI printed, computed from the job service's metrics.
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    with open(f"{portable}-summary.json", encoding="utf-8") as f:
        assert json.load(f) == summary
    assert summary["read"] == len(CORPUS) and summary["embedded"] == len(TEXTS)
    assert summary["duplicates"] == 2 and summary["dead_lettered"] == {"empty_text": 1}
    for key in ("read", "embedded", "duplicates", "dead_lettered", "tokens", "truncated"):
        assert summary[key] == expected_summary[key], key

    want, got = read_parquet_rows(reference), read_parquet_rows(portable)
    assert set(got) == set(want) and len(got) == len(TEXTS)
    for doc_id, row in want.items():
        diff = np.abs(got[doc_id]["embedding"] - row["embedding"]).max()
        assert diff <= TOLERANCE, f"{doc_id}: max abs diff {diff}"
        for column in ("n_tokens", "n_chunks", "text", "truncated"):
            assert got[doc_id][column] == row[column], (doc_id, column)
    assert max(row["n_chunks"] for row in got.values()) > 1
    assert ([(d["reason"], d["source"]) for d in read_dead_letters(f"{portable}-errors")]
            == [(d["reason"], d["source"]) for d in read_dead_letters(f"{reference}-errors")])
    # The encoder was loaded once, by the workers (the client's probe leaves no marker).
    assert len([n for n in os.listdir(markers) if n.startswith("encoder-")]) == 1, os.listdir(markers)
    # The workers found the model in their cache and wrote nothing there.
    assert file_tree(worker_cache) == worker_files


def test_the_decoy_would_be_seen(tmp_path):
    """The decoy's ids differ on the corpus: rows embedded with it could not pass above."""
    import tensorflow as tf
    import tensorflow_hub as hub
    import tensorflow_text  # noqa: F401  (registers the preprocessor's ops)
    model = ensure_default_model()
    decoy = copy_model(model.root, str(tmp_path / "cache"))
    _make_decoy(decoy)
    texts = tf.constant(TEXTS)
    real = hub.load(model.preprocessor).tokenize(texts).flat_values.numpy()
    fake = hub.load(os.path.join(decoy, "preprocessor")).tokenize(texts).flat_values.numpy()
    assert real.shape == fake.shape and (real != fake).mean() > 0.8  # all but [UNK]


@pytest.mark.parametrize("what", ["job service", "worker pool"])
def test_a_service_that_dies_fails_fast_with_its_log(tmp_path, what):
    """A broken environment (here: no Beam for the python on PATH) fails in seconds,
    quoting the service's log, instead of hanging the test run."""
    fake_python = tmp_path / "bin" / "python"
    fake_python.parent.mkdir()
    fake_python.write_text("#!/bin/sh\necho 'No module named apache_beam' >&2\nexit 1\n")
    fake_python.chmod(0o755)
    start = (portable_runner.start_job_service if what == "job service"
             else portable_runner.start_worker_pool)
    with pytest.raises(portable_runner.ServiceError, match="No module named apache_beam"):
        start(str(tmp_path / "logs"), python=str(fake_python), timeout=20)
