"""Texts to ids and back as the applications do it, restated without torch for the runtime.

The training side's versions live in `unrolled.data.vocab` (`TokenVocabulary`),
`unrolled.data.text.Vocabulary` and `unrolled.apps.sides.Side`, which import torch;
these read the same saved forms (``to_json``) and give the same ids. The
tokenisers and special ids are shared with them (`unrolled.tokens`, no torch).

* characters (the char LM): ids 1.. for the known characters in order, 0 for any other.
* tokens: 0 ``<pad>``, 1 ``<unk>``, then the known tokens in order; unknown tokens give 1.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from unrolled.tokens import SPECIAL_TOKENS, UNK_ID, UNK_TOKEN

TARGET_SPECIALS = ("<s>", "</s>")
BOS_ID, EOS_ID = 2, 3  # the ids of <s> and </s> in a target vocabulary (after <pad> and <unk>)
UNKNOWN_SYMBOL = "\ufffd"


class Characters:
    """The char LM's vocabulary: known characters -> ids 1.., anything else 0."""

    def __init__(self, characters: Sequence[str]) -> None:
        self.characters = list(characters)
        self.ids = {ch: i for i, ch in enumerate(self.characters, start=1)}

    def __len__(self) -> int:
        return len(self.characters) + 1

    def unknown(self, text: str) -> set[str]:
        return {ch for ch in text if ch not in self.ids}

    def encode(self, text: str) -> list[int]:
        return [self.ids.get(ch, 0) for ch in text]

    def decode(self, ids: Sequence[int]) -> str:
        symbols = [UNKNOWN_SYMBOL, *self.characters]
        return "".join(symbols[i] for i in ids)


class Tokens:
    """`TokenVocabulary` from its saved list: 0 <pad>, 1 <unk>, then the tokens."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.names = [*SPECIAL_TOKENS, *tokens]
        self.ids = {token: i for i, token in enumerate(tokens, start=len(SPECIAL_TOKENS))}

    def __len__(self) -> int:
        return len(self.names)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.ids.get(token, UNK_ID) for token in tokens]

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.names[i] for i in ids]


class Side:
    """`unrolled.apps.sides.Side`: text <-> tokens <-> ids, tokens "char", "word" or "subword" (sentencepiece's
    pieces, its model saved in base64 beside the vocabulary; sentencepiece is needed for those only)."""

    def __init__(self, saved: dict[str, object]) -> None:
        self.kind = str(saved["kind"])
        self.processor: Any = None
        if self.kind == "subword":
            try:
                import sentencepiece
            except ImportError:
                raise ValueError("this export's subword side needs sentencepiece (pip install sentencepiece)") \
                    from None
            model = base64.b64decode(str(saved["subwords"]))
            self.processor = sentencepiece.SentencePieceProcessor(model_proto=model)
        elif self.kind not in ("char", "word"):
            raise ValueError(f"the export's side has unknown tokens {self.kind!r}; export the run again")
        vocabulary = saved["vocabulary"]
        assert isinstance(vocabulary, list)
        self.vocabulary = Tokens(vocabulary)
        self.max_len = int(str(saved["max_len"]))
        self.reserved = tuple(token for token in TARGET_SPECIALS if token in self.vocabulary.ids)

    def tokens(self, text: str) -> list[str]:
        if self.processor is not None:
            return list(self.processor.encode(text, out_type=str))
        return list(text) if self.kind == "char" else text.split()

    def text(self, tokens: list[str]) -> str:
        if self.processor is not None:
            return str(self.processor.decode_pieces(tokens))
        return "".join(tokens) if self.kind == "char" else " ".join(tokens)

    def encode(self, text: str) -> tuple[list[int], bool, int]:
        """(ids of the first max_len tokens, whether any were cut, how many are unknown)."""
        tokens = self.tokens(text)
        kept = tokens[: self.max_len]
        ids = self.vocabulary.encode([UNK_TOKEN if token in self.reserved else token for token in kept])
        return ids, len(tokens) > self.max_len, ids.count(UNK_ID)

    def decode(self, ids: list[int]) -> list[str]:
        return self.vocabulary.decode(ids)
