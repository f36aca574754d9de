"""The embedded default model (all-MiniLM-L6-v2, real weights) embeds like sentence-transformers.

sentence-transformers runs BertModel, mean-pools the token embeddings with the
attention mask and L2-normalizes (modules.json: Transformer, Pooling, Normalize),
truncating at max_seq_length 256 (sentence_bert_config.json). The same pooling is
done here with numpy on our encoder's sequence_output, packed at seq_length 256.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
import tensorflow_text  # noqa: F401  (registers the preprocessor's ops)

import models.convert
from models.default_model import ensure_default_model
from tests.reference import sentence_embeddings

MAX_SEQ_LENGTH = 256  # sentence_bert_config.json of all-MiniLM-L6-v2

LONG = " ".join(["The committee reviewed every proposal submitted during the spring session, "
                 "weighing costs, benefits and the opinions of residents who attended."] * 14)
SENTENCES = [
    "Hello world!", "你好，世界", "नमस्ते दुनिया",
    "A man is playing a guitar on the street.",
    "The quick brown fox jumps over the lazy dog.",
    "Le chat dort sur le canapé depuis ce matin.",
    "Der Zug nach München hat heute zwanzig Minuten Verspätung.",
    "El museo abre a las nueve y cierra a las seis.",
    "Привет! Как прошёл твой день?",
    "مرحبا بالعالم، كيف حالك اليوم؟",
    "今日はとても良い天気ですね。",
    "Habari ya asubuhi, rafiki yangu.",
    "ہیلو دنیا، آپ کیسے ہیں؟",
    "naïve café résumé ÅNGSTRÖM",
    "I love pizza 🍕 and emoji 👨‍👩‍👧‍👦👍🏽!",
    "Prices rose 3.5% in 2023, to $1,299.99 per unit.",
    "What??? No way!!! ...",
    "Python, 中文 and हिन्दी mixed in one sentence.",
    "",
    LONG,
]


@pytest.fixture(scope="module")
def default_model():
    return ensure_default_model()


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _embed(dirs, texts: list[str], seq_length: int) -> np.ndarray:
    preprocessor, encoder = hub.load(dirs.preprocessor), hub.load(dirs.encoder)
    inputs = preprocessor.bert_pack_inputs([preprocessor.tokenize(tf.constant(texts))],
                                           seq_length=tf.constant(seq_length))
    tokens = encoder(inputs)["sequence_output"].numpy()
    mask = inputs["input_mask"].numpy()[:, :, None].astype(np.float32)
    mean = (tokens * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)


def test_matches_sentence_transformers(default_model, minilm_dir, ref_python):
    assert default_model.root.startswith(os.environ["BEAM_EMBED_CACHE"])
    preprocessor = hub.load(default_model.preprocessor)
    assert preprocessor.tokenize(tf.constant([LONG])).row_lengths()[0] > MAX_SEQ_LENGTH

    want = sentence_embeddings(minilm_dir, SENTENCES)
    ours = _embed(default_model, SENTENCES, MAX_SEQ_LENGTH)
    assert ours.shape == want.shape == (len(SENTENCES), 384)
    cosine = _cosine(ours, want)
    for text, value in zip(SENTENCES, cosine):
        assert value >= 0.9999, f"cosine {value:.6f} for {text[:40]!r}"
    # The long sentence does exercise truncation: without it, it would not match.
    untruncated = _embed(default_model, [LONG], 512)
    assert _cosine(untruncated, want[-1:])[0] < 0.9999


def test_second_call_does_not_rebuild(default_model, monkeypatch):
    manifest = os.path.join(default_model.root, "beam_embed_model.json")
    before = (os.stat(default_model.root).st_mtime_ns, os.stat(manifest).st_mtime_ns)

    def no_conversion(*args, **kwargs):
        raise AssertionError("ensure_default_model converted MiniLM a second time")
    monkeypatch.setattr(models.convert, "convert_checkpoint", no_conversion)
    start = time.perf_counter()
    again = ensure_default_model()
    assert time.perf_counter() - start < 2.0
    assert again.root == default_model.root
    assert (os.stat(again.root).st_mtime_ns, os.stat(manifest).st_mtime_ns) == before
