"""End to end through the real CLI on the FnApiRunner, with the embedded MiniLM.

Rows are checked against the encoder called directly, one text at a time with no
padding (tests/pipeline_helpers.DirectEncoder).
"""
from __future__ import annotations

import csv
import glob
import hashlib
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.pipeline_helpers import DirectEncoder, read_dead_letters, read_parquet_rows, run_cli

TEXTS = [
    "The weather is lovely today.",
    "Il fait beau aujourd'hui.",
    "Das Wetter ist heute schön.",
    "今天天气很好。",
    "आज मौसम अच्छा है।",
    "Сегодня хорошая погода.",
    "الطقس جميل اليوم.",
    "A much longer sentence about cooking pasta, with tomatoes, garlic, olive oil and basil, "
    "simmered slowly while the water boils and the kitchen fills with a wonderful smell.",
    "Short.",
    "Habari za asubuhi 🌞",
]
TOLERANCE = 2e-5  # float32, different padding and batch shapes


@pytest.fixture(scope="module")
def model():
    from models.default_model import ensure_default_model
    return ensure_default_model()


@pytest.fixture(scope="module")
def direct(model):
    return DirectEncoder(model.preprocessor, model.encoder)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return str(path)


def assert_rows_match(rows, expected: dict[str, np.ndarray]):
    assert set(rows) == set(expected)
    for doc_id, vector in expected.items():
        diff = np.abs(rows[doc_id]["embedding"] - vector).max()
        assert diff <= TOLERANCE, f"{doc_id}: max abs diff {diff}"


def test_text_input_parquet_output_matches_direct_encoder(tmp_path, direct):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS + TEXTS[:2]) + "\n", encoding="utf-8")
    out = str(tmp_path / "out" / "emb")
    summary = run_cli(f"--input={corpus}", f"--output={out}")
    rows = read_parquet_rows(out)
    assert_rows_match(rows, {sha(t): direct.embed(t) for t in TEXTS})
    assert summary["read"] == len(TEXTS) + 2
    assert summary["embedded"] == len(TEXTS) and summary["duplicates"] == 2
    schema = pq.read_schema(glob.glob(f"{out}-*.parquet")[0])
    assert schema.field("embedding").type == pa.list_(pa.float32(), 384)
    meta = {k.decode(): v.decode() for k, v in schema.metadata.items()}
    assert meta["pooling"] == "mean" and meta["dim"] == "384" and meta["max_seq_length"] == "512"
    assert meta["encoder"].startswith("beam-embed:all-MiniLM-L6-v2-") and meta["beam_embed.version"]
    assert meta["encoder"].endswith("/encoder") and meta["preprocessor"].endswith("/preprocessor")
    for key in ("read", "embedded", "dead_lettered", "duplicates", "skipped_existing", "tokens",
                "padding_ratio", "truncated", "wall_seconds", "docs_per_second", "tokens_per_second"):
        assert key in summary


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_structured_inputs(tmp_path, direct, fmt):
    records = [{"id": f"doc-{i}", "text": t} for i, t in enumerate(TEXTS)]
    path = tmp_path / f"corpus.{fmt}"
    if fmt == "jsonl":
        write_jsonl(path, records)
    elif fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["id", "text"])
            writer.writeheader()
            writer.writerows(records)
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    out = str(tmp_path / "emb")
    summary = run_cli(f"--input={path}", "--text_field=text", f"--output={out}")
    assert summary["embedded"] == len(TEXTS)
    assert_rows_match(read_parquet_rows(out), {r["id"]: direct.embed(r["text"]) for r in records})


def test_tfrecord_output_with_feature_spec(tmp_path, direct):
    import tensorflow as tf
    from transforms.write import tfrecord_feature_spec
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(TEXTS)])
    out = str(tmp_path / "emb")
    run_cli(f"--input={path}", "--text_field=text", f"--output={out}", "--output_format=tfrecord",
            "--normalize")
    files = sorted(glob.glob(f"{out}-*-of-*.tfrecord"))
    spec = tfrecord_feature_spec(384)
    seen = {}
    for record in tf.data.TFRecordDataset(files):
        example = tf.io.parse_single_example(record, spec)
        seen[example["id"].numpy().decode()] = example["embedding"].numpy()
        assert example["truncated"].numpy() == 0 and example["n_tokens"].numpy() > 2
    assert set(seen) == {str(i) for i in range(len(TEXTS))}
    for i, t in enumerate(TEXTS):
        assert np.abs(seen[str(i)] - direct.embed(t, normalize=True)).max() <= TOLERANCE


@pytest.mark.parametrize("pooling,layer", [("cls", None), ("max", None), ("pooled_output", None),
                                           ("mean", 2), ("mean", -1), ("cls", 0)])
def test_pooling_modes_and_layers(tmp_path, direct, pooling, layer):
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(TEXTS)])
    out = str(tmp_path / "emb")
    args = [f"--input={path}", "--text_field=text", f"--output={out}", f"--pooling={pooling}"]
    if layer is not None:
        args.append(f"--layer={layer}")
    run_cli(*args)
    expected = {str(i): direct.embed(t, pooling=pooling, layer=layer) for i, t in enumerate(TEXTS)}
    assert_rows_match(read_parquet_rows(out), expected)


