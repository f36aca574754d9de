"""GPT-2 / RoBERTa byte-level BPE (vocab.json + merges.txt), computed in the TF graph.

Matches Hugging Face's ``RobertaTokenizer`` (the `tokenizers` ByteLevel pre-tokenizer
with ``add_prefix_space=False``, then BPE) with ``add_special_tokens=False``. Special
token strings that occur in the text ("<s>", "<mask>") are tokenized as plain text,
whereas Hugging Face maps them to their special ids.

Pre-tokenization is GPT-2's regex::

    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+

RE2, TF's regex engine, has no lookahead. What ``\\s+(?!\\S)`` does is decidable
from the whitespace runs alone: a run before a word gives up its last character,
which becomes a prefix of the word if it is a plain space and a token of its own
otherwise; a run at the end of the text stays whole. ``_split_whitespace_runs`` does
exactly that, and the regex without the lookahead then applies piece by piece. No
sentinel character is inserted into the text (keras-nlp's "६" breaks Hindi).

BPE follows GPT-2: each pre-token's UTF-8 bytes are symbols; the adjacent pair with
the lowest merge rank is merged everywhere in the word (left to right, without
overlap), until no adjacent pair is a merge. All distinct words of a batch are
merged together, one merge step per word per loop iteration.
"""
from __future__ import annotations

import json

import tensorflow as tf
import tensorflow_text as tf_text

# Oniguruma, the regex engine of Hugging Face's `tokenizers`, reads \s as Unicode's
# White_Space property; RE2's \s is ASCII only.
_WS = (r"\t\n\x{0B}\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}"
       r"\x{205F}\x{3000}")
# RE2's Unicode tables in TF 2.21 stop at Unicode 15.0; tokenizers 0.23's Oniguruma
# knows 15.1 and 16.0, whose new letters (e.g. CJK Extension I, Garay, Todhri) and
# digits would otherwise fall into the punctuation class. Found by classifying every
# code point with both engines.
_L_EXTRA = (r"\x{1C89}-\x{1C8A}\x{A7CB}-\x{A7CD}\x{A7DA}-\x{A7DC}\x{105C0}-\x{105F3}"
            r"\x{10D4A}-\x{10D65}\x{10D6F}-\x{10D85}\x{10EC2}-\x{10EC4}\x{11380}-\x{11389}"
            r"\x{1138B}\x{1138E}\x{11390}-\x{113B5}\x{113B7}\x{113D1}\x{113D3}"
            r"\x{11BC0}-\x{11BE0}\x{13460}-\x{143FA}\x{16100}-\x{1611D}\x{16D40}-\x{16D6C}"
            r"\x{18CFF}\x{1E5D0}-\x{1E5ED}\x{1E5F0}\x{2EBF0}-\x{2EE5D}")
_N_EXTRA = (r"\x{10D40}-\x{10D49}\x{116D0}-\x{116E3}\x{11BF0}-\x{11BF9}\x{16130}-\x{16139}"
            r"\x{16D70}-\x{16D79}\x{1CCF0}-\x{1CCF9}\x{1E5F1}-\x{1E5FA}")
_LETTERS = rf"[\p{{L}}{_L_EXTRA}]+"
_NUMBERS = rf"[\p{{N}}{_N_EXTRA}]+"
_SPACES = rf"[{_WS}]+"
_OTHERS = rf"[^{_WS}\p{{L}}{_L_EXTRA}\p{{N}}{_N_EXTRA}]+"
_RUNS = rf"{_SPACES}|[^{_WS}]+"
# GPT-2's pattern minus the lookahead; exact on pieces without inner whitespace.
_PRETOKEN = rf"'s|'t|'re|'ve|'m|'ll|'d| ?{_LETTERS}| ?{_NUMBERS}| ?{_OTHERS}|{_SPACES}"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, the alphabet of vocab.json."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    table, shift = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shift)
            shift += 1
    return table


def read_merges(path: str) -> list[tuple[str, str]]:
    merges = []
    with tf.io.gfile.GFile(path, "r") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line or line.startswith("#version"):
                continue
            parts = line.split(" ")
            if len(parts) != 2:
                raise ValueError(f"{path}:{number}: a merge is two symbols separated by "
                                 f"one space, got {line!r}")
            merges.append((parts[0], parts[1]))
    return merges


