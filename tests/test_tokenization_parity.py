"""Our preprocessors' ids == Hugging Face's, on the same vocabulary files.

xlm-roberta: a sentencepiece model trained in this session; roberta: the byte-level
BPE fixture; bert: MiniLM's vocab.txt (lower-cased). Expected ids come from
reference/hf_reference.py (transformers), run on the tiny checkpoints' tokenizer files.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import FAMILIES, SAMPLE_TEXT
from tests.reference import hf_tokenize

SEQ_LENGTHS = (16, 128)


def _long_text() -> str:
    with open(SAMPLE_TEXT, encoding="utf-8") as f:
        return " ".join(line.strip() for line in f.readlines()[:12])


TEXTS = [
    "Hello world!", "你好，世界", "नमस्ते दुनिया",
    "J'ai oublié mon parapluie dans le métro, n'est-ce pas ?",
    "Die Straße ist schön, aber größer als erwartet.",
    "مرحبا بالعالم، كيف حالك اليوم؟",
    "Привет, мир! Как у тебя дела?",
    "こんにちは世界、今日はいい天気ですね。",
    "Habari ya dunia, karibu sana rafiki yangu!",
    "ہیلو دنیا، آپ کیسے ہیں؟",
    "¿Dónde está la biblioteca? ¡Hasta mañana!",
    "Emoji 😀👍🏽 family 👨‍👩‍👧‍👦 flag 🇫🇷!",
    "Mixed: English, 中文, हिन्दी, русский и العربية in één zin",
    "naïve façade résumé Ångström Crème brûlée ÉCOLE",
    "ΣΊΣΥΦΟΣ™ ｆｕｌｌ，ｗｉｄｔｈ",
    "", "   ", "\t\n",
    "0123456789 3.14159 1,000,000 2024-01-31",
    "!!! ??? ... --- ((( ))) @#$%^&* ,,,",
    _long_text(),
]


@pytest.fixture(scope="module")
def reference_ids(tiny_models):
    """family -> Hugging Face's ids for TEXTS (see tests.reference.hf_tokenize)."""
    cache = {}

    def get(family):
        if family not in cache:
            cache[family] = hf_tokenize(family, tiny_models.checkpoint(family), TEXTS, SEQ_LENGTHS)
        return cache[family]
    return get


def _rows(ragged) -> list[list[int]]:
    return [list(map(int, row)) for row in ragged.to_list()]


def _specials(hf) -> tuple[int, int, int]:
    """(start, end, pad) ids as Hugging Face packs them, read off 'Hello world!'."""
    row, n = hf["packed"][16]["input_ids"][0], len(hf["tokens"][0])
    return row[0], row[n + 1], row[-1]


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenize_matches_hugging_face(family, tiny_models, reference_ids):
    preprocessor, _ = tiny_models.loaded(family)
    hf = reference_ids(family)
    assert len(hf["tokens"][-1]) > 128, "the long text should need truncation at 128"
    ours = preprocessor.tokenize(tf.constant(TEXTS))
    assert isinstance(ours, tf.RaggedTensor)
    for text, got, want in zip(TEXTS, _rows(ours), hf["tokens"]):
        assert got == want, f"{family}: {text!r}"


@pytest.mark.parametrize("seq_length", SEQ_LENGTHS)
@pytest.mark.parametrize("family", FAMILIES)
def test_single_segment_packing_matches_hugging_face(family, seq_length, tiny_models,
                                                     reference_ids):
    preprocessor, _ = tiny_models.loaded(family)
    want = reference_ids(family)["packed"][seq_length]
    got = preprocessor.bert_pack_inputs([preprocessor.tokenize(tf.constant(TEXTS))],
                                        seq_length=tf.constant(seq_length))
    for i, text in enumerate(TEXTS):
        assert got["input_word_ids"][i].numpy().tolist() == want["input_ids"][i], f"{family}: {text!r}"
        assert got["input_mask"][i].numpy().tolist() == want["attention_mask"][i], text
    assert not np.any(got["input_type_ids"].numpy())


@pytest.mark.parametrize("family", FAMILIES)
def test_calling_the_preprocessor_packs_to_128(family, tiny_models, reference_ids):
    preprocessor, _ = tiny_models.loaded(family)
    want = reference_ids(family)["packed"][128]
    got = preprocessor(tf.constant(TEXTS))
    assert got["input_word_ids"].numpy().tolist() == want["input_ids"]
    assert got["input_mask"].numpy().tolist() == want["attention_mask"]


