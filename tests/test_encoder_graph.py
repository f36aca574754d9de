"""The encoder graph (converter revision 3: fused QKV, 2-D projections, fusable GELU;
revision 4: ``onednn_call``, LayerNorm spelled for oneDNN) and the modules converted
before it.

tests/data/r2-bert-tiny/encoder is a revision-2 encoder (three Q/K/V projections on
3-D activations), built at commit 40befdb by make_r2_module.py there; the same
config, seed and vocabulary give this revision's module here. Existing users' modules
must keep loading and give the same vectors, and the new graph must compute the
same function.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub

from tests.pipeline_helpers import read_parquet_rows, run_cli, write_lines_corpus

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
R2 = os.path.join(REPO, "tests", "data", "r2-bert-tiny")


@pytest.fixture(scope="module")
def current_pair(tmp_path_factory):
    """This revision's module pair from the revision-2 module's config, seed and vocabulary."""
    from models.config import EncoderConfig
    from models.convert import build_random_module
    with open(os.path.join(R2, "beam_embed_model.json")) as f:
        manifest = json.load(f)
    config = EncoderConfig.from_dict(manifest["config"])
    return build_random_module(config, {"vocab.txt": os.path.join(R2, "vocab.txt")},
                               str(tmp_path_factory.mktemp("current") / "bert"), lower_case=True, seed=7)


def _inputs(batch: int, seq: int, vocab: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, seq + 1, size=batch)
    lengths[0] = seq
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int32)
    ids = np.where(mask == 1, rng.integers(5, vocab, size=(batch, seq)), 0).astype(np.int32)
    types = np.where(np.arange(seq)[None, :] >= lengths[:, None] // 2, 1, 0).astype(np.int32) * mask
    return {"input_word_ids": tf.constant(ids), "input_mask": tf.constant(mask),
            "input_type_ids": tf.constant(types)}


@pytest.mark.parametrize("batch,seq", [(1, 1), (1, 9), (5, 17), (3, 64)])
def test_new_graph_computes_what_the_old_one_did(current_pair, batch, seq):
    old, new = hub.load(os.path.join(R2, "encoder")), hub.load(current_pair.encoder)
    inputs = _inputs(batch, seq, vocab=46, seed=batch * 100 + seq)
    a, b = old(inputs), new(inputs)
    assert sorted(a) == sorted(b) == ["encoder_outputs", "pooled_output", "sequence_output"]
    for key in ("pooled_output", "sequence_output"):
        assert a[key].shape == b[key].shape
        np.testing.assert_allclose(b[key].numpy(), a[key].numpy(), atol=1e-5, rtol=0)
    assert len(a["encoder_outputs"]) == len(b["encoder_outputs"]) == 2
    for x, y in zip(a["encoder_outputs"], b["encoder_outputs"]):
        np.testing.assert_allclose(y.numpy(), x.numpy(), atol=1e-5, rtol=0)


def test_an_old_module_still_embeds_and_agrees(current_pair, tmp_path):
    """A revision-2 encoder through the whole CLI: every document embedded, vectors
    within 1e-5 of this revision's encoder on the same weights."""
    corpus = tmp_path / "corpus.txt"
    lines = write_lines_corpus(corpus, 40)
    runs = {}
    for name, encoder in (("old", os.path.join(R2, "encoder")), ("new", current_pair.encoder)):
        out = str(tmp_path / name / "emb")
        summary = run_cli(f"--input={corpus}", f"--output={out}", f"--preprocessor={current_pair.preprocessor}",
                          f"--encoder={encoder}", "--max_seq_length=64")
        assert (summary["read"], summary["embedded"], summary["dead_lettered"]) == (len(lines), len(lines), {})
        runs[name] = read_parquet_rows(out)
    assert runs["old"].keys() == runs["new"].keys()
    worst = max(float(np.abs(runs["old"][i]["embedding"] - runs["new"][i]["embedding"]).max()) for i in runs["old"])
    assert worst < 1e-5


def _op_counts(encoder_dir: str, entry: str = "__call__") -> dict[str, int]:
    """Op types in one of the encoder's traced entry points and every function it calls."""
    loaded = tf.saved_model.load(encoder_dir)
    graph = getattr(loaded, entry).concrete_functions[0].graph.as_graph_def()
    counts: dict[str, int] = {}
    for node in [*graph.node, *(n for f in graph.library.function for n in f.node_def)]:
        counts[node.op] = counts.get(node.op, 0) + 1
    return counts