def _split_whitespace_runs(strings: tf.Tensor) -> tf.RaggedTensor:
    """[batch] -> [batch, (pieces)] where no piece has whitespace after its first char.

    Does the work of GPT-2's ``\\s+(?!\\S)``: a whitespace run followed by a word keeps
    all but its last character; that character joins the word if it is " " (the
    `` ?`` of the word patterns) and is a token of its own otherwise.
    """
    runs = tf_text.regex_split(strings, _RUNS, _RUNS)
    run = runs.flat_values
    row = runs.value_rowids()
    position = tf.range(tf.shape(run, out_type=tf.int64)[0]) - tf.gather(runs.row_starts(), row)
    is_last = position == tf.gather(runs.row_lengths(), row) - 1
    before_word = tf.strings.regex_full_match(run, _SPACES) & ~is_last

    n_chars = tf.strings.length(run, unit="UTF8_CHAR")
    last_char = tf.strings.substr(run, n_chars - 1, tf.ones_like(n_chars), unit="UTF8_CHAR")
    head = tf.strings.substr(run, tf.zeros_like(n_chars), n_chars - 1, unit="UTF8_CHAR")
    gives_space = before_word & tf.equal(last_char, " ")
    # Runs alternate, so the run after a whitespace run (in the same row) is a word.
    takes_space = tf.concat([[False], gives_space[:-1]], axis=0)

    first = tf.where(before_word, head, tf.where(takes_space, tf.strings.join([" ", run]), run))
    second = tf.where(before_word & ~gives_space, last_char, "")
    pieces = tf.reshape(tf.stack([first, second], axis=1), [-1])
    piece_row = tf.repeat(row, 2)
    keep = tf.strings.length(pieces) > 0
    return tf.RaggedTensor.from_value_rowids(
        tf.boolean_mask(pieces, keep), tf.boolean_mask(piece_row, keep),
        nrows=runs.nrows())


def pretokenize(strings: tf.Tensor) -> tf.RaggedTensor:
    """[batch] -> [batch, (pre-tokens)] strings, as GPT-2's regex splits them."""
    pieces = _split_whitespace_runs(strings)
    pretokens = tf_text.regex_split(pieces.flat_values, _PRETOKEN, _PRETOKEN)
    return tf.RaggedTensor.from_value_rowids(
        pretokens.flat_values, tf.gather(pieces.value_rowids(), pretokens.value_rowids()),
        nrows=pieces.nrows())


def _without_overlaps(hit: tf.Tensor) -> tf.Tensor:
    """Keeps every other hit within runs of adjacent hits, starting with the first.

    Adjacent hits only happen for a pair (x, x) in "x x x": merging left to right
    takes the first pair and skips the one that shared its symbol.
    """
    starts = hit & ~tf.concat([[False], hit[:-1]], axis=0)
    index = tf.range(tf.size(hit, out_type=tf.int64))
    run = tf.maximum(tf.cumsum(tf.cast(starts, tf.int64)) - 1, 0)
    start_index = tf.gather(tf.concat([tf.boolean_mask(index, starts), [0]], axis=0), run)
    return hit & tf.equal((index - start_index) % 2, 0)


