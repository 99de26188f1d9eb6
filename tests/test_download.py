"""Dataset downloads against a local HTTP server: resume, md5 checks, safe and whole unpacking."""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.errors import HarnessError
from harness.image.data import download
from harness.image.data.download import download_dataset, fetch, md5sum, unpack
from harness.image.data.listing import Archive

ARCHIVE_NAME = "CUB_200_2011.tgz"


def _make_tgz() -> bytes:
    """A tiny stand-in for the CUB archive: a top folder with an annotation file and one 'image'."""
    members = {
        "CUB_200_2011/images.txt": b"1 001.Black_footed_Albatross/img_0001.jpg\n",
        # incompressible bytes keep the archive tens of KB, enough to cut a download in the middle
        "CUB_200_2011/images/001.Black_footed_Albatross/img_0001.jpg": os.urandom(40_000),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


TGZ = _make_tgz()
TGZ_MD5 = hashlib.md5(TGZ).hexdigest()


@dataclass
class ServerState:
    """What the test server serves and how it misbehaves; it records every request it gets."""

    files: dict[str, bytes] = field(default_factory=dict)
    ignore_range: bool = False
    cut_after: int | None = None  # on the first request, send only this many body bytes, then hang up
    status: int | None = None  # answer every request with this error status
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)


def _handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:  # the name http.server dispatches to
            range_header = self.headers.get("Range")
            state.requests.append((self.path, range_header))
            first = len(state.requests) == 1
            if state.status is not None or self.path not in state.files:
                self.send_error(state.status or 404)
                return
            body = state.files[self.path]
            match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
            if match and not state.ignore_range:
                start = int(match.group(1))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                body = body[start:]
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if first and state.cut_after is not None:
                self.wfile.write(body[: state.cut_after])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def server(monkeypatch):
    """A local server (never the internet) and the base URL it answers on."""
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    state = ServerState(files={"/" + ARCHIVE_NAME: TGZ})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _archive(base: str, md5: str = TGZ_MD5) -> Archive:
    return Archive(ARCHIVE_NAME, md5, f"{base}/{ARCHIVE_NAME}")


def test_full_download_checks_md5_and_unpacks(server, tmp_path):
    state, base = server
    folders = download_dataset("cub", [_archive(base)], tmp_path, how_to_get="unused", progress=False)
    assert folders == [tmp_path / "CUB_200_2011"]
    assert md5sum(tmp_path / ARCHIVE_NAME) == TGZ_MD5
    assert not (tmp_path / (ARCHIVE_NAME + ".part")).exists()
    assert (tmp_path / "CUB_200_2011" / "images.txt").read_bytes().startswith(b"1 001.")
    assert (tmp_path / "CUB_200_2011/images/001.Black_footed_Albatross/img_0001.jpg").stat().st_size == 40_000
    assert (tmp_path / (".unpacked-" + ARCHIVE_NAME)).is_file()
    assert not [p for p in tmp_path.parent.iterdir() if ".unpacking-" in p.name]
    assert state.requests == [("/" + ARCHIVE_NAME, None)]
    # a second run finds the marker: no request, same answer
    assert download_dataset("cub", [_archive(base)], tmp_path, how_to_get="unused", progress=False) == folders
    assert len(state.requests) == 1


def test_interrupted_download_keeps_part_and_resumes(server, tmp_path):
    state, base = server
    cut = 5_000
    state.cut_after = cut
    part = tmp_path / (ARCHIVE_NAME + ".part")
    with pytest.raises(HarnessError) as caught:
        fetch(_archive(base), tmp_path, progress=False)
    message = str(caught.value)
    assert "\n" not in message and f"{base}/{ARCHIVE_NAME}" in message and "rerun" in message
    assert part.read_bytes() == TGZ[:cut]
    assert not (tmp_path / ARCHIVE_NAME).exists()

    path = fetch(_archive(base), tmp_path, progress=False)
    assert state.requests[-1] == ("/" + ARCHIVE_NAME, f"bytes={cut}-")
    assert path == tmp_path / ARCHIVE_NAME and md5sum(path) == TGZ_MD5
    assert not part.exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    state, base = server
    state.ignore_range = True
    (tmp_path / (ARCHIVE_NAME + ".part")).write_bytes(b"stale bytes that must be overwritten")
    path = fetch(_archive(base), tmp_path, progress=False)
    assert state.requests == [("/" + ARCHIVE_NAME, "bytes=36-")]
    assert md5sum(path) == TGZ_MD5


def test_part_already_whole_gets_416_and_is_verified(server, tmp_path):
    state, base = server
    (tmp_path / (ARCHIVE_NAME + ".part")).write_bytes(TGZ)
    path = fetch(_archive(base), tmp_path, progress=False)
    assert state.requests == [("/" + ARCHIVE_NAME, f"bytes={len(TGZ)}-")]
    assert md5sum(path) == TGZ_MD5


def test_md5_mismatch_names_both_and_leaves_no_final_file(server, tmp_path):
    _, base = server
    wrong = "0" * 32
    with pytest.raises(HarnessError) as caught:
        fetch(_archive(base, md5=wrong), tmp_path, progress=False)
    message = str(caught.value)
    assert wrong in message and TGZ_MD5 in message and ARCHIVE_NAME in message and "\n" not in message
    assert not (tmp_path / ARCHIVE_NAME).exists()
    assert not (tmp_path / (ARCHIVE_NAME + ".part")).exists()
    assert (tmp_path / (ARCHIVE_NAME + ".md5-mismatch")).read_bytes() == TGZ


