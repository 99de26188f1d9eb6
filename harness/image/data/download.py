"""Fetch a published dataset archive, resume an interrupted download, check its md5, unpack it.

Invariant: a file under its final name is always complete and md5-checked (bytes in flight live in
`<name>.part`, a file that failed its check is moved to `<name>.md5-mismatch`), and an unpacked folder
appears only whole (extraction happens in a hidden sibling folder, and a marker written last records that
the unpack finished). Interrupting any step, by a network error or Ctrl-C, is therefore safe: rerunning the
same command resumes from the bytes already saved and never trusts a half-written result.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path, PureWindowsPath

from tqdm.auto import tqdm

from harness.atomic import write_atomic
from harness.errors import HarnessError
from harness.image.data.listing import Archive

__all__ = ["fetch", "md5sum", "unpack", "download_dataset"]

_BLOCK = 1 << 20  # bytes per read: each block is written and flushed, so an interruption loses at most this
_USER_AGENT = "dml-harness (dataset download)"
_TAR_SUFFIXES = (".tgz", ".tar.gz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_ZIP_SUFFIXES = (".zip",)
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


def md5sum(path: Path) -> str:
    """Hex md5 of a file, read in blocks so multi-gigabyte archives need no memory."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _one_line(text: object) -> str:
    """Messages reach the user as one line; an exception without text is named by its type."""
    line = " ".join(str(text).split())
    return line or type(text).__name__


def _reject_bad_copy(path: Path, archive: Archive, actual: str) -> HarnessError:
    """Move a file whose md5 is wrong out of the way (so a rerun starts clean) and explain it."""
    bad = path.with_name(archive.filename + ".md5-mismatch")
    os.replace(path, bad)
    again = ("rerunning the same command downloads it afresh" if archive.url is not None
             else "place a good copy there and rerun")
    return HarnessError(f"{path.parent / archive.filename}: md5 is {actual} but the published md5 is "
                        f"{archive.md5.lower()}; the file was moved to {bad.name} and {again}")


def _network_error(url: str, reason: object, part: Path, saved: int) -> HarnessError:
    return HarnessError(f"downloading {url} failed: {_one_line(reason)}; rerunning the same command resumes "
                        f"from the {saved:,} bytes already saved in {part}")


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a 206 reply; None for what the header does not say."""
    match = _CONTENT_RANGE.match(value or "")
    if match is None:
        return None, None
    total = match.group(3)
    return int(match.group(1)), None if total == "*" else int(total)


def _open(url: str, offset: int, timeout: float, part: Path):
    """Send the request (asking for the bytes from `offset` on when resuming); None means a 416 reply,
    i.e. the part already holds the whole file."""
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset > 0:
            return None
        raise _network_error(url, f"HTTP {exc.code} {exc.reason}", part, offset) from exc
    except urllib.error.URLError as exc:
        raise _network_error(url, exc.reason, part, offset) from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise _network_error(url, exc, part, offset) from exc


def _stream(response, url: str, part: Path, mode: str, offset: int, total: int | None, progress: bool) -> None:
    """Copy the reply body into the part, flushing every block so an interruption keeps what arrived."""
    received = offset
    try:
        with open(part, mode) as out, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                           unit_divisor=1024, desc=part.name.removesuffix(".part"),
                                           disable=not progress, leave=False) as bar:
            while True:
                try:
                    block = response.read(_BLOCK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _network_error(url, exc, part, received) from exc
                if not block:
                    break
                out.write(block)
                out.flush()
                received += len(block)
                bar.update(len(block))
            os.fsync(out.fileno())  # the final name must never point at bytes still in the page cache only
    except OSError as exc:  # network errors became HarnessError above; this is the local disk
        raise HarnessError(f"cannot write {part}: {_one_line(exc)}") from exc
    # http.client returns a short body silently when the peer closes early, so check the length here
    if total is not None and received < total:
        raise _network_error(url, f"the connection closed after {received:,} of {total:,} bytes", part, received)


def fetch(archive: Archive, dest_dir: Path, *, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download `archive` into `dest_dir / archive.filename`, resuming a `.part` left by an earlier try, and
    return the path once its md5 matches; a file already there with the right md5 costs no network access."""
    dest_dir = Path(dest_dir)
    final = dest_dir / archive.filename
    part = dest_dir / (archive.filename + ".part")
    expected = archive.md5.lower()
    if final.is_file():
        actual = md5sum(final)
        if actual != expected:
            raise _reject_bad_copy(final, archive, actual)
        return final
    if archive.url is None:
        raise HarnessError(f"{archive.filename} has no public download URL; place it in {dest_dir}")
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"cannot create {dest_dir}: {_one_line(exc)}") from exc
    use_range = True
    while True:
        offset = part.stat().st_size if use_range and part.is_file() else 0
        response = _open(archive.url, offset, timeout, part)
        if response is None:  # 416: nothing left to send, the part is whole (its md5 decides)
            break
        with response:
            status = getattr(response, "status", None)
            if status == 206:
                start, total = _content_range(response.headers.get("Content-Range"))
                if start != offset:  # a range we did not ask for cannot be appended: start over without Range
                    if not use_range:
                        reply = response.headers.get("Content-Range")
                        raise _network_error(archive.url, f"a partial reply ({reply}) to a request for the whole "
                                             "file", part, part.stat().st_size if part.is_file() else 0)
                    use_range = False
                    continue
                mode = "ab"
            else:  # 200 (the server ignored Range) or a non-HTTP URL: the body is the whole file
                offset, mode = 0, "wb"
                length = response.headers.get("Content-Length") if response.headers else None
                total = int(length) if length and length.isdigit() else None
            _stream(response, archive.url, part, mode, offset, total, progress)
        break
    actual = md5sum(part)
    if actual != expected:
        raise _reject_bad_copy(part, archive, actual)
    os.replace(part, final)
    return final


