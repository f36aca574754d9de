"""The bench's onnxruntime contender (bench/ort_encode.py in .venv-ref) embeds right.

Nothing fast-but-wrong may count in the bench, so its embeddings are checked
against the references: sentence-transformers on MiniLM's real weights, and
transformers' AutoModel + mean pooling on a random tiny XLM-R (both through
reference/hf_reference.py). The plans here are written by hand to be unkind: batches
out of corpus order, one padded far past its longest document, one whose length is
shorter than Hugging Face's tokens (the contender must widen it, not cut
documents), a document past max_seq_length. The export cache must re-export when the
weights change, even to a same-sized file with the old mtime.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from tests import reference
from tests.conftest import ROBERTA_LIKE, SAMPLE_TEXT, TINY, _vocab_size

SCRIPT = os.path.join(reference.REPO, "bench", "ort_encode.py")
MIN_COSINE = 0.9999


@pytest.fixture(scope="module")
def ort_python(ref_python):
    probe = subprocess.run([ref_python, "-c", "import onnxruntime, onnx"], env=reference._env(),
                           capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"the reference venv lacks onnxruntime/onnx (reference/requirements.txt pins them): "
                    f"{probe.stderr.strip().splitlines()[-1:]}")
    return ref_python


def _texts() -> list[str]:
    with open(SAMPLE_TEXT, encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    words = " ".join(lines).split()
    return [*lines[:9],
            " ".join(words[:400]),           # past max_seq_length: truncated alike
            "x",                             # one character
            "Beam™ ﬁne ς，ok 😀",              # characters where tokenizers disagree
            "\ttabs\tand  spaces  "]


def _plan(n: int, max_seq_length: int) -> dict:
    order = list(range(n))[::-1]
    return {"max_seq_length": max_seq_length, "docs": n,
            "batches": [{"docs": order[:5], "length": 2},      # shorter than any document
                        {"docs": order[5:6], "length": 300},   # padded far past it
                        {"docs": order[6:], "length": 64}]}


def _run_ort(ort_python, checkpoint, texts, plan, work, cache, name="run"):
    corpus, plan_path, out = (os.path.join(work, f"{name}.{ext}") for ext in ("txt", "json", "npy"))
    with open(corpus, "w", encoding="utf-8") as f:
        f.write("\n".join(texts) + "\n")
    with open(plan_path, "w") as f:
        json.dump(plan, f)
    process = subprocess.run([ort_python, SCRIPT, checkpoint, corpus, plan_path, "--save", out,
                              "--cache-dir", cache], env=reference._env(), capture_output=True, text=True)
    if process.returncode:
        return process, None, None
    line = next(l for l in reversed(process.stdout.splitlines()) if l.startswith("RESULT "))
    return process, json.loads(line[len("RESULT "):]), np.load(out)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    assert a.shape == b.shape
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _start_reference(subcommand: str, texts: list[str], work, name: str, **kwargs):
    """Start a reference embedding of ``texts``; returns (process, path of its .npy)."""
    texts_path, out = os.path.join(work, f"{name}-texts.json"), os.path.join(work, f"{name}-want.npy")
    with open(texts_path, "w", encoding="utf-8") as f:
        json.dump(texts, f, ensure_ascii=False)
    return reference.start_reference(subcommand, texts=texts_path, out=out, **kwargs), out


def _wait_reference(started) -> np.ndarray:
    process, out = started
    reference.wait_reference(process)
    return np.load(out)


def test_minilm_matches_sentence_transformers(ort_python, minilm_dir, tmp_path):
    texts = _texts()
    want = _start_reference("sentence-embed", texts, str(tmp_path), "st", model_dir=minilm_dir)
    process, result, vectors = _run_ort(ort_python, minilm_dir, texts, _plan(len(texts), 256),
                                        str(tmp_path), str(tmp_path / "cache"))
    assert process.returncode == 0, process.stderr[-3000:]
    # sentence-transformers normalises MiniLM's vectors: cosines ignore the scale.
    assert _cosines(vectors, _wait_reference(want)).min() >= MIN_COSINE
    assert result["docs"] == len(texts) and result["exported"] and result["graph"] == "optimized"
    assert result["widened_batches"] == 1
    assert result["computed_tokens"] > result["tokens"] > 256


def _random_xlmr(tmp_path, spm_dir, seed: int):
    config = dict(TINY, vocab_size=_vocab_size("xlm-roberta", spm_dir), **ROBERTA_LIKE)
    config_path = str(tmp_path / "config.json")
    with open(config_path, "w") as f:
        json.dump(config, f)
    out = str(tmp_path / f"xlmr-{seed}")
    return reference.start_reference("random-checkpoint", model_type="xlm-roberta", config=config_path,
                                     tokenizer_dir=spm_dir, seed=seed, out=out), out


def test_xlmr_matches_automodel_and_the_cache_follows_the_weights(ort_python, spm_dir, tmp_path):
    texts = _texts()
    plan = _plan(len(texts), 128)
    builds = [_random_xlmr(tmp_path, spm_dir, seed) for seed in (0, 7)]
    for process, _ in builds:
        reference.wait_reference(process)
    (_, checkpoint), (_, other) = builds
    wants = [_start_reference("mean-embed", texts, str(tmp_path), f"ref{i}", checkpoint=path, max_length=128)
             for i, (_, path) in enumerate(builds)]
    cache = str(tmp_path / "cache")

    process, first, vectors = _run_ort(ort_python, checkpoint, texts, plan, str(tmp_path), cache)
    assert process.returncode == 0, process.stderr[-3000:]
    assert first["exported"] and first["widened_batches"] == 1
    _, again, same = _run_ort(ort_python, checkpoint, texts, plan, str(tmp_path), cache)
    assert not again["exported"]
    np.testing.assert_allclose(same, vectors, rtol=1e-5, atol=1e-6)

    # Other weights of the same shape, copied over with the old file's mtime (cp -p):
    # size and mtime match, only the content tells them apart.
    weights = os.path.join(checkpoint, "model.safetensors")
    stat = os.stat(weights)
    shutil.copyfile(os.path.join(other, "model.safetensors"), weights)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(weights).st_size == stat.st_size
    _, changed, new_vectors = _run_ort(ort_python, checkpoint, texts, plan, str(tmp_path), cache)
    assert changed["exported"]

    assert _cosines(vectors, _wait_reference(wants[0])).min() >= MIN_COSINE
    assert _cosines(new_vectors, _wait_reference(wants[1])).min() >= MIN_COSINE
    assert _cosines(new_vectors, vectors).min() < 0.99


@pytest.mark.parametrize("breakage, message", [
    (lambda plan: plan.update(docs=plan["docs"] + 1), "is for 14 documents, the corpus has 13"),
    (lambda plan: plan["batches"][0]["docs"].append(0), "exactly once"),
    (lambda plan: plan["batches"].pop(), "exactly once"),
    (lambda plan: plan.pop("batches"), "is not a batch plan"),
    (lambda plan: plan["batches"].append({"docs": [], "length": 8}), "an empty batch"),
])
def test_a_plan_for_another_corpus_is_refused(ort_python, tmp_path, breakage, message):
    texts = _texts()
    plan = _plan(len(texts), 128)
    breakage(plan)
    process, _, _ = _run_ort(ort_python, str(tmp_path / "no-checkpoint"), texts, plan, str(tmp_path),
                             str(tmp_path / "cache"))
    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [process.stderr.strip()]  # one line
    assert message in process.stderr and "plan" in process.stderr
    assert not os.path.exists(tmp_path / "cache")  # refused before any export
