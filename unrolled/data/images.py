"""Images with captions: the COCO caption format, read into arrays and written back.

The format of COCO, Flickr8k and Flickr30k captions (Chen et al. 2015), one JSON file::

    {"images": [{"id": 0, "file_name": "0.png", "split": "train"}, ...],
     "annotations": [{"image_id": 0, "caption": "a red seven above a sneaker"}, ...]}

Every image needs at least one caption; an image may have several (COCO has
five). Optional per-image keys, each on every image or on none:

* ``"split"``: ``"train"``, ``"validation"`` or ``"test"``;
* ``"boxes"``: a list of ``[top, left, bottom, right]`` pixel boxes (bottom and
  right exclusive), e.g. where each digit of a digit string lies.

Other keys (``"info"``, ``"licenses"``, an annotation's ``"id"``, an image's
``"height"``) are allowed and ignored. The image files are read with Pillow
from ``image_folder``, by default the JSON file's folder and then ``images/``
under it. Every problem is a one-line ValueError naming the file, the entry
and what to do.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from unrolled.extras import lazy
from unrolled.imagefiles import PathLike, load_image, read_images  # noqa: F401 (torch-free, shared with the runtime)

if TYPE_CHECKING:
    from PIL import Image
else:
    Image = lazy("PIL.Image", "reading images")


Box = tuple[int, int, int, int]  # (top, left, bottom, right) in pixels; bottom and right exclusive
SPLITS = ("train", "validation", "test")
IMAGE_FOLDER = "images"  # where write_coco puts the images, beside the JSON file
MISSING_TOLERATED = 0.01  # read_coco skips missing image files (with a warning) up to this fraction of the images
CHANNELS = 3


@dataclass
class ImageCaptions:
    """Images, their captions and file names; optionally each image's split and boxes.

    ``images`` is uint8 (N, H, W, 3) RGB; ``captions[n]`` the one or more
    captions of image n; ``names[n]`` its file name; ``splits[n]`` one of
    `SPLITS` when the data say so; ``boxes[n]`` its boxes (top, left, bottom,
    right) when the data have them. A ValueError if the lengths or the image
    array disagree.
    """

    images: NDArray[np.uint8]
    captions: list[list[str]]
    names: list[str]
    splits: list[str] | None = None
    boxes: list[list[Box]] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[3] != CHANNELS:
            raise ValueError(f"images must be uint8 of shape (N, H, W, 3), not {self.images.dtype} "
                             f"{self.images.shape}")
        n = len(self.images)
        lengths = {"captions": len(self.captions), "names": len(self.names)}
        lengths |= {key: len(value) for key, value in (("splits", self.splits), ("boxes", self.boxes))
                    if value is not None}
        for key, length in lengths.items():
            if length != n:
                raise ValueError(f"{n} images but {length} {key}")

    def __len__(self) -> int:
        return len(self.images)

    def select(self, indices: Sequence[int] | NDArray[np.int64]) -> ImageCaptions:
        """The images at ``indices``, in that order, with their captions, names, splits and boxes."""
        picked = [int(i) for i in indices]
        return ImageCaptions(
            images=self.images[picked],
            captions=[self.captions[i] for i in picked],
            names=[self.names[i] for i in picked],
            splits=None if self.splits is None else [self.splits[i] for i in picked],
            boxes=None if self.boxes is None else [self.boxes[i] for i in picked],
        )

    def split(self, name: str) -> ImageCaptions:
        """The images of split ``name`` ("train", "validation" or "test"); a ValueError if the data have no splits."""
        if self.splits is None:
            raise ValueError("these images have no splits; split them yourself (e.g. with split_indices)")
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return self.select([k for k, split in enumerate(self.splits) if split == name])


def concatenate(parts: Sequence[ImageCaptions]) -> ImageCaptions:
    """The images of ``parts`` one after another (all of one size); splits and boxes kept where every part has them."""
    if not parts:
        raise ValueError("nothing to concatenate")
    splits, boxes = [part.splits for part in parts], [part.boxes for part in parts]
    return ImageCaptions(
        images=np.concatenate([part.images for part in parts]),
        captions=[said for part in parts for said in part.captions],
        names=[name for part in parts for name in part.names],
        splits=None if any(s is None for s in splits) else [s for part in splits for s in part or []],
        boxes=None if any(b is None for b in boxes) else [b for part in boxes for b in part or []],
    )


@dataclass
class _Entry:
    """One image of the JSON: its id, file name, and optional split and boxes."""

    key: int | str
    file_name: str
    split: str | None
    boxes: list[Box] | None


def _load_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; a one-line ValueError if it is missing, not UTF-8, not JSON or not an object."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory; give the caption JSON file") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text at byte offset {error.start}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path}: the JSON is not an object; a caption file is "
                         '{"images": [...], "annotations": [...]}')
    return document


def _list_of(document: dict[str, Any], key: str, path: Path) -> list[Any]:
    """``document[key]``, which must be a list; a ValueError names the key otherwise."""
    value = document.get(key)
    if not isinstance(value, list):
        raise ValueError(f"{path}: no {key!r} list; a caption file is "
                         '{"images": [{"id", "file_name"}, ...], "annotations": [{"image_id", "caption"}, ...]}')
    return value


def _entry(item: Any, k: int, path: Path) -> _Entry:
    """Image ``k`` of the JSON's ``images`` list, checked."""
    where = f"{path}: images[{k}]"
    if not isinstance(item, dict):
        raise ValueError(f"{where} is not an object with 'id' and 'file_name'")
    for key in ("id", "file_name"):
        if key not in item:
            raise ValueError(f"{where} has no {key!r}; every image needs an 'id' and a 'file_name'")
    key, file_name = item["id"], item["file_name"]
    if isinstance(key, bool) or not isinstance(key, int | str):
        raise ValueError(f"{where}: the id {key!r} is not a number or a string")
    if not isinstance(file_name, str) or not file_name:
        raise ValueError(f"{where}: the file_name {file_name!r} is not a file name")
    split = item.get("split")
    if split is not None and split not in SPLITS:
        raise ValueError(f"{where}: unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return _Entry(key, file_name, split, None if "boxes" not in item else _boxes(item["boxes"], where))


def _boxes(value: Any, where: str) -> list[Box]:
    """An image's ``"boxes"``: a list of [top, left, bottom, right] integer lists."""
    if not isinstance(value, list) or not all(
            isinstance(box, list) and len(box) == 4 and all(type(v) is int for v in box) for box in value):
        raise ValueError(f"{where}: 'boxes' must be a list of [top, left, bottom, right] integer lists")
    return [(box[0], box[1], box[2], box[3]) for box in value]


def _all_or_none(values: list[Any], key: str, path: Path) -> bool:
    """Whether every entry has ``key`` (True) or none has (False); a ValueError if only some have."""
    present = [value is not None for value in values]
    if any(present) and not all(present):
        raise ValueError(f"{path}: images[{present.index(False)}] has no {key!r} but images[{present.index(True)}] "
                         f"has; give every image a {key!r} or none")
    return all(present) and bool(present)


def _captions(annotations: list[Any], index: dict[int | str, int], path: Path) -> list[list[str]]:
    """The captions of each image (by position), from the JSON's ``annotations`` in file order."""
    captions: list[list[str]] = [[] for _ in index]
    for k, item in enumerate(annotations):
        where = f"{path}: annotations[{k}]"
        if not isinstance(item, dict) or "image_id" not in item or "caption" not in item:
            raise ValueError(f"{where} has no 'image_id' or no 'caption'; every annotation needs both")
        key, caption = item["image_id"], item["caption"]
        if not isinstance(key, int | str) or isinstance(key, bool) or key not in index:
            raise ValueError(f"{where}: image_id {key!r} is not the id of any image; add the image or remove "
                             "the annotation")
        if not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"{where}: the caption is {'empty' if isinstance(caption, str) else 'not a string'}")
        captions[index[key]].append(" ".join(caption.split()))
    return captions