class ByteLevelBpeTokenizer(tf.Module):
    """GPT-2 / RoBERTa byte-level BPE (vocab.json + merges.txt) in pure TF ops.

    ``tokenize(strings) -> int32 RaggedTensor [batch, (tokens)]``, no special tokens.

        tokenizer = ByteLevelBpeTokenizer("vocab.json", "merges.txt")
        tokenizer.tokenize(tf.constant(["Hello world!"]))  # [[31414, 232, 328]] (roberta-base)
    """

    def __init__(self, vocab_path: str, merges_path: str, unk_token: str = "<unk>"):
        super().__init__(name="byte_level_bpe_tokenizer")
        self.vocab_file = tf.saved_model.Asset(vocab_path)
        self.merges_file = tf.saved_model.Asset(merges_path)
        with tf.io.gfile.GFile(vocab_path, "r") as f:
            vocab: dict[str, int] = json.load(f)
        merges = read_merges(merges_path)

        # Symbols are vocab ids throughout, so a pair (a, b) is the key a * base + b.
        self._base = max(vocab.values()) + 1
        unk_id = vocab.get(unk_token)
        byte_ids = []
        for byte, symbol in bytes_to_unicode().items():
            if symbol in vocab:
                byte_ids.append(vocab[symbol])
            elif unk_id is None:
                raise ValueError(f"{vocab_path} lacks the byte symbol {symbol!r} (byte {byte}) "
                                 f"and the unknown token {unk_token!r}")
            else:
                byte_ids.append(unk_id)
        self.byte_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.range(256, dtype=tf.int64), tf.constant(byte_ids, tf.int64)),
            default_value=-1)

        # A pair maps to rank * base + merged id, so one lookup gives both. A pair
        # listed twice keeps its last rank, as in Hugging Face's merge map.
        pairs: dict[int, int] = {}
        for rank, (a, b) in enumerate(merges):
            for symbol in (a, b, a + b):
                if symbol not in vocab:
                    raise ValueError(f"{merges_path}: merge {a!r} {b!r} needs {symbol!r}, "
                                     f"which is not in {vocab_path}")
            pairs[vocab[a] * self._base + vocab[b]] = rank * self._base + vocab[a + b]
        self.merge_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(list(pairs), tf.int64), tf.constant(list(pairs.values()), tf.int64)),
            default_value=-1)
        self.vocab_size = self._base  # ids run from 0 to max id; embeddings need that many rows
        # Compiled once, also for eager callers (the merge loop is slow op by op). Not
        # a @tf.function method: that holds its instance weakly, so
        # ByteLevelBpeTokenizer(...).tokenize(x) would lose the tokenizer mid-call.
        self._tokenize_graph = tf.function(
            self._tokenize, input_signature=[tf.TensorSpec([None], tf.string)])

    def tokenize(self, strings: tf.Tensor) -> tf.RaggedTensor:
        """strings: tf.string [batch]. Returns int32 RaggedTensor [batch, (tokens)] of vocab ids, no special tokens."""
        return self._tokenize_graph(strings)

    def _tokenize(self, strings: tf.Tensor) -> tf.RaggedTensor:
        pretokens = pretokenize(strings)
        # Words repeat a lot within a batch ("Ġthe"); merge each distinct one once.
        words, word_of_pretoken = tf.unique(pretokens.flat_values)
        word_ids = self._merge(words)
        ids = tf.gather(word_ids, word_of_pretoken)
        return tf.cast(
            tf.RaggedTensor.from_row_splits(ids, pretokens.row_splits).merge_dims(1, 2),
            tf.int32)

    def _merge(self, words: tf.Tensor) -> tf.RaggedTensor:
        """[words] strings -> [words, (symbols)] int64 vocab ids after all merges."""
        byte_strings = tf.strings.bytes_split(words)
        byte_values = tf.reshape(tf.io.decode_raw(byte_strings.flat_values, tf.uint8), [-1])
        base = tf.constant(self._base, tf.int64)
        never = tf.constant(tf.int64.max, tf.int64)

        def collector():
            return tf.TensorArray(tf.int64, size=0, dynamic_size=True, infer_shape=False,
                                  element_shape=tf.TensorShape([None]))

        # The words' symbols are kept flat with a row id, not padded: one long word
        # (a URL, a line of CJK) would otherwise pad every word in the batch to its
        # length. A word leaves the loop as soon as it has no pair left to merge, so
        # later passes only touch the words still merging.
        def step(i, symbols, row_of_symbol, rows, done_ids, done_lengths, done_rows):
            n_rows = tf.size(rows, out_type=tf.int64)
            left, right = symbols[:-1], symbols[1:]
            pair_row = row_of_symbol[:-1]
            packed = self.merge_table.lookup(left * base + right)
            found = tf.equal(pair_row, row_of_symbol[1:]) & (packed >= 0)

            finished = tf.math.unsorted_segment_max(
                tf.cast(found, tf.int32), pair_row, n_rows) <= 0
            symbol_finished = tf.gather(finished, row_of_symbol)
            lengths = tf.math.bincount(row_of_symbol, minlength=n_rows, dtype=tf.int64)
            done_ids = done_ids.write(i, tf.boolean_mask(symbols, symbol_finished))
            done_lengths = done_lengths.write(i, tf.boolean_mask(lengths, finished))
            done_rows = done_rows.write(i, tf.boolean_mask(rows, finished))

            rank = tf.where(found, packed // base, never)
            best = tf.math.unsorted_segment_min(rank, pair_row, n_rows)
            hit = _without_overlaps(found & tf.equal(rank, tf.gather(best, pair_row)))
            symbols = tf.concat([tf.where(hit, packed % base, left), symbols[-1:]], axis=0)
            # The right symbol of each merged pair goes, and so do finished words.
            keep = ~(tf.concat([[False], hit], axis=0) | symbol_finished)
            new_row = tf.cumsum(tf.cast(~finished, tf.int64)) - 1
            return (i + 1, tf.boolean_mask(symbols, keep),
                    tf.gather(new_row, tf.boolean_mask(row_of_symbol, keep)),
                    tf.boolean_mask(rows, ~finished), done_ids, done_lengths, done_rows)

        loop_vars = (tf.constant(0), self.byte_table.lookup(tf.cast(byte_values, tf.int64)),
                     byte_strings.value_rowids(), tf.range(byte_strings.nrows()),
                     collector(), collector(), collector())
        *_, done_ids, done_lengths, done_rows = tf.while_loop(
            lambda i, symbols, row_of_symbol, rows, *_: tf.size(rows) > 0, step, loop_vars,
            shape_invariants=(tf.TensorShape([]), tf.TensorShape([None]), tf.TensorShape([None]),
                              tf.TensorShape([None]), tf.TensorShape(None),
                              tf.TensorShape(None), tf.TensorShape(None)))
        merged_words = tf.RaggedTensor.from_row_lengths(done_ids.concat(), done_lengths.concat())
        # Words finished in whatever order; each finished exactly once.
        return tf.gather(merged_words, tf.argsort(done_rows.concat()))