def test_layer_minus_one_equals_sequence_output(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(TEXTS)])
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    run_cli(f"--input={path}", "--text_field=text", f"--output={a}")
    run_cli(f"--input={path}", "--text_field=text", f"--output={b}", "--layer=-1")
    ra, rb = read_parquet_rows(a), read_parquet_rows(b)
    assert all(np.array_equal(ra[k]["embedding"], rb[k]["embedding"]) for k in ra)


def test_text_pairs(tmp_path, direct):
    records = [{"id": str(i), "q": t, "p": TEXTS[-1 - i]} for i, t in enumerate(TEXTS)]
    path = write_jsonl(tmp_path / "pairs.jsonl", records)
    out = str(tmp_path / "emb")
    run_cli(f"--input={path}", "--text_field=q", "--text_pair_field=p", f"--output={out}", "--keep_text")
    rows = read_parquet_rows(out)
    assert_rows_match(rows, {r["id"]: direct.embed(r["q"], r["p"]) for r in records})
    assert rows["0"]["text"] == TEXTS[0] and rows["0"]["text_pair"] == TEXTS[-1]


LONG = " ".join(f"word{i} and more text" for i in range(200))  # ~1000 tokens


def test_long_text_truncate(tmp_path, direct):
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": "long", "text": LONG}, {"id": "short", "text": TEXTS[0]}])
    out = str(tmp_path / "emb")
    summary = run_cli(f"--input={path}", "--text_field=text", f"--output={out}", "--max_seq_length=64")
    rows = read_parquet_rows(out)
    assert rows["long"]["truncated"] and not rows["short"]["truncated"]
    assert rows["long"]["n_tokens"] == 64 and summary["truncated"] == 1
    assert np.abs(rows["long"]["embedding"] - direct.embed(LONG, seq_length=64)).max() <= TOLERANCE


def test_long_text_chunk_is_token_weighted_mean_of_windows(tmp_path, direct):
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": "long", "text": LONG}])
    out = str(tmp_path / "emb")
    run_cli(f"--input={path}", "--text_field=text", f"--output={out}", "--max_seq_length=64",
            "--long_text=chunk")
    row = read_parquet_rows(out)["long"]
    # Independent windows: 62 ids per window (64 minus [CLS] and [SEP]), overlap 31.
    import tensorflow as tf
    ids = direct.preprocessor.tokenize(tf.constant([LONG])).flat_values.numpy()
    budget, stride = 62, 31
    vectors, weights = [], []
    for start in range(0, len(ids) - budget + stride, stride):
        window = ids[start:start + budget]
        inputs = direct.preprocessor.bert_pack_inputs([tf.ragged.constant([window.tolist()])],
                                                      seq_length=len(window) + 2)
        vectors.append(direct.encoder(inputs)["sequence_output"].numpy()[0].mean(0))
        weights.append(len(window) + 2)
    expected = np.average(np.stack(vectors), axis=0, weights=weights)
    assert row["n_chunks"] == len(vectors) > 1
    assert np.abs(row["embedding"] - expected).max() <= TOLERANCE


def test_long_text_reject(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": "long", "text": LONG}, {"id": "short", "text": TEXTS[0]}])
    out = str(tmp_path / "emb")
    summary = run_cli(f"--input={path}", "--text_field=text", f"--output={out}", "--max_seq_length=64",
                      "--long_text=reject")
    assert set(read_parquet_rows(out)) == {"short"}
    [letter] = read_dead_letters(f"{out}-errors")
    assert letter["reason"] == "too_long" and letter["id"] == "long" and "c.jsonl:1" in letter["source"]
    assert summary["dead_lettered"] == {"too_long": 1}


def test_batch_invariance(tmp_path):
    """A short text's embedding does not depend on the longer texts batched with it."""
    short = TEXTS[0]
    alone, mixed = tmp_path / "alone.txt", tmp_path / "mixed.txt"
    alone.write_text(short + "\n", encoding="utf-8")
    mixed.write_text("\n".join([short] + [LONG[: 200 * k] for k in range(1, 12)]) + "\n", encoding="utf-8")
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    run_cli(f"--input={alone}", f"--output={a}")
    run_cli(f"--input={mixed}", f"--output={b}", "--batch_tokens=100000", "--max_batch_size=64")
    diff = np.abs(read_parquet_rows(a)[sha(short)]["embedding"]
                  - read_parquet_rows(b)[sha(short)]["embedding"]).max()
    assert diff <= 1e-5


def test_multi_process_run_gives_the_same_rows(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    run_cli(f"--input={corpus}", f"--output={a}")
    run_cli(f"--input={corpus}", f"--output={b}", "--runner=DirectRunner",
            "--direct_running_mode=multi_processing", "--direct_num_workers=2")
    ra, rb = read_parquet_rows(a), read_parquet_rows(b)
    assert set(ra) == set(rb) == {sha(t) for t in TEXTS}
    for k in ra:
        assert np.abs(ra[k]["embedding"] - rb[k]["embedding"]).max() <= 1e-5