def _target_shape(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """(H, W) of the images read: ``size`` x ``size`` for an int, (H, W) as given, None to keep each file's size."""
    if size is None:
        return None
    height, width = (size, size) if isinstance(size, int) else size
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, not {size!r}")
    return height, width


def _read_image(name: str, folders: list[Path], shape: tuple[int, int] | None,
                path: Path) -> tuple[NDArray[np.uint8], tuple[int, int]]:
    """Image ``name`` from the first of ``folders`` that holds it, as uint8 (H, W, 3) RGB resized to ``shape``
    (H, W) unless None, and its size (H, W) in the file."""
    found = _locate(name, folders)
    if found is None:
        looked = " or ".join(str(folder) for folder in folders)
        raise ValueError(f"{path}: image file {name!r} not found in {looked}; put it there or pass image_folder")
    return load_image(found, shape)


def _locate(name: str, folders: list[Path]) -> Path | None:
    return next((folder / name for folder in folders if (folder / name).is_file()), None)


def _scale_boxes(boxes: list[Box], original: tuple[int, int], shape: tuple[int, int]) -> list[Box]:
    """Boxes of an image of size ``original`` (H, W) moved onto the same image resized to ``shape``."""
    sy, sx = shape[0] / original[0], shape[1] / original[1]
    return [(round(top * sy), round(left * sx), round(bottom * sy), round(right * sx))
            for top, left, bottom, right in boxes]


def read_coco(path: PathLike, *, size: int | tuple[int, int] | None,
              image_folder: PathLike | None = None) -> ImageCaptions:
    """Images and captions from a COCO-style caption file (see the module docstring).

    Images come in the order of the JSON's ``images``, each converted to RGB
    and resized (bilinear) to ``size`` x ``size``, or to (H, W) for a pair;
    ``size=None`` keeps the files' size, which must then be the same for all.
    Captions come in annotation order, whitespace runs made one space. Boxes
    are scaled with their image. ``image_folder`` is where the files are
    (default: the JSON's folder, then ``images/`` under it).

    A one-line ValueError names what is wrong: a file that is not JSON (with
    its line), a missing key, an unknown split, an image file that does not
    exist or is not an image, an image without a caption, an annotation whose
    image_id is unknown, images of different sizes with ``size=None``, or no
    images at all. Missing image files up to `MISSING_TOLERATED` of the images
    are left out with a warning that counts them (a few lost files should not
    stop a large set); more than that is an error naming the first.
    """
    path = Path(path)
    shape = _target_shape(size)
    document = _load_json(path)
    entries = [_entry(item, k, path) for k, item in enumerate(_list_of(document, "images", path))]
    annotations = _list_of(document, "annotations", path)
    if not entries:
        raise ValueError(f"{path}: no images; a caption file needs at least one image with a caption")
    index: dict[int | str, int] = {}
    for k, entry in enumerate(entries):
        if entry.key in index:
            raise ValueError(f"{path}: images[{index[entry.key]}] and images[{k}] have the same id {entry.key!r}")
        index[entry.key] = k
    captions = _captions(annotations, index, path)
    for entry, said in zip(entries, captions, strict=True):
        if not said:
            raise ValueError(f"{path}: image {entry.file_name!r} (id {entry.key!r}) has no caption; add an "
                             "annotation for it or remove it")
    has_splits = _all_or_none([entry.split for entry in entries], "split", path)
    has_boxes = _all_or_none([entry.boxes for entry in entries], "boxes", path)
    folders = [Path(image_folder)] if image_folder is not None else [path.parent, path.parent / IMAGE_FOLDER]
    missing = [k for k, entry in enumerate(entries) if _locate(entry.file_name, folders) is None]
    if missing and len(missing) <= MISSING_TOLERATED * len(entries):
        warnings.warn(f"{path}: {len(missing)} of {len(entries)} image files are missing (the first: "
                      f"{entries[missing[0]].file_name!r}); they and their captions were left out", stacklevel=2)
        kept = sorted(set(range(len(entries))) - set(missing))
        entries, captions = [entries[k] for k in kept], [captions[k] for k in kept]
    pixels, boxes = _read_images(entries, folders, shape, path)
    return ImageCaptions(images=pixels, captions=captions, names=[entry.file_name for entry in entries],
                         splits=[str(entry.split) for entry in entries] if has_splits else None,
                         boxes=boxes if has_boxes else None)


def _read_images(entries: list[_Entry], folders: list[Path], shape: tuple[int, int] | None,
                 path: Path) -> tuple[NDArray[np.uint8], list[list[Box]]]:
    """Every entry's image (`_read_image`) in one uint8 (N, H, W, 3) array, filled in place, and its boxes scaled
    to it; a ValueError if ``shape`` is None and two images differ in size."""
    first, _ = _read_image(entries[0].file_name, folders, shape, path)
    pixels = np.empty((len(entries), *first.shape), dtype=np.uint8)  # (N, H, W, 3)
    boxes: list[list[Box]] = []
    for k, entry in enumerate(entries):
        array, original = _read_image(entry.file_name, folders, shape, path)
        if array.shape != first.shape:
            raise ValueError(f"{path}: {entry.file_name!r} is {array.shape[0]} x {array.shape[1]} but "
                             f"{entries[0].file_name!r} is {first.shape[0]} x {first.shape[1]}; "
                             "pass size= to resize them all")
        pixels[k] = array
        if entry.boxes is not None:
            boxes.append(_scale_boxes(entry.boxes, original, first.shape[:2]))
    return pixels, boxes


def _png_names(names: list[str]) -> list[str]:
    """Each name with a .png suffix (``a.jpg`` -> ``a.png``); a ValueError for a name that is not a plain file
    name or for two images that would share a file."""
    pngs = []
    for name in names:
        pure = PurePosixPath(name)
        if not name or "\\" in name or len(pure.parts) != 1 or name in (".", ".."):
            raise ValueError(f"{name!r} is not a plain file name; write_coco writes every image into images/")
        pngs.append(name if pure.suffix.lower() == ".png" else str(pure.with_suffix(".png")))
    if len(set(pngs)) != len(pngs):
        twice = next(name for name in pngs if pngs.count(name) > 1)
        raise ValueError(f"two images would both be written as {twice!r}; give them different names")
    return pngs


def write_coco(path: PathLike, data: ImageCaptions, *, info: dict[str, Any] | None = None) -> Path:
    """Write ``data`` as a COCO-style caption file ``path`` and its images as PNGs in ``images/`` beside it.

    The inverse of `read_coco`: image n gets id n, its name as ``file_name``
    (with the suffix made .png), its ``height`` and ``width``, and its split
    and boxes when ``data`` has them; each caption becomes an annotation.
    Grey images (R = G = B) are saved as one-channel PNGs, read back as RGB.
    ``info`` goes under the JSON's "info" key. Returns ``path``. A ValueError
    for an image without a caption or names that are not plain, distinct file names.
    """
    path = Path(path)
    names = _png_names(data.names)
    for name, said in zip(names, data.captions, strict=True):
        if not said:
            raise ValueError(f"image {name!r} has no caption; every image needs at least one")
    folder = path.parent / IMAGE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for n, (name, array) in enumerate(zip(names, data.images, strict=True)):
        grey = np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2])
        Image.fromarray(np.ascontiguousarray(array[..., 0] if grey else array)).save(folder / name)
        image: dict[str, Any] = {"id": n, "file_name": name, "height": array.shape[0], "width": array.shape[1]}
        if data.splits is not None:
            image["split"] = data.splits[n]
        if data.boxes is not None:
            image["boxes"] = [list(box) for box in data.boxes[n]]
        images.append(image)
        annotations += [{"id": len(annotations) + j, "image_id": n, "caption": caption}
                        for j, caption in enumerate(data.captions[n])]
    document = {"info": info or {}, "images": images, "annotations": annotations}
    path.write_text(json.dumps(document, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
