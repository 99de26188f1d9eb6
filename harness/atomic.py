"""Atomic file writes: a crash or Ctrl-C leaves either the old file or the new one, never half."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from harness.errors import HarnessError

__all__ = ["atomic_open", "write_atomic"]


@contextmanager
def atomic_open(path: Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside `path`; on success flush it to disk and rename it over `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise _unwritable(path, error) from None
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:  # a full disk, a quota: the old file stays as it was
        Path(tmp).unlink(missing_ok=True)
        raise _unwritable(path, error) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _unwritable(path: Path, error: OSError) -> HarnessError:
    return HarnessError(f"cannot write {path}: {error.strerror or error}; nothing was replaced")


def write_atomic(path: Path, content: str | bytes) -> None:
    with atomic_open(path, "wb" if isinstance(content, bytes) else "w") as handle:
        handle.write(content)