def test_every_projection_is_one_two_dimensional_matmul(current_pair):
    """What makes the new graph fast on CPUs (models/encoder.py): per block one fused
    QKV, one attention output, one intermediate and one output MatMul on
    [tokens, hidden], and only attention itself as batched products."""
    layers = 2
    new, old = _op_counts(current_pair.encoder), _op_counts(os.path.join(R2, "encoder"))
    assert new.get("MatMul", 0) == 4 * layers + 1          # + the pooler
    assert new.get("BatchMatMulV2", 0) == 2 * layers       # scores and context
    assert old.get("BatchMatMulV2", 0) == 8 * layers       # r2: six projections on 3-D activations


@pytest.mark.parametrize("batch,seq", [(1, 1), (5, 17), (3, 64)])
def test_the_onednn_entry_point_computes_what_call_does(current_pair, batch, seq):
    encoder = hub.load(current_pair.encoder)
    inputs = _inputs(batch, seq, vocab=46, seed=batch + seq)
    a, b = encoder(inputs), encoder.onednn_call(inputs)
    for key in ("pooled_output", "sequence_output"):
        np.testing.assert_allclose(b[key].numpy(), a[key].numpy(), atol=1e-5, rtol=0)
    for x, y in zip(a["encoder_outputs"], b["encoder_outputs"], strict=True):
        np.testing.assert_allclose(y.numpy(), x.numpy(), atol=1e-5, rtol=0)


def test_the_onednn_entry_point_spells_every_layer_norm_as_a_batch_norm(current_pair):
    """The subgraph grappler's remapper turns into _MklLayerNorm; __call__ keeps the
    plain spelling, which is faster without oneDNN."""
    layers = 2
    assert _op_counts(current_pair.encoder, "onednn_call").get("FusedBatchNormV3", 0) == 2 * layers + 1
    assert _op_counts(current_pair.encoder).get("FusedBatchNormV3", 0) == 0


def test_beam_embed_calls_the_onednn_entry_point_only_where_it_is_faster(current_pair, monkeypatch):
    from transforms import encode
    encoder, old = hub.load(current_pair.encoder), hub.load(os.path.join(R2, "encoder"))
    monkeypatch.setattr(encode, "onednn_enabled", lambda: True)
    assert encode.encoder_call(encoder, "float32", "/CPU:0").function is encoder.onednn_call
    assert encode.encoder_call(encoder, "bfloat16", "/CPU:0").function is encoder  # mixed precision: as before
    assert encode.encoder_call(encoder, "float32", "/GPU:0").function is encoder
    assert encode.encoder_call(old, "float32", "/CPU:0").function is old           # an older or foreign module
    monkeypatch.setattr(encode, "onednn_enabled", lambda: False)
    assert encode.encoder_call(encoder, "float32", "/CPU:0").function is encoder


@pytest.mark.parametrize("onednn", [True, False])
def test_an_entry_point_keeps_its_module_alive(current_pair, monkeypatch, onednn):
    """Nobody else holds the loaded module: its variables must outlive it all the same
    (a restored function alone does not keep them, and TF frees them on collection)."""
    import gc
    from transforms import encode
    monkeypatch.setattr(encode, "onednn_enabled", lambda: onednn)
    call = encode.encoder_call(hub.load(current_pair.encoder), "float32", "/CPU:0")
    assert call.name == ("onednn_call" if onednn else "__call__")
    gc.collect()
    inputs = _inputs(2, 9, vocab=46, seed=3)
    expected = hub.load(current_pair.encoder)(inputs)["pooled_output"].numpy()
    np.testing.assert_allclose(call(inputs)["pooled_output"].numpy(), expected, atol=1e-5, rtol=0)


def _executed_op_types(function, inputs) -> set[str]:
    """The kernels one call ran, as TensorFlow's profiler saw them (after grappler)."""
    import glob
    import tempfile

    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    function(inputs)  # traced and optimized before the profiled call
    logdir = tempfile.mkdtemp(prefix="encoder-profile-")
    tf.profiler.experimental.start(logdir)
    function(inputs)
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    [path] = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    return {plane.event_metadata[event.metadata_id].name.rsplit(":", 1)[-1]
            for plane in space.planes for line in plane.lines if line.name.startswith("tf_Compute")
            for event in line.events}


def test_with_onednn_every_layer_norm_runs_as_one_kernel(current_pair):
    """Guards the spelling against a TensorFlow whose remapper no longer matches it."""
    from transforms.encode import onednn_enabled
    if not onednn_enabled():
        pytest.skip("TensorFlow runs without oneDNN on this CPU (no AVX-512, TF_ENABLE_ONEDNN_OPTS unset)")
    encoder = hub.load(current_pair.encoder)
    ops = _executed_op_types(encoder.onednn_call, _inputs(4, 16, vocab=46))
    assert "_MklLayerNorm" in ops and "FusedBatchNormV3" not in ops, sorted(ops)