def _kind(name: str) -> str | None:
    lower = name.lower()
    if lower.endswith(_TAR_SUFFIXES):
        return "tar"
    if lower.endswith(_ZIP_SUFFIXES):
        return "zip"
    return None


def _marker(archive_path: Path, into: Path) -> Path:
    return into / (".unpacked-" + archive_path.name)


def _unsafe_zip_member(name: str) -> bool:
    """Absolute paths, drive letters and `..` components would write outside the target folder."""
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return True
    return ".." in re.split(r"[\\/]", name)


def _extract(archive_path: Path, kind: str, target: Path) -> None:
    if kind == "tar":
        if not hasattr(tarfile, "data_filter"):
            raise HarnessError("unpacking archives safely needs Python 3.11.4 or newer (tarfile filter='data')")
        with tarfile.open(archive_path, "r:*") as tar:
            tar.extractall(target, filter="data")
        return
    with zipfile.ZipFile(archive_path) as archive:
        for info in archive.infolist():
            if _unsafe_zip_member(info.filename):
                raise HarnessError(f"{archive_path}: refusing to unpack the member {info.filename!r}, "
                                   "whose path leads outside the target folder")
        archive.extractall(target)


def _merge(src: Path, dst: Path) -> None:
    """Move `src` to `dst`; folders merge (two archives may share a top folder, and a move cut short by
    an earlier interruption is simply redone), files replace what is there."""
    if dst.is_dir() and not dst.is_symlink():
        if src.is_dir() and not src.is_symlink():
            for child in src.iterdir():
                _merge(child, dst / child.name)
            return
        shutil.rmtree(dst)
    elif (dst.exists() or dst.is_symlink()) and src.is_dir() and not src.is_symlink():
        dst.unlink()
    os.replace(src, dst)


def unpack(archive_path: Path, into: Path) -> Path:
    """Extract a tar (optionally compressed) or zip archive into `into` and return `into`.

    Extraction goes to a hidden sibling folder first, then the top-level entries move into `into`, and a
    marker `.unpacked-<archive name>` is written last; with the marker present this returns at once.
    """
    archive_path, into = Path(archive_path), Path(into)
    marker = _marker(archive_path, into)
    if marker.is_file():
        return into
    kind = _kind(archive_path.name)
    if kind is None:
        raise HarnessError(f"{archive_path}: not an archive this harness can unpack "
                           f"(expected one of {', '.join(_TAR_SUFFIXES + _ZIP_SUFFIXES)})")
    if not archive_path.is_file():
        raise HarnessError(f"{archive_path}: archive not found")
    try:
        into.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=into.parent, prefix=f".{into.name}.unpacking-"))
    except OSError as exc:
        raise HarnessError(f"cannot create a folder beside {into}: {_one_line(exc)}") from exc
    try:
        try:
            _extract(archive_path, kind, staging)
        except tarfile.FilterError as exc:
            raise HarnessError(f"{archive_path}: refusing to unpack an unsafe member: {_one_line(exc)}") from exc
        except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise HarnessError(f"{archive_path}: the archive is damaged or unreadable ({_one_line(exc)}); "
                               "delete it and rerun to download it again") from exc
        entries = sorted(child.name for child in staging.iterdir())
        try:
            into.mkdir(parents=True, exist_ok=True)
            for name in entries:
                _merge(staging / name, into / name)
        except OSError as exc:
            raise HarnessError(f"cannot move the contents of {archive_path.name} into {into}: "
                               f"{_one_line(exc)}") from exc
        write_atomic(marker, json.dumps(entries) + "\n")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return into


def _unpacked_entries(archive_path: Path, into: Path) -> list[Path]:
    """The top-level paths an archive produced, as its marker recorded them."""
    try:
        names = json.loads(_marker(archive_path, into).read_text())
    except (OSError, ValueError):
        names = None
    if not isinstance(names, list) or not names:
        return [into]
    return [into / str(name) for name in names]


def download_dataset(name: str, archives: Sequence[Archive], dest_dir: Path, *, how_to_get: str,
                     progress: bool = True) -> list[Path]:
    """Fetch and unpack every archive of dataset `name` into `dest_dir`; return what they unpacked to.

    An archive without a public URL that is not already in `dest_dir` means nothing is downloaded: the
    error is `how_to_get`, the manual instructions. Files that are not archives (e.g. a `.mat` annotation
    file) are fetched and checked but not unpacked; their own path is returned. Archives already unpacked
    (their marker exists) are neither fetched nor unpacked again.
    """
    dest_dir = Path(dest_dir)

    def done(archive: Archive) -> bool:
        if _kind(archive.filename) is not None and _marker(Path(archive.filename), dest_dir).is_file():
            return True
        return (dest_dir / archive.filename).is_file()

    if any(archive.url is None and not done(archive) for archive in archives):
        raise HarnessError(how_to_get)
    results: list[Path] = []
    for archive in archives:
        try:
            if _kind(archive.filename) is None:
                produced = [fetch(archive, dest_dir, progress=progress)]
            elif _marker(Path(archive.filename), dest_dir).is_file():
                produced = _unpacked_entries(Path(archive.filename), dest_dir)
            else:
                path = fetch(archive, dest_dir, progress=progress)
                unpack(path, dest_dir)
                produced = _unpacked_entries(path, dest_dir)
        except HarnessError as exc:
            raise HarnessError(f"{name}: {exc}") from exc
        results.extend(path for path in produced if path not in results)
    return results
