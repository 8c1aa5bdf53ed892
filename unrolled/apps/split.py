"""A recorded split: train, validation and test parts made again, identically, from the same data.

A run stores a `SplitRecord` in its checkpoint; `split_parts` rebuilds the parts
from it (so `eval --split test` scores exactly the held-out part) and refuses
other data, recognised by a fingerprint (sha256 over the items' keys).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from unrolled.data.labelled import kfold_indices, split_groups, split_indices

Item = TypeVar("Item")
PARTS = ("train", "validation", "test")


@dataclass
class SplitRecord:
    """How items were split.

    Without `folds`: a shuffled `validation` and `test` fraction (seeded). With
    `folds` K: fold `fold` is the test part, and `validation` of the rest
    validates. `examples` and `fingerprint` tie the record to the data.
    `grouped`: the fractions count groups (`split_groups`), every item of a
    group on one side (a seq2seq source with all its targets); no folds then.
    """

    seed: int
    validation: float
    test: float
    folds: int | None
    fold: int | None
    examples: int
    fingerprint: str
    grouped: bool = False


def fingerprint(keys: Iterable[str]) -> str:
    """sha256 of the items' keys, one per line."""
    digest = hashlib.sha256()
    for key in keys:
        digest.update(key.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def split_parts(items: list[Item], record: SplitRecord, key: Callable[[Item], str],
                group: Callable[[Item], str] | None = None) -> dict[str, list[Item]]:
    """The train / validation / test parts `record` describes; a one-line error for other data.

    A grouped record needs `group`, the group of an item.
    """
    if record.examples != len(items) or record.fingerprint != fingerprint(key(item) for item in items):
        raise ValueError(f"this is not the data the run was split on ({record.examples} examples, fingerprint "
                         f"{record.fingerprint[:12]}): pass the run's training data")
    if record.grouped:
        if group is None:
            raise ValueError("a grouped split needs the group of each item")
        parts = split_groups([group(item) for item in items], validation=record.validation, test=record.test,
                             seed=record.seed)
    elif record.folds is None:
        parts = split_indices(len(items), validation=record.validation, test=record.test, seed=record.seed)
    else:
        assert record.fold is not None
        rest, held = kfold_indices(len(items), folds=record.folds, fold=record.fold, seed=record.seed)
        inner = split_indices(len(rest), validation=record.validation, test=0.0, seed=record.seed)
        parts = {"train": [rest[i] for i in inner["train"]], "validation": [rest[i] for i in inner["validation"]],
                 "test": list(held)}
    return {name: [items[i] for i in parts.get(name, [])] for name in PARTS}


def new_record(items: list[Item], key: Callable[[Item], str], *, seed: int, validation: float, test: float,
               folds: int | None = None, fold: int | None = None, grouped: bool = False) -> SplitRecord:
    """The record of a fresh split of `items` (`grouped`: by groups, see `SplitRecord`)."""
    if grouped and folds is not None:
        raise ValueError("a grouped split takes no folds")
    return SplitRecord(seed, validation, test, folds, fold, len(items), fingerprint(key(item) for item in items),
                       grouped)



def split_for_fit(items: list[Item] | None, validation_items: list[Item] | None,
                  read: Callable[[str | None], list[Item]], data: Any, saved: dict[str, Any] | None,
                  key: Callable[[Item], str], split_items: Callable[[list[Item], SplitRecord], dict[str, list[Item]]],
                  *, grouped: bool = False) -> tuple[SplitRecord, dict[str, list[Item]]]:
    """The split a run trains on and its parts.

    The items are `items`, else ``read(None)`` (the configured data); the
    validation items are `validation_items`, else ``read(data.validation_data)``
    where `data` names such a file. Given validation items, the items are not
    split and those are the validation part. The record is the `saved` run's on
    resume, else a fresh one with the fractions, seed and folds of `data`
    (``validation``, ``test``, ``split_seed``, and ``folds``/``fold`` where it
    has them).
    """
    if items is None:
        items = read(None)
    if validation_items is None and data.validation_data:
        validation_items = read(data.validation_data)
    separate = validation_items is not None
    folds = getattr(data, "folds", None)
    record = (SplitRecord(**saved["split"]) if saved else
              new_record(items, key, seed=data.split_seed, validation=0.0 if separate else data.validation,
                         test=0.0 if separate else data.test, folds=folds,
                         fold=data.fold if folds else None, grouped=grouped))
    parts = split_items(items, record)
    if validation_items is not None:
        parts["validation"] = validation_items
    return record, parts


def as_record(split: SplitRecord | dict[str, Any] | None) -> SplitRecord | None:
    """A run's split as a record: the record itself, or the fields a checkpoint saved (None: the run has none)."""
    return SplitRecord(**split) if isinstance(split, dict) else split


def recorded_part(items: list[Item], split: SplitRecord | dict[str, Any] | None, part: str,
                  split_items: Callable[[list[Item], SplitRecord], dict[str, list[Item]]],
                  run: str = "the run") -> list[Item]:
    """`items` for part "all", else their `part` by the run's `split` (its record, or the fields a checkpoint
    saved; `split_items(items, record)`); one-line errors for a run that records no split, or an empty part."""
    if part == "all":
        return items
    record = as_record(split)
    if record is None:
        raise ValueError(f"{run} records no split; evaluate with --split all")
    chosen = split_items(items, record)[part]
    if not chosen:
        raise ValueError(f"the run's {part} part is empty (it was trained with no {part} fraction)")
    return chosen