def test_existing_complete_file_needs_no_request(server, tmp_path):
    state, base = server
    (tmp_path / ARCHIVE_NAME).write_bytes(TGZ)
    assert fetch(_archive(base), tmp_path, progress=False) == tmp_path / ARCHIVE_NAME
    assert state.requests == []


def test_existing_wrong_file_is_a_mismatch(server, tmp_path):
    state, base = server
    (tmp_path / ARCHIVE_NAME).write_bytes(b"not the archive")
    with pytest.raises(HarnessError, match=TGZ_MD5):
        fetch(_archive(base), tmp_path, progress=False)
    assert not (tmp_path / ARCHIVE_NAME).exists()
    assert (tmp_path / (ARCHIVE_NAME + ".md5-mismatch")).read_bytes() == b"not the archive"
    assert state.requests == []


def test_http_404_names_the_url(server, tmp_path):
    state, base = server
    state.status = 404
    with pytest.raises(HarnessError) as caught:
        fetch(_archive(base), tmp_path, progress=False)
    message = str(caught.value)
    assert f"{base}/{ARCHIVE_NAME}" in message and "404" in message and "\n" not in message
    assert not (tmp_path / ARCHIVE_NAME).exists()


def test_unreachable_server_is_a_harness_error(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as probe:
        port = probe.server_address[1]  # closed again below, so nothing listens there
    with pytest.raises(HarnessError, match=f"127.0.0.1:{port}"):
        fetch(Archive("x.tgz", TGZ_MD5, f"http://127.0.0.1:{port}/x.tgz"), tmp_path, progress=False, timeout=5)


def test_url_none_cannot_be_fetched(tmp_path):
    with pytest.raises(HarnessError, match="no public download"):
        fetch(Archive("car_ims.tgz", TGZ_MD5), tmp_path, progress=False)


def test_keyboard_interrupt_keeps_the_part(tmp_path, monkeypatch):
    class Reply:
        status, headers = 200, {"Content-Length": str(len(TGZ))}
        reads = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, size):
            self.reads += 1
            if self.reads > 1:
                raise KeyboardInterrupt
            return TGZ[:1000]

    monkeypatch.setattr(download.urllib.request, "urlopen", lambda request, timeout: Reply())
    with pytest.raises(KeyboardInterrupt):
        fetch(Archive(ARCHIVE_NAME, TGZ_MD5, "http://example.invalid/x"), tmp_path, progress=False)
    assert (tmp_path / (ARCHIVE_NAME + ".part")).read_bytes() == TGZ[:1000]
    assert not (tmp_path / ARCHIVE_NAME).exists()


def test_archive_without_url_raises_the_manual_instructions(server, tmp_path):
    state, base = server
    how = f"Cars196 has no public download: get car_ims.tgz (md5 d5c8) and place it in {tmp_path}"
    archives = [_archive(base), Archive("car_ims.tgz", TGZ_MD5)]
    with pytest.raises(HarnessError) as caught:
        download_dataset("cars196", archives, tmp_path, how_to_get=how, progress=False)
    assert str(caught.value) == how
    assert state.requests == []
    assert list(tmp_path.iterdir()) == []

    # once the user has placed the file as told, the same call proceeds
    (tmp_path / "car_ims.tgz").write_bytes(TGZ)
    folders = download_dataset("cars196", archives, tmp_path, how_to_get=how, progress=False)
    assert folders == [tmp_path / "CUB_200_2011"]
    assert (tmp_path / ".unpacked-car_ims.tgz").is_file()


@pytest.mark.parametrize("member", ["../evil", "/abs/evil", "a/../../evil"])
def test_zip_escaping_member_is_refused(tmp_path, member):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("fine.txt", b"ok")
        out.writestr(member, b"evil")
    into = tmp_path / "out"
    with pytest.raises(HarnessError, match="refusing"):
        unpack(archive, into)
    assert not (tmp_path / "evil").exists() and not into.exists()
    assert not [p for p in tmp_path.iterdir() if ".unpacking-" in p.name]


def test_zip_unpacks(tmp_path):
    archive = tmp_path / "img.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("img/a/1.jpg", b"jpeg")
    assert unpack(archive, tmp_path / "out") == tmp_path / "out"
    assert (tmp_path / "out/img/a/1.jpg").read_bytes() == b"jpeg"


def test_unpack_twice_is_a_no_op(tmp_path):
    archive = tmp_path / ARCHIVE_NAME
    archive.write_bytes(TGZ)
    into = tmp_path / "data"
    assert unpack(archive, into) == into
    (into / "CUB_200_2011" / "images.txt").write_bytes(b"edited")
    archive.unlink()  # a second unpack that touched the archive would fail now
    assert unpack(archive, into) == into
    assert (into / "CUB_200_2011" / "images.txt").read_bytes() == b"edited"


def test_damaged_archive_names_the_file(tmp_path):
    archive = tmp_path / ARCHIVE_NAME
    archive.write_bytes(TGZ[: len(TGZ) // 2])
    into = tmp_path / "data"
    with pytest.raises(HarnessError, match=re.escape(str(archive))):
        unpack(archive, into)
    assert not (into / (".unpacked-" + ARCHIVE_NAME)).exists()
    assert not (into / "CUB_200_2011").exists()
