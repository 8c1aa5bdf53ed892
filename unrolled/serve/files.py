"""Files a request sends (images, audio, clips files), checked against the limits and read by the application.

The files go to a private temporary folder for the request's life, named by their
number and a suffix (the sent name's, else the kind's usual one); the
application's own `read_inputs` reads them, as it reads files named on its
command line. Before that, an image's size is read from its header (more than
``--max-image-pixels`` is a 413) and it is decoded once (an image Pillow cannot
read is a 422), and an audio file's length is read from its header (more than
``--max-audio-seconds`` is a 413). Results and errors name the files as the
client named them, never by their temporary paths.
"""

from __future__ import annotations

import base64
import binascii
import re
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from unrolled.apps.base import Application
from unrolled.serve.config import ServeOptions
from unrolled.serve.errors import ApiError, one_line, over_limit

SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}$")
UNPACKED_PER_BYTE = 16  # a clips file may unpack to this many times --max-request-bytes
DEFAULT_SUFFIX = {"images": ".png", "audio": ".wav", "clips": ".npz"}


class Uploads:
    """The files of one request on disk (a context: the folder is removed on exit), with their given names."""

    def __init__(self, files: list[tuple[str | None, bytes | str]], inputs: str, limits: ServeOptions) -> None:
        if len(files) > limits.max_texts:
            raise over_limit("max_texts", "the number of files", len(files), limits.max_texts)
        self.files, self.inputs = files, inputs
        self.folder = Path(tempfile.mkdtemp(prefix="unrolled-serve-"))
        self.paths: list[Path] = []
        self.names: dict[str, str] = {}

    def __enter__(self) -> Uploads:
        try:
            for number, (name, data) in enumerate(self.files, start=1):
                given = name or f"file{number}"
                raw = decode(data, given) if isinstance(data, str) else data
                if not raw:
                    raise ApiError(422, f"{given} is empty; send the file's bytes")
                found = SUFFIX.search(given)
                path = self.folder / f"{number}{found.group(0).lower() if found else DEFAULT_SUFFIX[self.inputs]}"
                path.write_bytes(raw)
                self.paths.append(path)
                self.names[str(path)] = given
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def rename(self, text: str) -> str:
        """`text` with every temporary path replaced by the name the client gave its file."""
        for path, given in self.names.items():
            text = text.replace(path, given)
        return text.replace(str(self.folder), "<upload>")

    def named(self, result: Any) -> Any:
        """A result (JSON) with its top-level strings renamed (`rename`)."""
        if isinstance(result, dict):
            return {key: self.rename(value) if isinstance(value, str) else value for key, value in result.items()}
        return result


def decode(data: str, name: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, f"{name}: data is not base64; encode the file's bytes as base64") from None


def check_image(path: Path, name: str, limit: int) -> None:
    """A 413 when the image has more than `limit` pixels, a 422 when Pillow cannot decode it."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > limit:
                raise over_limit("max_image_pixels", f"the size of {name} (pixels, {width} x {height})",
                                 width * height, limit)
            image.load()
    except ApiError:
        raise
    except Exception as error:  # Pillow raises many kinds for a file that is not an image
        raise ApiError(422, f"{name} is not an image Pillow can read ({one_line(error)})") from None


def check_audio(path: Path, name: str, limit: float) -> None:
    """A 413 when the audio lasts more than `limit` seconds, a 422 when soundfile cannot read its header."""
    import soundfile

    try:
        info = soundfile.info(str(path))
        seconds = info.frames / info.samplerate
    except Exception as error:  # libsndfile's errors
        raise ApiError(422, f"{name} is not audio soundfile can read ({one_line(error)})") from None
    if seconds > limit:
        raise over_limit("max_audio_seconds", f"the length of {name} (seconds)", round(seconds, 3), limit)


def check_archive(path: Path, name: str, limit: int) -> None:
    """A 413 when a clips file (.npz, a zip archive) would unpack to more than `limit` bytes."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return  # the application's reader says what is wrong with it
    with zipfile.ZipFile(path) as archive:
        size = sum(member.file_size for member in archive.infolist())
    if size > limit:
        raise over_limit("max_request_bytes", f"{name} unpacked (bytes; at most {UNPACKED_PER_BYTE} per byte of "
                         "the limit)", size, limit)


def read_files(sent: Uploads, app: Application, options: Any, limits: ServeOptions) -> list[Any]:
    """The application's inputs from the request's files (`app.read_inputs`), each checked first; errors name
    the files as the client did."""
    try:
        for path in sent.paths:
            name = sent.names[str(path)]
            if sent.inputs == "images":
                check_image(path, name, limits.max_image_pixels)
            elif sent.inputs == "audio":
                check_audio(path, name, limits.max_audio_seconds)
            else:
                check_archive(path, name, UNPACKED_PER_BYTE * limits.max_request_bytes)
        inputs = app.read_inputs([str(path) for path in sent.paths], options)
    except ApiError as error:
        raise ApiError(error.status, sent.rename(error.message), limit=error.limit) from None
    except (ValueError, OSError, KeyError, EOFError) as error:
        raise ApiError(422, sent.rename(one_line(error))) from None
    if len(inputs) > limits.max_texts:
        raise over_limit("max_texts", f"the number of {sent.inputs} in the files", len(inputs), limits.max_texts)
    return inputs