def round_robin(lengths: list[int], budget: int) -> list[int]:
    """How many tokens of each segment TF Hub's bert_pack_inputs keeps: one from each
    segment in turn until the budget is spent (tf_text.RoundRobinTrimmer)."""
    taken = [0] * len(lengths)
    while sum(taken) < budget and any(t < n for t, n in zip(taken, lengths)):
        for i, n in enumerate(lengths):
            if taken[i] < n and sum(taken) < budget:
                taken[i] += 1
    return taken


@pytest.mark.parametrize("seq_length", SEQ_LENGTHS)
@pytest.mark.parametrize("family", FAMILIES)
def test_pair_packing(family, seq_length, tiny_models, reference_ids):
    """Pairs (text i, text -1-i). Where both fit, ids, mask and type ids equal Hugging
    Face's. Where they do not, the two conventions differ on purpose: ours trims
    round-robin (TF Hub's bert_pack_inputs), Hugging Face's "longest_first" gives the
    odd token to the other segment. Truncated pairs are checked against round-robin
    applied to Hugging Face's own tokens and special ids instead."""
    preprocessor, _ = tiny_models.loaded(family)
    hf = reference_ids(family)
    want = hf["packed_pairs"][seq_length]
    start, end, pad = _specials(hf)
    separator = [end] if family == "bert" else [end, end]
    got = preprocessor.bert_pack_inputs(
        [preprocessor.tokenize(tf.constant(TEXTS)), preprocessor.tokenize(tf.constant(TEXTS[::-1]))],
        seq_length=tf.constant(seq_length))
    got = {k: v.numpy().tolist() for k, v in got.items()}
    checked = {"fits": 0, "truncated": 0}
    for i in range(len(TEXTS)):
        a, b = hf["tokens"][i], hf["tokens"][-1 - i]
        budget = seq_length - 2 - len(separator)
        if len(a) + len(b) <= budget:
            checked["fits"] += 1
            assert got["input_word_ids"][i] == want["input_ids"][i], (TEXTS[i], TEXTS[-1 - i])
            assert got["input_mask"][i] == want["attention_mask"][i]
            if "token_type_ids" in want:
                assert got["input_type_ids"][i] == want["token_type_ids"][i]
            continue
        checked["truncated"] += 1
        ka, kb = round_robin([len(a), len(b)], budget)
        ids = [start] + a[:ka] + separator + b[:kb] + [end]
        assert got["input_word_ids"][i] == ids + [pad] * (seq_length - len(ids))
        assert got["input_mask"][i] == [1] * len(ids) + [0] * (seq_length - len(ids))
        # BERT: [CLS] A [SEP] are type 0, B [SEP] type 1; RoBERTa's types are all 0.
        types = [0] * (ka + 2) + [1] * (kb + 1) if family == "bert" else [0] * len(ids)
        assert got["input_type_ids"][i] == types + [0] * (seq_length - len(ids))
    assert checked["truncated"] >= 2, checked
    if seq_length == 128:
        assert checked["fits"] >= 10, checked


def test_real_xlm_roberta_vocabulary():
    """The ids in the seeds (fairseq's / Hugging Face's xlm-roberta-base docs)."""
    path = os.environ.get("XLMR_SPM_MODEL")
    if not path:
        pytest.skip("set XLMR_SPM_MODEL to the real XLM-R sentencepiece.bpe.model")
    from models.export import build_preprocessor
    preprocessor = build_preprocessor("xlm-roberta", {"sentencepiece.bpe.model": path}, False)
    expected = {
        "Hello world!": [0, 35378, 8999, 38, 2],
        "你好，世界": [0, 6, 124084, 4, 3221, 2],
        "नमस्ते दुनिया": [0, 68700, 97883, 29405, 2],
    }
    packed = preprocessor.bert_pack_inputs([preprocessor.tokenize(tf.constant(list(expected)))],
                                           seq_length=tf.constant(16))
    for row, mask, want in zip(packed["input_word_ids"].numpy(), packed["input_mask"].numpy(),
                               expected.values()):
        assert row[mask == 1].tolist() == want
