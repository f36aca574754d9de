"""A reproducible benchmark corpus: several languages, log-normal lengths.

Token lengths follow a log-normal with a median of about 20 tokens and a tail to
512; texts are built from the sentences of samples/corpus.txt (many languages), so
the tokenizer sees real scripts. Same seed, same corpus.
"""
from __future__ import annotations

import os
import random

# MiniLM's English WordPiece splits the non-Latin scripts of the mix finely:
# about 2.7 tokens per whitespace-separated word on samples/corpus.txt.
TOKENS_PER_WORD = 2.7
SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samples", "corpus.txt")


def generate(n_docs: int, seed: int = 0, median_tokens: float = 20.0, sigma: float = 0.9,
             max_tokens: int = 512) -> list[str]:
    rng = random.Random(seed)
    with open(SAMPLES, encoding="utf-8") as f:
        words = [line.split() for line in f if line.strip()]
    docs = []
    for i in range(n_docs):
        target = min(max_tokens, max(3, int(rng.lognormvariate(0, sigma) * median_tokens)))
        n_words = max(1, round(target / TOKENS_PER_WORD))
        line = words[rng.randrange(len(words))]
        text = []
        while len(text) < n_words:
            start = rng.randrange(len(line))
            text.extend(line[start:start + n_words - len(text)])
            line = words[rng.randrange(len(words))]
        docs.append(f"{i} " + " ".join(text))  # the prefix keeps every document distinct
    return docs


def write(path: str, n_docs: int, seed: int = 0) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(generate(n_docs, seed)) + "\n")
    return path
