"""``beam-embed-models``: build TF Hub-format text modules.

  beam-embed-models convert CHECKPOINT_DIR OUTPUT_DIR   # HF bert / roberta / xlm-roberta
  beam-embed-models random --model-type xlm-roberta --tokenizer-dir DIR OUTPUT_DIR [--hidden-size ...]
  beam-embed-models default                              # convert the embedded MiniLM once, print its paths
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from models.config import ModelConfigError
from models.families import MODEL_TYPES, REGISTRY as FAMILIES


def _print_dirs(dirs):
    print(json.dumps({"preprocessor": dirs.preprocessor, "encoder": dirs.encoder}, indent=2))


def _convert(args):
    from models.convert import convert_checkpoint
    _print_dirs(convert_checkpoint(args.checkpoint_dir, args.output_dir))


def _random(args):
    from models.config import EncoderConfig
    from models.convert import build_random_module
    family = FAMILIES[args.model_type]
    config = EncoderConfig(
        model_type=args.model_type, vocab_size=args.vocab_size, hidden_size=args.hidden_size,
        num_hidden_layers=args.num_layers, num_attention_heads=args.num_heads,
        intermediate_size=args.intermediate_size or 4 * args.hidden_size,
        max_position_embeddings=args.max_position_embeddings + family.position_offset,
        type_vocab_size=family.type_vocab_size, layer_norm_eps=family.layer_norm_eps,
        pad_token_id=family.pad_token_id)
    files = {}
    for name in family.tokenizer_files:
        path = os.path.join(args.tokenizer_dir, name)
        if not os.path.isfile(path):
            raise ModelConfigError(f"{args.model_type} tokenizer file not found: {path}")
        files[name] = path
    _print_dirs(build_random_module(config, files, args.output_dir,
                                    lower_case=args.lower_case, seed=args.seed))


def _default(args):
    from models.default_model import ensure_default_model
    _print_dirs(ensure_default_model())


def _tokenizer_dir_help() -> str:
    """'folder with vocab.txt (bert), vocab.json+merges.txt (roberta) or ...'."""
    each = [f"{'+'.join(f.tokenizer_files)} ({name})" for name, f in FAMILIES.items()]
    return f"folder with {', '.join(each[:-1])} or {each[-1]}" if len(each) > 1 else f"folder with {each[0]}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="beam-embed-models", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("convert", help="convert a local Hugging Face checkpoint")
    p.add_argument("checkpoint_dir")
    p.add_argument("output_dir")
    p.set_defaults(func=_convert)
    p = sub.add_parser("random", help="build a random-weight module pair")
    p.add_argument("output_dir")
    p.add_argument("--model-type", required=True, choices=MODEL_TYPES)
    p.add_argument("--tokenizer-dir", required=True, help=_tokenizer_dir_help())
    p.add_argument("--vocab-size", type=int, required=True)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--num-heads", type=int, default=4)
    p.add_argument("--intermediate-size", type=int, default=0, help="default: 4 x hidden size")
    p.add_argument("--max-position-embeddings", type=int, default=512)
    p.add_argument("--lower-case", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_random)
    p = sub.add_parser("default", help="build (once) and print the embedded default model")
    p.set_defaults(func=_default)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except ModelConfigError as e:
        from pipeline.logs import printable  # file names in the message may hold controls
        print(f"beam-embed-models: error: {printable(str(e))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
