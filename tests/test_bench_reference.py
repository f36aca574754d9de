"""The bench's reference contenders compute what beam-embed computes.

A tiny checkpoint of the XLM-R-large-shaped kind (bench/large_model.py: random
HF-named weights in safetensors, a sentencepiece tokenizer, XLM-R's 250,002-row
embedding) is run through beam-embed's pipeline and through bench/torch_encode.py
(transformers AutoModel in .venv-ref) on beam-embed's batch plan: the same vectors,
document by document, in corpus order. And torch_encode refuses plans that do not
describe the corpus, rather than embedding something else.
"""
import os
import subprocess

import numpy as np
import pytest

from bench.batch_plan import write_plan
from bench.corpus import write
from bench.large_model import check_tokenizer, ensure_large_model
from bench.run import beam_embed_vectors, row_cosines
from transforms.constants import CPU_BATCH_TOKENS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, ref_python):
    work = tmp_path_factory.mktemp("bench-ref")
    checkpoint, dirs, _ = ensure_large_model(layers=2, hidden=32, heads=2, intermediate=64, cache=str(work))
    corpus = write(str(work / "corpus.txt"), 40, seed=5)
    plan = str(work / "plan.json")
    write_plan(dirs.preprocessor, corpus, plan, 512, CPU_BATCH_TOKENS, 256)
    return work, checkpoint, dirs, corpus, plan


def torch_encode(ref_python, *args):
    return subprocess.run([ref_python, os.path.join(ROOT, "bench", "torch_encode.py"), *args],
                          env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True)


def test_torch_encode_matches_beam_embed_per_document(tiny, ref_python):
    work, checkpoint, dirs, corpus, plan = tiny
    assert check_tokenizer(checkpoint, dirs, corpus, 512) == 40
    saved = str(work / "torch.npy")
    done = torch_encode(ref_python, checkpoint, corpus, plan, "--save", saved)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"docs": 40' in done.stdout.splitlines()[-1]
    from pipeline.main import main
    out = str(work / "emb")
    assert main([f"--input={corpus}", f"--output={out}", "--runner=FnApiRunner",
                 f"--preprocessor={dirs.preprocessor}", f"--encoder={dirs.encoder}", "--max_seq_length=512"]) == 0
    cos = row_cosines(beam_embed_vectors(out, corpus), np.load(saved))
    # Two different documents of a random model are ~0.95 apart, so a shuffled order fails this.
    assert cos.min() >= 0.9999, cos.min()


@pytest.mark.parametrize("damage, message", [
    (lambda plan: plan["batches"][0].update(length=2), "more than its planned batch length"),
    (lambda plan: plan["batches"][0]["docs"].pop(), "does not cover every document"),
])
def test_torch_encode_refuses_a_plan_that_does_not_fit(tiny, ref_python, damage, message):
    import json
    work, checkpoint, _, corpus, plan_path = tiny
    with open(plan_path) as f:
        plan = json.load(f)
    damage(plan)
    bad = str(work / "bad-plan.json")
    with open(bad, "w") as f:
        json.dump(plan, f)
    done = torch_encode(ref_python, checkpoint, corpus, bad)
    assert done.returncode != 0 and message in done.stderr, done.stderr[-2000:]


def test_the_ceiling_contender_embeds_every_document(tiny):
    """bench.contenders' ceiling on the tiny module, through the entry point beam-embed
    itself picks (transforms/encode.py: encoder_call, onednn_call where oneDNN runs)."""
    import json
    import sys
    _, _, dirs, corpus, _ = tiny
    done = subprocess.run([sys.executable, "-m", "bench.contenders", "ceiling", f"--corpus={corpus}",
                           f"--preprocessor={dirs.preprocessor}", f"--encoder={dirs.encoder}",
                           "--max_seq_length=512"],
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1].removeprefix("RESULT "))
    assert result["docs"] == 40 and result["computed_tokens"] >= result["tokens"] > 0
