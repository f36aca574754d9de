"""Reference values from Hugging Face / sentence-transformers, for beam-embed's tests.

Runs in .venv-ref (torch, transformers, sentence-transformers; no TensorFlow).
Every subcommand reads its inputs from files and writes its results to a file.
"""
import argparse
import json
import os
import shutil

import numpy as np
import torch

TOKENIZER_FILES = {
    "bert": ("vocab.txt", "tokenizer_config.json"),
    "roberta": ("vocab.json", "merges.txt"),
    "xlm-roberta": ("sentencepiece.bpe.model",),
}


def load_tokenizer(family, directory):
    from transformers import BertTokenizer, RobertaTokenizer, XLMRobertaTokenizer
    if family == "bert":
        lower = True
        config = os.path.join(directory, "tokenizer_config.json")
        if os.path.exists(config):
            with open(config) as f:
                lower = json.load(f).get("do_lower_case", True)
        # BertTokenizer(vocab_file=...) silently yields a 5-token vocabulary in transformers 5.
        tokenizer = BertTokenizer(vocab=os.path.join(directory, "vocab.txt"), do_lower_case=lower)
    elif family == "roberta":
        tokenizer = RobertaTokenizer.from_pretrained(directory)
    elif family == "xlm-roberta":
        try:
            import google.protobuf  # noqa: F401
        except ImportError:
            # Without it transformers falls back to tiktoken and fails with a misleading error.
            raise SystemExit("transformers reads sentencepiece models with protobuf (>= 7): "
                             "pip install 'protobuf>=7' in the reference venv") from None
        tokenizer = XLMRobertaTokenizer.from_pretrained(directory)
    else:
        raise SystemExit(f"unknown family {family}")
    if len(tokenizer) <= 5:
        raise SystemExit(f"{family} tokenizer from {directory} has only {len(tokenizer)} tokens")
    return tokenizer


def cmd_tokenize(args):
    tokenizer = load_tokenizer(args.family, args.tokenizer_dir)
    with open(args.texts, encoding="utf-8") as f:
        texts = json.load(f)
    result = {
        "vocab_size": len(tokenizer),
        "tokens": [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts],
        "packed": {}, "packed_pairs": {},
    }
    for n in args.seq_length:
        single = tokenizer(texts, max_length=n, truncation=True, padding="max_length")
        pairs = tokenizer(texts, texts[::-1], max_length=n, truncation="longest_first",
                          padding="max_length")
        result["packed"][n] = {k: single[k] for k in ("input_ids", "attention_mask")}
        result["packed_pairs"][n] = {k: pairs[k] for k in ("input_ids", "attention_mask")}
        if "token_type_ids" in pairs:
            result["packed_pairs"][n]["token_type_ids"] = pairs["token_type_ids"]
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f)


MODEL_CLASSES = {"bert": "BertModel", "roberta": "RobertaModel", "xlm-roberta": "XLMRobertaModel"}
CONFIG_CLASSES = {"bert": "BertConfig", "roberta": "RobertaConfig", "xlm-roberta": "XLMRobertaConfig"}


def cmd_random_checkpoint(args):
    import transformers
    with open(args.config) as f:
        config = getattr(transformers, CONFIG_CLASSES[args.model_type])(**json.load(f))
    torch.manual_seed(args.seed)
    model = getattr(transformers, MODEL_CLASSES[args.model_type])(config, add_pooling_layer=True)
    # HF initialises biases to 0 and LayerNorm to 1; randomise every parameter so that
    # a converter that dropped or mis-transposed any of them would show.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p))
    model.save_pretrained(args.out, safe_serialization=True)
    for name in TOKENIZER_FILES[args.model_type]:
        src = os.path.join(args.tokenizer_dir, name)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(args.out, name))


def cmd_encode(args):
    from transformers import AutoModel
    model = AutoModel.from_pretrained(args.checkpoint).eval()
    inputs = dict(np.load(args.inputs))
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(inputs["input_word_ids"]).long(),
                    attention_mask=torch.from_numpy(inputs["input_mask"]).long(),
                    token_type_ids=torch.from_numpy(inputs["input_type_ids"]).long(),
                    output_hidden_states=True)
    np.savez(args.out, sequence_output=out.last_hidden_state.numpy(),
             pooled_output=out.pooler_output.numpy(),
             # hidden_states[0] is the embedding layer; TF Hub's encoder_outputs are the blocks.
             encoder_outputs=np.stack([h.numpy() for h in out.hidden_states[1:]]))


def cmd_sentence_embed(args):
    from sentence_transformers import SentenceTransformer
    with open(args.texts, encoding="utf-8") as f:
        texts = json.load(f)
    model = SentenceTransformer(args.model_dir, device="cpu")
    np.save(args.out, model.encode(texts, batch_size=32, convert_to_numpy=True))


def cmd_mean_embed(args):
    """AutoTokenizer + AutoModel + mean over the attention mask, each text alone (no
    padding at all, so nothing here depends on how a contender pads)."""
    from transformers import AutoModel, AutoTokenizer
    with open(args.texts, encoding="utf-8") as f:
        texts = json.load(f)
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
    model = AutoModel.from_pretrained(args.checkpoint).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            inputs = tokenizer(text, truncation=True, max_length=args.max_length, return_tensors="pt")
            rows.append(model(**inputs).last_hidden_state[0].mean(0).numpy())
    np.save(args.out, np.stack(rows).astype(np.float32))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("tokenize")
    p.add_argument("--family", required=True, choices=sorted(TOKENIZER_FILES))
    p.add_argument("--tokenizer-dir", required=True)
    p.add_argument("--texts", required=True)
    p.add_argument("--seq-length", type=int, nargs="*", default=[])
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_tokenize)
    p = sub.add_parser("random-checkpoint")
    p.add_argument("--model-type", required=True, choices=sorted(MODEL_CLASSES))
    p.add_argument("--config", required=True)
    p.add_argument("--tokenizer-dir", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_random_checkpoint)
    p = sub.add_parser("encode")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--inputs", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_encode)
    p = sub.add_parser("sentence-embed")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--texts", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_sentence_embed)
    p = sub.add_parser("mean-embed")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--texts", required=True)
    p.add_argument("--max-length", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_mean_embed)
    args = parser.parse_args()
    torch.set_num_threads(2)
    args.func(args)


if __name__ == "__main__":
    main()
