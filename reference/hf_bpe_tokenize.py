"""Reference ids from Hugging Face's RoBERTa tokenizer, for parity tests.

Runs in the reference venv (transformers, no TensorFlow):

    .venv-ref/bin/python reference/hf_bpe_tokenize.py \
        --vocab vocab.json --merges merges.txt --texts texts.json --out ids.json

texts.json is a JSON list of strings; ids.json gets a JSON list of id lists, encoded
with ``add_special_tokens=False``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile

from transformers import RobertaTokenizer


def load_tokenizer(vocab_path: str, merges_path: str) -> RobertaTokenizer:
    # transformers 5 silently builds a 5-token vocabulary from
    # RobertaTokenizer(vocab_file=..., merges_file=...); from_pretrained on a folder
    # holding the two files reads them properly.
    with tempfile.TemporaryDirectory() as folder:
        shutil.copy(vocab_path, os.path.join(folder, "vocab.json"))
        shutil.copy(merges_path, os.path.join(folder, "merges.txt"))
        tokenizer = RobertaTokenizer.from_pretrained(folder)
    with open(vocab_path, encoding="utf-8") as f:
        vocab_size = len(json.load(f))
    if len(tokenizer) != vocab_size:
        raise SystemExit(f"Hugging Face loaded {len(tokenizer)} tokens, vocab.json has {vocab_size}")
    return tokenizer


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description="Tokenize texts with Hugging Face's RobertaTokenizer.")
    parser.add_argument("--vocab", required=True)
    parser.add_argument("--merges", required=True)
    parser.add_argument("--texts", required=True, help="JSON list of strings")
    parser.add_argument("--out", required=True, help="where to write the JSON list of id lists")
    args = parser.parse_args(argv)

    tokenizer = load_tokenizer(args.vocab, args.merges)
    with open(args.texts, encoding="utf-8") as f:
        texts = json.load(f)
    ids = [tokenizer.encode(text, add_special_tokens=False) for text in texts]
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(ids, f)


if __name__ == "__main__":
    main()
