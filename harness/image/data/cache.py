"""The decoded-image cache: every image of a dataset version decoded and resized once, memory-mapped.

Folds, trials and reproductions then read pixels instead of JPEGs, and no dataset has to fit in RAM
(SOP at 256 px is about 30 GB): the pixels are one flat uint8 file that the OS pages in on demand.
A cache folder `<cache_dir>/images/<version>-<resize>px/` holds

    pixels.u8   every image as HWC uint8 RGB, back to back, in listing order
    index.npy   int64 [N, 3]: byte offset, height, width of each image
    COMPLETE    written last; only a folder with it is ever read

It is built in `<final>.building/`, committing every chunk (pixels flushed and fsynced, then the
index of the images done written atomically), so an interrupted build resumes from its last
committed chunk, and it is renamed to its final name only when whole: a cache never looks complete
before it is.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from harness.atomic import atomic_open
from harness.errors import HarnessError
from harness.image.data.listing import ImageList

__all__ = ["ImageCache", "build_cache", "resized_size", "decode_resized"]

_CHUNK = 256  # images per committed chunk
_COMPLETE = "COMPLETE"


def resized_size(height: int, width: int, shorter: int) -> tuple[int, int]:
    """torchvision's Resize(int) size rule: the shorter side becomes `shorter`, the longer side
    int(shorter * long / short), so the cache holds exactly what Resize(256) gives."""
    if height <= width:
        return shorter, int(shorter * width / height)
    return int(shorter * height / width), shorter


def decode_resized(path: Path, shorter: int) -> np.ndarray:
    """Decode an image file as RGB and resize its shorter side (bilinear, as Resize does on PIL images)."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
    height, width = resized_size(rgb.height, rgb.width, shorter)
    if (height, width) != (rgb.height, rgb.width):
        rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _decode_task(task: tuple[int, str, int]) -> tuple[int, np.ndarray | None, str | None]:
    """Worker side: never raises, so one bad file is reported by name instead of killing the pool."""
    number, path, shorter = task
    try:
        return number, decode_resized(Path(path), shorter), None
    except Exception as error:  # PIL raises many types for damaged files
        reason = str(error).replace(f"'{path}'", "").replace(path, "").strip()  # the caller names the file
        return number, None, f"{type(error).__name__}: {reason}" if reason else type(error).__name__


class ImageCache:
    """A complete cache folder, memory-mapped read-only."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        if not (self.folder / _COMPLETE).is_file():
            raise HarnessError(f"image cache {self.folder} is incomplete; delete it to rebuild")
        try:
            self.index = np.load(self.folder / "index.npy", allow_pickle=False)
            self.pixels = np.memmap(self.folder / "pixels.u8", dtype=np.uint8, mode="r")
        except (OSError, ValueError) as error:
            raise HarnessError(f"image cache {self.folder} is damaged ({error}); delete it to rebuild") from error
        if self.index.ndim != 2 or self.index.shape[1] != 3 or len(self.pixels) != _end(self.index):
            raise HarnessError(f"image cache {self.folder} is damaged (index and pixels disagree); delete it")

    def __reduce__(self):
        """Sent to a worker process as its folder, which it maps again: never the pixels themselves."""
        return ImageCache, (self.folder,)

    def __len__(self) -> int:
        return len(self.index)

    def image(self, row: int) -> np.ndarray:
        """HWC uint8 view of one image; nothing is read until its pixels are touched."""
        offset, height, width = (int(v) for v in self.index[row])
        return self.pixels[offset:offset + height * width * 3].reshape(height, width, 3)


def _end(index: np.ndarray) -> int:
    if len(index) == 0:
        return 0
    offset, height, width = (int(v) for v in index[-1])
    return offset + height * width * 3


def cache_folder(cache_dir: Path, version: str, resize: int) -> Path:
    return Path(cache_dir) / "images" / f"{version}-{resize}px"


def build_cache(images: ImageList, version: str, resize: int, cache_dir: Path, *,
                progress: bool = True, workers: int | None = None) -> ImageCache:
    """The cache of this dataset version at this resize, built (or its interrupted build resumed) if needed.

    Raises HarnessError naming the first image that does not decode; the images before it stay
    committed, so fixing or removing the file and rerunning continues the build.
    """
    final = cache_folder(cache_dir, version, resize)
    if (final / _COMPLETE).is_file():
        return ImageCache(final)
    building = final.with_name(final.name + ".building")
    building.mkdir(parents=True, exist_ok=True)
    index_path, pixels_path = building / "index.npy", building / "pixels.u8"
    done = _committed_index(index_path)
    with open(pixels_path, "ab") as handle:
        handle.truncate(_end(done))  # drop bytes written after the last committed chunk
    rows = [done] if len(done) else []
    offset = _end(done)
    todo = range(len(done), len(images))
    bar = tqdm(total=len(images), initial=len(done), desc=f"caching {images.name} at {resize} px",
               unit="img", disable=not progress or not todo)
    try:
        with open(pixels_path, "ab") as handle:
            chunk: list[tuple[int, int, int]] = []
            for number, pixels, error in _decoded(images, todo, resize, workers):
                if error is not None:
                    _commit(handle, index_path, rows, chunk)
                    raise HarnessError(f"{images.name}: cannot decode image {images.root / images.paths[number]} "
                                       f"({error})")
                handle.write(pixels.tobytes())
                chunk.append((offset, pixels.shape[0], pixels.shape[1]))
                offset += pixels.nbytes
                bar.update()
                if len(chunk) == _CHUNK:
                    rows, chunk = _commit(handle, index_path, rows, chunk), []
            rows = _commit(handle, index_path, rows, chunk)
    finally:
        bar.close()
    (building / _COMPLETE).write_text(f"{version} {resize}px {len(images)} images\n")
    if final.exists():  # a stale incomplete folder under the final name (never written by this code)
        shutil.rmtree(final)
    os.replace(building, final)
    return ImageCache(final)


def _committed_index(index_path: Path) -> np.ndarray:
    try:
        index = np.load(index_path, allow_pickle=False)
        if index.ndim == 2 and index.shape[1] == 3:
            return index.astype(np.int64)
    except (OSError, ValueError, EOFError):
        pass  # no chunk committed yet (or a damaged index): start the build from the first image
    return np.zeros((0, 3), dtype=np.int64)


def _commit(handle, index_path: Path, rows: list[np.ndarray], chunk: list) -> list[np.ndarray]:
    """Make the chunk durable: pixels to disk first, then the index that claims them."""
    if not chunk:
        return rows
    handle.flush()
    os.fsync(handle.fileno())
    rows = [np.concatenate([*rows, np.array(chunk, dtype=np.int64)])]
    with atomic_open(index_path, "wb") as out:
        np.save(out, rows[0])
    return rows


def _decoded(images: ImageList, todo: range, resize: int,
             workers: int | None) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
    """Decoded images in listing order, from worker processes when there is enough work for them."""
    tasks = [(n, str(images.root / images.paths[n]), resize) for n in todo]
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers == 1 or len(tasks) < 64:
        yield from map(_decode_task, tasks)
        return
    with ProcessPoolExecutor(workers) as pool:
        # a window at a time, so decoded images never pile up in memory ahead of the writer
        for start in range(0, len(tasks), _CHUNK * 4):
            yield from pool.map(_decode_task, tasks[start:start + _CHUNK * 4], chunksize=16)
