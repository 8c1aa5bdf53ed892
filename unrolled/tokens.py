"""Tokens without torch: the special ids and the tokenisers, shared by the training side (`unrolled.data.vocab`)
and the runtime that runs exported models without torch (`unrolled.runtime`).

Ids are the same for every vocabulary: 0 is padding (`PAD_ID`, "<pad>"), 1 the
unknown token (`UNK_ID`, "<unk>"); the known tokens follow.
"""

from __future__ import annotations

import re
import warnings

PAD_ID = 0
UNK_ID = 1
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN)  # ids 0 and 1

TOKENIZERS = ("word", "char")

APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'"})  # typographic apostrophes count as "'"
WORD_TOKEN = re.compile(r"""
      [^\W_]+(?=n't\b)                      # the stem of a negation: "is" of "isn't", "do" of "don't"
    | n't\b                                 # the negation itself
    | (?<=[^\W_])'(?:s|re|ve|d|ll|m)\b      # a clitic after a word: 's 're 've 'd 'll 'm
    | \d+(?:[.,]\d+)+                       # a number with a decimal point or thousands separators: 3.5, 10,000
    | [^\W_]+                               # a word or a number: letters and digits
    | ''|``                                 # a Penn Treebank double quote, one mark
    | \S                                    # anything else: one punctuation mark or symbol
""", re.VERBOSE)


def tokenize(text: str, kind: str) -> list[str]:
    """The tokens of ``text``: ``kind`` "word" or "char".

    "word": lower-cased words (runs of letters and digits), numbers (``3.5``,
    ``10,000``) and every other non-space character as a token of its own;
    contractions are split as in Kim (2014) and the Penn Treebank: "isn't" ->
    "is" "n't", "he's" -> "he" "'s", "can't" -> "ca" "n't"; the Penn
    Treebank quotes '' and `` stay one token. Typographic apostrophes
    (U+2018, U+2019) count as "'". "char": every character, spaces
    included, case kept. Either gives [] for an empty text.
    """
    if kind == "word":
        return WORD_TOKEN.findall(text.lower().translate(APOSTROPHES))
    if kind == "char":
        return list(text)
    raise ValueError(f"unknown tokenizer {kind!r}: choose one of {', '.join(TOKENIZERS)}")


def warn_reading(cut: int, unknown: int, max_len: int, *, stacklevel: int = 3) -> None:
    """After reading source texts: one warning for the `cut` sources longer than `max_len` tokens (cut to it),
    one for the `unknown` tokens the model does not know (read as "<unk>")."""
    if cut:
        warnings.warn(f"{cut} source(s) longer than {max_len} tokens were cut to that length", stacklevel=stacklevel)
    if unknown:
        warnings.warn(f"{unknown} source token(s) unknown to the model were read as {UNK_TOKEN}",
                      stacklevel=stacklevel)
