"""The embedded default dataset "glyphs": printable characters rendered in the 16 text faces shipped with
matplotlib, one class per character and one grayscale image per face.

It needs no download, so every benchmark can run offline, and the fonts are versioned with matplotlib, so the
images are reproducible; the version string records a hash of the exact arrays a run used.
"""

from __future__ import annotations

import functools
import hashlib
import math
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.atomic import atomic_open
from harness.errors import HarnessError

if TYPE_CHECKING:
    from matplotlib.ft2font import FT2Font

CONTENT_VERSION: str = "1"

FACES: tuple[str, ...] = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
)

MIN_IMAGE_SIZE = 8
MAX_IMAGE_SIZE = 512

_OVERSAMPLE = 4
_PROBE_PX = 64.0
_PROBE_SIDE = 112
_MAX_RENDER_PX = 4096.0
_CACHE_KEYS = ("images", "labels", "characters", "faces")


@dataclass(frozen=True)
class GlyphArrays:
    """The whole dataset in memory, items class-major with faces in FACES order."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    version: str


def cache_path(root: Path, image_size: int = 32) -> Path:
    """Where load_glyphs keeps the rendered arrays; the name changes whenever the content can."""
    return Path(root) / f"glyphs-v{CONTENT_VERSION}-{image_size}px.npz"


def dataset_version(images: np.ndarray, labels: np.ndarray) -> str:
    """Identify exactly which pixels and labels a run used, so records stay comparable across machines."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return f"glyphs-v{CONTENT_VERSION}-{images.shape[-1]}px-{digest.hexdigest()[:12]}"


def class_name(character: str) -> str:
    """Readable and unambiguous even for look-alike characters, e.g. "U+0041 A"."""
    return f"U+{ord(character):04X} {character}"


def common_characters() -> list[str]:
    """The class characters, sorted by code point: printable, non-space, and drawn by every face."""
    return list(_common_characters())


def load_glyphs(root: Path, image_size: int = 32) -> GlyphArrays:
    """Load the dataset from the cache under root, rendering and caching it first if absent."""
    _check_image_size(image_size)
    path = cache_path(root, image_size)
    if path.exists():
        images, labels, characters = _read_cache(path, image_size)
    else:
        characters = common_characters()
        images = _render_images(characters, image_size)
        labels = np.repeat(np.arange(len(characters), dtype=np.int64), len(FACES))
        _write_cache(path, images, labels, characters)
    return GlyphArrays(
        images=images,
        labels=labels,
        class_names=[class_name(ch) for ch in characters],
        version=dataset_version(images, labels),
    )


def _check_image_size(image_size: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer):
        raise HarnessError(f"glyphs image_size must be an integer, got {image_size!r}")
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise HarnessError(
            f"glyphs image_size must be between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE}, got {image_size}"
        )


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _open_fonts() -> list[FT2Font]:
    """Fresh font objects: FT2Font keeps per-call state, so sharing them would couple renders."""
    from matplotlib.ft2font import FT2Font

    directory = _font_dir()
    missing = [face for face in FACES if not (directory / face).is_file()]
    if missing:
        raise HarnessError(f"matplotlib's font folder {directory} lacks {', '.join(missing)}")
    return [FT2Font(str(directory / face)) for face in FACES]


def _no_hinting() -> int:
    """Unhinted outlines scale linearly, so oversampling and area averaging give clean shapes."""
    from matplotlib import ft2font

    flags = getattr(ft2font, "LoadFlags", None)
    return flags.NO_HINTING if flags is not None else ft2font.LOAD_NO_HINTING


@functools.cache
def _common_characters() -> tuple[str, ...]:
    fonts = _open_fonts()
    codes = set.intersection(*({code for code, gid in font.get_charmap().items() if gid} for font in fonts))
    candidates = [chr(code) for code in sorted(codes) if chr(code).isprintable() and not chr(code).isspace()]
    return tuple(ch for ch in candidates if all(_ink(font, ch, _PROBE_SIDE) is not None for font in fonts))


