"""ByteLevelBpeTokenizer against Hugging Face's RobertaTokenizer, id for id.

Expected ids come from reference/hf_bpe_tokenize.py run in the reference venv
(transformers, no TensorFlow), on a vocabulary trained from the bundled sample.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
import tensorflow as tf

from models.tokenizers.byte_bpe import ByteLevelBpeTokenizer, pretokenize
from tests.fixtures import bpe_vocab

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HF_SCRIPT = os.path.join(REPO, "reference", "hf_bpe_tokenize.py")
NUM_MERGES = 300

CURATED = [
    # en, contractions, digits
    "Hello world!", "I don't know, he'll see what they've done.", "It's 3.14159 or 42,000 people.",
    "Call +44 20 7946 0958 at 10:30pm", "DON'T SHOUT", "'s", "'ss 'S '", "rock'n'roll",
    # whitespace: empty, only whitespace, runs, leading and trailing, tabs and newlines
    "", " ", "   ", "\t\n", "\r\n", "a  b", "a   b", "a\tb", "a \tb", "a\t b", " a", "  a", "a ",
    "a  ", "  's", " 's", "x  's", "\n\nParagraph two", "line one\nline two\n", "tab\t\tcity",
    "   leading and trailing   ", "word\u00a0word", "a\u00a0\u00a0b", "a \u00a0b", "a\u00a0 b",
    "全角\u3000スペース", "a \u3000b", "a\u3000 b", "a\u2028b", "a\x0bb\x0cc", "a\x85b",
    "zero\u200bwidth", "a\u200d b",
    # other scripts
    "今天早上下了一场大雨，街上的人都撑着伞。", "我在 Berlin 学习 computer science。",
    "आज सुबह मैंने बाज़ार से ताज़ी सब्ज़ियाँ खरीदीं।", "नमस्ते  दुनिया", "हिन्दी६ with ६ digit",
    "Les élèves ont présenté leurs expériences.", "Straße, Größe, Fußball", "e\u0301te\u0301",
    "ذهبت إلى السوق صباح اليوم.", "Привет, как дела?", "東京タワーは1958年に完成しました。",
    "Habari za asubuhi!", "آج صبح بہت ٹھنڈ تھی۔", "٢٠٪ ١٢٣", "½ cup and ²³",
    # emoji, ZWJ sequences, skin tones, flags, keycaps, variation selectors
    "👨‍👩‍👧‍👦", "family 👨‍👩‍👧‍👦 time", "👩🏽‍💻👨🏻‍💻", "I ❤️ NY", "🇫🇷🇯🇵", "1️⃣ #️⃣", "🎉🎂 party",
    # mixed scripts and punctuation runs
    "Meri dost ne kaha: \"चलो, आज movie देखने चलते हैं।\"", "e-mail: info@example.org!!!",
    "...and then?!", "$100 (approx.) — €1.20 each", "C'est l'été, n'est-ce pas ?",
    # Unicode 16 letters and digits, which RE2's tables lack
    "x\U000105c0y", "1\U00010d40 2", "\U0002ebf0\U0002ebf1 ok",
]

# Pieces chosen to hit the pre-tokenizer's boundaries: whitespace of every kind
# next to letters, digits, apostrophes and symbols in every script. The plain space
# is listed three times so that runs of spaces before words come up often.
FUZZ_ALPHABET = [
    " ", " ", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2009", "\x0b", "\x85",
    "'", "'s", "'t", "'re", "'ll", "'d", "'m", "'ve", "'S", "a", "b", "Z", "é", "e\u0301", "ß",
    "1", "23", "٣", "½", "Ⅻ", "中", "文", "ह", "ि", "्", "ر", "ب", "я", "ア", "ー",
    "👍", "👨‍👩‍👧", "\u200d", "\u200b", "\ufe0f", ".", ",", "!?", "$", "-", "_", "\U000105c0",
]


def fuzz_texts(count: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(FUZZ_ALPHABET) for _ in range(rng.randint(1, 14)))
            for _ in range(count)]


def ref_python() -> str:
    path = os.environ.get("BEAM_EMBED_REF_PYTHON",
                          os.path.join(REPO, ".venv-ref", "bin", "python"))
    if not os.access(path, os.X_OK):
        pytest.skip(f"reference venv python not found at {path} (Hugging Face ids come from "
                    f"there): run `make .venv-ref/.installed` or set BEAM_EMBED_REF_PYTHON")
    return path


def hf_ids(vocab_path: str, merges_path: str, texts: list[str], work_dir) -> list[list[int]]:
    texts_path, out_path = os.path.join(work_dir, "texts.json"), os.path.join(work_dir, "ids.json")
    with open(texts_path, "w", encoding="utf-8") as f:
        json.dump(texts, f, ensure_ascii=False)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TRANSFORMERS_VERBOSITY="error",
               TOKENIZERS_PARALLELISM="false")
    done = subprocess.run(
        [ref_python(), HF_SCRIPT, "--vocab", vocab_path, "--merges", merges_path,
         "--texts", texts_path, "--out", out_path],
        env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{HF_SCRIPT} failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    with open(out_path, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def bpe_files(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("byte-bpe"))
    return bpe_vocab.write_byte_bpe(bpe_vocab.read_sample_texts(), NUM_MERGES, out)


@pytest.fixture(scope="module")
def tokenizer(bpe_files):
    return ByteLevelBpeTokenizer(*bpe_files)


def tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer.tokenize(tf.constant(texts, tf.string)).to_list()


def assert_same_ids(texts, got, expected):
    wrong = [(text, g, e) for text, g, e in zip(texts, got, expected) if g != e]
    assert not wrong, f"{len(wrong)} of {len(texts)} texts differ, first ones:\n" + "\n".join(
        f"  {text!r}: got {g}, Hugging Face {e}" for text, g, e in wrong[:10])


def test_fixture_vocab_has_roberta_layout(bpe_files):
    vocab_path, merges_path = bpe_files
    with open(vocab_path, encoding="utf-8") as f:
        vocab = json.load(f)
    with open(merges_path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert lines[0] == "#version: 0.2" and len(lines) == NUM_MERGES + 1
    assert [vocab[t] for t in ("<s>", "<pad>", "</s>", "<unk>")] == [0, 1, 2, 3]
    assert vocab["<mask>"] == len(vocab) - 1 == max(vocab.values())
    assert all(symbol in vocab for symbol in bpe_vocab.bytes_to_unicode().values())
    # Retraining gives the same files: the fixture is deterministic.
    assert bpe_vocab.train_byte_bpe(bpe_vocab.read_sample_texts(), NUM_MERGES)[0] == vocab


def test_matches_hugging_face(tokenizer, bpe_files, tmp_path):
    texts = CURATED + bpe_vocab.read_sample_texts() + fuzz_texts()
    expected = hf_ids(*bpe_files, texts, tmp_path)
    assert_same_ids(texts, tokenize(tokenizer, texts), expected)


def test_matches_hugging_face_with_many_merges(tmp_path):
    # More merges make long words go through many rounds, and CJK / Devanagari
    # symbols merge across characters.
    vocab_path, merges_path = bpe_vocab.write_byte_bpe(
        bpe_vocab.read_sample_texts(), 1500, str(tmp_path / "bpe"))
    texts = CURATED + bpe_vocab.read_sample_texts() + fuzz_texts(seed=1)
    texts.append("".join(bpe_vocab.read_sample_texts()).replace(" ", ""))  # one very long line
    expected = hf_ids(vocab_path, merges_path, texts, tmp_path)
    assert_same_ids(texts, tokenize(ByteLevelBpeTokenizer(vocab_path, merges_path), texts),
                    expected)


def test_pretokenize_matches_gpt2_regex():
    """Runs without the reference venv: the lookahead-free split against the original regex."""
    texts = CURATED + fuzz_texts(seed=2)
    got = [[p.decode("utf-8") for p in row] for row in pretokenize(tf.constant(texts)).to_list()]
    # \p{L} / \p{N} of the `regex` module may be a newer Unicode than RE2 and Oniguruma.
    newer = ("\U000105c0", "\U00010d40", "\U0002ebf0", "\U0002ebf1")
    for text, pieces in zip(texts, got):
        if not any(c in text for c in newer):
            assert pieces == bpe_vocab.GPT2_PATTERN.findall(text), repr(text)


def test_empty_inputs(tokenizer):
    assert tokenize(tokenizer, ["", "x", ""])[0] == [] and tokenize(tokenizer, [""]) == [[]]
    empty = tokenizer.tokenize(tf.constant([], tf.string))
    assert empty.dtype == tf.int32 and empty.shape.as_list() == [0, None]
    assert len(tokenize(tokenizer, ["   "])[0]) > 0


def test_graph_mode_with_dynamic_batch(tokenizer):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def count_tokens(strings):
        return tokenizer.tokenize(strings).row_lengths()

    for batch in (["a"], ["Hello world", "", "नमस्ते"], CURATED):
        assert count_tokens(tf.constant(batch)).numpy().tolist() == [
            len(ids) for ids in tokenize(tokenizer, batch)]


def test_survives_saved_model(tokenizer, bpe_files, tmp_path):
    class Preprocessor(tf.Module):
        def __init__(self, tokenizer):
            super().__init__()
            self.tokenizer = tokenizer

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def __call__(self, strings):
            return self.tokenizer.tokenize(strings)

    texts = CURATED + fuzz_texts(count=50, seed=3)
    export_dir = str(tmp_path / "preprocessor")
    tf.saved_model.save(Preprocessor(ByteLevelBpeTokenizer(*bpe_files)), export_dir)
    assert sorted(os.listdir(os.path.join(export_dir, "assets"))) == ["merges.txt", "vocab.json"]

    loaded = tf.saved_model.load(export_dir)
    assert loaded(tf.constant(texts)).to_list() == tokenize(tokenizer, texts)
    assert loaded(tf.constant([], tf.string)).to_list() == []


def test_batch_of_256_sentences_is_fast(tokenizer):
    batch = tf.constant((bpe_vocab.read_sample_texts() * 2)[:256])
    tokenizer.tokenize(batch)  # traces the graph
    start = time.perf_counter()
    tokenizer.tokenize(batch)
    # Measured at about 0.01 s on 2 CPU cores; the bound leaves room for a busy machine.
    assert time.perf_counter() - start < 2.0


def test_rejects_merges_outside_the_vocabulary(bpe_files, tmp_path):
    merges_path = tmp_path / "merges.txt"
    merges_path.write_text("#version: 0.2\nq z\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not in"):
        ByteLevelBpeTokenizer(bpe_files[0], str(merges_path))
