"""What the image applications (`unrolled.apps.caption`, `unrolled.apps.glimpse`) share: COCO-style caption data,
its options and split, and two helpers any application may use.

An image's part is the data's own split (an image's ``split`` in COCO-style
JSON) or a seeded split of the images (`unrolled.apps.split`), recorded in the
run so eval's ``--split`` finds the same images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unrolled.apps.base import HeldOutEvalOptions
from unrolled.apps.split import SplitRecord, split_parts
from unrolled.data.images import ImageCaptions
from unrolled.options import option, require_fractions, require_positive

PARTS = ("train", "validation", "test")


def image_key(data: ImageCaptions, i: int) -> str:
    return data.names[i] + "\t" + "\t".join(data.captions[i])


def split_images(data: ImageCaptions, record: SplitRecord | None) -> dict[str, list[int]]:
    """The image indices of each part: the data's own split (record None) or the seeded one `record` describes."""
    if record is None:
        if data.splits is None:
            raise ValueError("the data has no split of its own; a seeded split is needed")
        unknown = sorted(set(data.splits) - set(PARTS))
        if unknown:
            raise ValueError(f"unknown split name(s) {', '.join(map(repr, unknown))}: use train, validation, test")
        return {part: [i for i, s in enumerate(data.splits) if s == part] for part in PARTS}
    indices = list(range(len(data.names)))
    return split_parts(indices, record, key=lambda i: image_key(data, i))


def run_part(data: ImageCaptions, split: dict[str, Any] | None, part: str) -> ImageCaptions:
    """`data` itself for part "all", else the run's recorded `part` of it (`split`: its `SplitRecord` fields, None for
    the data's own split)."""
    if part == "all":
        return data
    indices = split_images(data, None if split is None else SplitRecord(**split))[part]
    if not indices:
        raise ValueError(f"the run's {part} part is empty")
    return data.select(indices)


def read_captions(file: str | None, dataset: str | None, *, images: str | None, size: tuple[int, int] | None,
                  what: str, example: str) -> ImageCaptions:
    """COCO-style caption JSON `file` (its images resized to `size`; None: as they are) or the named `dataset` (at
    its own size); not both, not none. `what` and `example` name a kind of file and a dataset for the error."""
    from unrolled.data import obtain
    from unrolled.data.images import read_coco

    if file and dataset:
        raise ValueError("give a data file or --dataset, not both")
    if not file and not dataset:
        raise ValueError(f"no data: give {what} or --dataset {example}")
    if dataset:
        return read_coco(obtain(dataset), size=None)
    return read_coco(Path(str(file)), size=size, image_folder=images)


# ---------------------------------------------------------------------- configuration


@dataclass
class ImageData:
    """Which COCO-style caption file (or named dataset), and how its images are split and batched."""

    file: str | None = field(default=None, metadata=option(
        "COCO-style caption JSON (or --dataset)", positional="?", metavar="DATA"))
    dataset: str | None = field(default=None, metadata=option("a named dataset instead of a file"))
    images: str | None = field(default=None, metadata=option(
        "the image folder (default: beside DATA, or DATA's images/)", metavar="FOLDER"))
    validation: float = field(default=0.05, metadata=option(
        "fraction of the images for validation, without a split in the data"))
    test: float = field(default=0.05, metadata=option(
        "fraction of the images for testing, without a split in the data"))
    split_seed: int = field(default=0, metadata=option("seed of the image split"))
    batch_size: int = field(default=64, metadata=option("examples per batch", aliases=("--batch",)))

    def __post_init__(self) -> None:
        require_fractions(self, "validation", "test")
        require_positive(self, "batch_size")

    def read(self) -> ImageCaptions:
        """The images and captions this names (each application reads them its own way)."""
        raise NotImplementedError

    def training_images(self, data: ImageCaptions | None = None) -> ImageCaptions:
        """`data`, else what this names; a one-line error when there are no images."""
        data = self.read() if data is None else data
        if len(data.names) == 0:
            raise ValueError("no images to train on")
        return data


@dataclass
class ImageEvalOptions(HeldOutEvalOptions):
    """What eval takes of image data: DATA or a named dataset, its image folder; the run's test part by default."""

    batch_size: int = field(default=64, metadata=option("images at once", aliases=("--batch",)))
    dataset: str | None = field(default=None, metadata=option("a named dataset instead of a file"))
    images: str | None = field(default=None, metadata=option("the image folder (default: beside DATA)",
                                                             metavar="FOLDER"))
