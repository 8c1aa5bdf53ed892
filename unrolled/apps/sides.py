"""Text pairs as token ids: each side's tokens and vocabulary (`Side`; seq2seq's sources and targets, the
captioner's captions), pairs encoded through both sides, their split by source, and references by source.

Tokens, chosen per side:

* ``char``: every character, spaces included; the text is the characters joined.
* ``word``: the text split on whitespace, case and punctuation kept (bring
  pre-tokenised text); the text is the words joined by one space.
* ``subword``: sentencepiece pieces (a unigram model, Kudo 2018) trained on
  the training side only; decoding the pieces gives the text back exactly.
"""

from __future__ import annotations

import base64
import io
import warnings
from collections import defaultdict
from typing import Any

from unrolled.apps.split import SplitRecord, split_parts
from unrolled.data.labelled import truncate
from unrolled.data.pairs import Pair
from unrolled.data.vocab import UNK_ID, UNK_TOKEN, TokenVocabulary
from unrolled.extras import need
from unrolled.models.seq2seq import BOS_ID, EOS_ID

TOKENS = ("char", "word", "subword")
TARGET_SPECIALS = ("<s>", "</s>")  # ids BOS_ID 2 and EOS_ID 3 of the target vocabulary
DEFAULT_SUBWORDS = 8000
assert TARGET_SPECIALS.index("<s>") + 2 == BOS_ID and TARGET_SPECIALS.index("</s>") + 2 == EOS_ID


class Side:
    """How the texts of one side become tokens and ids, and back.

    kind: one of `TOKENS`; max_len: the most tokens kept (longer sources are cut,
    longer training targets dropped); vocabulary: token ids (the target's start
    with ``<s>`` and ``</s>``); subwords: the sentencepiece model (bytes) for ``subword``.
    """

    def __init__(self, kind: str, vocabulary: TokenVocabulary, max_len: int, subwords: bytes | None = None) -> None:
        if kind not in TOKENS:
            raise ValueError(f"unknown tokens {kind!r}: choose one of {', '.join(TOKENS)}")
        if (kind == "subword") != (subwords is not None):
            raise ValueError("subword tokens need a sentencepiece model, and only they do")
        self.kind, self.vocabulary, self.max_len, self.subwords = kind, vocabulary, max_len, subwords
        self.reserved = tuple(token for token in TARGET_SPECIALS if token in vocabulary)
        self._processor: Any = None
        if subwords is not None:
            need("sentencepiece", "subword vocabularies")
            import sentencepiece

            self._processor = sentencepiece.SentencePieceProcessor(model_proto=subwords)

    # -- text <-> tokens

    def tokens(self, text: str) -> list[str]:
        """The tokens of `text` (all of them: cutting to max_len is `encode`'s business)."""
        if self.kind == "char":
            return list(text)
        if self.kind == "word":
            return text.split()
        return list(self._processor.encode(text, out_type=str))

    def text(self, tokens: list[str]) -> str:
        """The text of `tokens`: `tokens`'s inverse (for words, up to whitespace)."""
        if self.kind == "char":
            return "".join(tokens)
        if self.kind == "word":
            return " ".join(tokens)
        return str(self._processor.decode_pieces(tokens))

    # -- tokens <-> ids

    def encode(self, text: str) -> tuple[list[int], bool, int]:
        """(ids of the first max_len tokens, whether tokens were cut, how many are unknown); a target's
        ``<s>`` and ``</s>`` tokens in the text read as unknown."""
        kept, cut = truncate(self.tokens(text), self.max_len)
        ids = self.vocabulary.encode([UNK_TOKEN if token in self.reserved else token for token in kept])
        return ids, cut, ids.count(UNK_ID)

    def decode(self, ids: list[int]) -> list[str]:
        return self.vocabulary.decode(ids)

    # -- saving

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "max_len": self.max_len, "vocabulary": self.vocabulary.to_json(),
                "subwords": None if self.subwords is None else base64.b64encode(self.subwords).decode("ascii")}

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> Side:
        subwords = saved.get("subwords")
        return cls(saved["kind"], TokenVocabulary.from_json(saved["vocabulary"]), int(saved["max_len"]),
                   None if subwords is None else base64.b64decode(subwords))

    @classmethod
    def build(cls, texts: list[str], kind: str, *, max_len: int, min_freq: int = 1,
              subword_vocab: int = DEFAULT_SUBWORDS, target: bool = False) -> Side:
        """A side fitted to the training `texts`: its subword model (trained on them) and its vocabulary."""
        subwords = train_subwords(texts, subword_vocab) if kind == "subword" else None
        side = cls(kind, TokenVocabulary([]), max_len, subwords)
        built = TokenVocabulary.build((side.tokens(text)[:max_len] for text in texts), min_freq=min_freq)
        reserved = TARGET_SPECIALS if target else ()
        side.vocabulary = TokenVocabulary([*reserved, *(t for t in built.tokens if t not in reserved)])
        side.reserved = reserved
        return side


def train_subwords(texts: list[str], size: int) -> bytes:
    """A sentencepiece unigram model of at most `size` pieces trained on `texts` (every character covered)."""
    need("sentencepiece", "subword vocabularies")
    import sentencepiece

    model = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=model, vocab_size=size, model_type="unigram",
            character_coverage=1.0, hard_vocab_limit=False, minloglevel=2, num_threads=1,
        )
    except RuntimeError as error:
        raise ValueError(f"sentencepiece could not learn {size} subwords from the training side "
                         f"({' '.join(str(error).split())}); try a smaller --subword-vocab") from None
    return model.getvalue()


def pair_key(pair: Pair) -> str:
    return pair.source + "\t" + pair.target


def pair_group(pair: Pair) -> str:
    return pair.source


def split_pairs(pairs: list[Pair], record: SplitRecord) -> dict[str, list[Pair]]:
    """The train / validation / test parts of `pairs` that `record` describes."""
    return split_parts(pairs, record, pair_key, pair_group)


def references(pairs: list[Pair]) -> tuple[list[str], list[list[str]]]:
    """The distinct sources in order of first appearance, and all targets of each."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for pair in pairs:
        grouped[pair.source].append(pair.target)
    return list(grouped), list(grouped.values())


def encode_pairs(pairs: list[Pair], source: Side, target: Side) -> tuple[list[list[int]], list[list[int]], int]:
    """Source ids and target ids (``<s>`` ... ``</s>``) of the pairs whose target fits max_len; and how many do not."""
    sources, targets, dropped = [], [], 0
    for pair in pairs:
        source_ids, _, _ = source.encode(pair.source)
        target_ids, cut, _ = target.encode(pair.target)
        if cut:
            dropped += 1
            continue
        sources.append(source_ids or [UNK_ID])
        targets.append([BOS_ID, *target_ids, EOS_ID])
    return sources, targets, dropped


def left_out_long(dropped: int, kept: int, max_len: int, what: str) -> None:
    """After encoding the training targets: a warning that `dropped` `what` (e.g. "caption(s)") were longer than
    `max_len` tokens and left out, and a one-line error when none was `kept`."""
    if dropped:
        warnings.warn(f"{dropped} training {what} longer than {max_len} tokens were left out (raise --max-len to "
                      "keep them)", stacklevel=3)
    if not kept:
        raise ValueError(f"every training {what} is longer than {max_len} tokens; raise --max-len")
