"""Build the tiny revision-2 module pair committed under tests/data/r2-bert-tiny.
Run at a commit whose models/ converter is revision 2 (e.g. 40befdb):
    PYTHONPATH=<that checkout> python make.py OUT_DIR
"""
import os, sys
from models.config import EncoderConfig
from models.convert import build_random_module
out = sys.argv[1]
words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + \
        ["the", "cat", "sat", "on", "mat", "dog", "ran", "far", "##s", "##ed", "##ing", "of", "and", "to", "in"]
os.makedirs(out + "-tokenizer", exist_ok=True)
vocab = os.path.join(out + "-tokenizer", "vocab.txt")
open(vocab, "w").write("\n".join(words) + "\n")
config = EncoderConfig("bert", vocab_size=len(words), hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=32, max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-12,
                       pad_token_id=0)
build_random_module(config, {"vocab.txt": vocab}, out, lower_case=True, seed=7)