def _ink(font: FT2Font, character: str, side: int) -> np.ndarray | None:
    """Rasterize the glyph with its longer ink side near `side` pixels, cropped to the ink; None if blank."""
    flags = _no_hinting()
    font.set_size(_PROBE_PX, 72.0)
    glyph = font.load_char(ord(character), flags)
    extent = max(glyph.width, glyph.height) / 64.0
    if extent <= 0:
        return None
    font.set_size(min(_PROBE_PX * side / extent, _MAX_RENDER_PX), 72.0)
    font.set_text(character, 0.0, flags=flags)
    font.draw_glyphs_to_bitmap(antialiased=True)
    bitmap = np.asarray(font.get_image(), dtype=np.uint8)
    rows = np.flatnonzero(bitmap.any(axis=1))
    cols = np.flatnonzero(bitmap.any(axis=0))
    if rows.size == 0:
        return None
    return bitmap[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _margin(image_size: int) -> int:
    return max(1, image_size // 16)


def _fit(ink: np.ndarray, image_size: int) -> np.ndarray:
    """Scale the ink box to fill the canvas inside the margin, centred to a sub-pixel, by area averaging."""
    from PIL import Image

    inner = image_size - 2 * _margin(image_size)
    h, w = ink.shape
    span = image_size * max(h, w) / inner
    pad = math.ceil(span) + 2
    canvas = np.zeros((pad, pad), dtype=np.uint8)
    top, left = (pad - h) // 2, (pad - w) // 2
    canvas[top : top + h, left : left + w] = ink
    cy, cx, half = top + h / 2, left + w / 2, span / 2
    box = (cx - half, cy - half, cx + half, cy + half)
    resized = Image.fromarray(canvas).resize((image_size, image_size), Image.Resampling.BOX, box=box)
    return np.asarray(resized, dtype=np.uint8)


def _render_images(characters: Sequence[str], image_size: int) -> np.ndarray:
    """Render every character in every face, class-major, as uint8 [N, image_size, image_size]."""
    fonts = _open_fonts()
    side = _OVERSAMPLE * (image_size - 2 * _margin(image_size))
    images = np.zeros((len(characters) * len(FACES), image_size, image_size), dtype=np.uint8)
    for i, character in enumerate(characters):
        for j, font in enumerate(fonts):
            ink = _ink(font, character, side)
            if ink is None:
                raise HarnessError(f"{class_name(character)} renders blank in {FACES[j]} at {image_size} px")
            images[i * len(FACES) + j] = _fit(ink, image_size)
    return images


def _write_cache(path: Path, images: np.ndarray, labels: np.ndarray, characters: Sequence[str]) -> None:
    """Write to a temporary file beside the target and rename it, so readers never see a partial cache."""
    with atomic_open(path, "wb") as handle:
        np.savez_compressed(
            handle,
            images=images,
            labels=labels,
            characters=np.array(list(characters), dtype=str),
            faces=np.array(list(FACES) * len(characters), dtype=str),
        )


def _read_cache(path: Path, image_size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            images, labels, characters, faces = (archive[key] for key in _CACHE_KEYS)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        reason = (str(error).splitlines() or [""])[0]
        raise HarnessError(
            f"glyph cache {path} is unreadable ({type(error).__name__}: {reason}); delete it to re-render"
        ) from error
    problem = _layout_problem(images, labels, characters, faces, image_size)
    if problem:
        raise HarnessError(f"glyph cache {path} is invalid ({problem}); delete it to re-render")
    return images, labels, [str(ch) for ch in characters]


def _layout_problem(
    images: np.ndarray, labels: np.ndarray, characters: np.ndarray, faces: np.ndarray, image_size: int
) -> str | None:
    if characters.ndim != 1 or characters.dtype.kind != "U" or characters.size == 0:
        return "characters is not a non-empty unicode vector"
    n = characters.size * len(FACES)
    if images.dtype != np.uint8 or images.shape != (n, image_size, image_size):
        return f"images is {images.dtype} {images.shape}, expected uint8 {(n, image_size, image_size)}"
    expected_labels = np.repeat(np.arange(characters.size), len(FACES))
    if labels.dtype != np.int64 or not np.array_equal(labels, expected_labels):
        return "labels are not class-major int64 positions"
    if faces.dtype.kind != "U" or not np.array_equal(faces, np.tile(FACES, characters.size)):
        return "faces do not follow FACES order"
    return None
