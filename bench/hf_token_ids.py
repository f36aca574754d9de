"""The HF tokenizer's ids for a corpus, as JSON (runs in .venv-ref; bench.large_model
compares them with beam-embed's preprocessor).

    PYTHONPATH=. .venv-ref/bin/python bench/hf_token_ids.py CHECKPOINT_DIR CORPUS MAX_SEQ_LENGTH OUT.json
"""
import json
import sys

from transformers import AutoTokenizer

from bench.batch_plan import read_corpus  # stdlib only at import


def main(checkpoint: str, corpus: str, max_seq_length: str, out: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    ids = tokenizer(read_corpus(corpus), truncation=True, max_length=int(max_seq_length))["input_ids"]
    with open(out, "w", encoding="utf-8") as f:
        json.dump(ids, f)


if __name__ == "__main__":
    main(*sys.argv[1:5])
