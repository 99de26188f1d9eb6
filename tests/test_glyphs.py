"""The embedded glyphs dataset: its class set, layout, determinism and cache behaviour."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.image.data import glyphs


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, glyphs.GlyphArrays]:
    root = tmp_path_factory.mktemp("glyphs")
    return root, glyphs.load_glyphs(root)


def test_faces_are_the_sixteen_text_faces() -> None:
    assert len(glyphs.FACES) == len(set(glyphs.FACES)) == 16
    assert all(face.endswith(".ttf") for face in glyphs.FACES)


def test_class_set_matches_common_characters(rendered: tuple[Path, glyphs.GlyphArrays]) -> None:
    _, data = rendered
    characters = glyphs.common_characters()
    assert 700 <= len(characters) <= 760
    assert characters == sorted(characters, key=ord)
    assert all(ch.isprintable() and not ch.isspace() for ch in characters)
    assert data.class_names == [f"U+{ord(ch):04X} {ch}" for ch in characters]
    assert data.class_names[characters.index("A")] == "U+0041 A"


def test_layout_is_class_major_with_sixteen_faces(rendered: tuple[Path, glyphs.GlyphArrays]) -> None:
    _, data = rendered
    n_classes = len(data.class_names)
    assert data.images.dtype == np.uint8
    assert data.images.shape == (n_classes * 16, 32, 32)
    assert data.labels.dtype == np.int64
    assert np.array_equal(data.labels, np.repeat(np.arange(n_classes), 16))
    assert np.array_equal(np.bincount(data.labels), np.full(n_classes, 16))


def test_images_have_ink_that_differs_between_faces(rendered: tuple[Path, glyphs.GlyphArrays]) -> None:
    _, data = rendered
    assert data.images.reshape(len(data.images), -1).max(axis=1).min() > 0
    per_class = data.images.reshape(len(data.class_names), 16, -1)
    assert (per_class != per_class[:, :1]).any(axis=(1, 2)).all()


def test_glyphs_stay_inside_the_margin(rendered: tuple[Path, glyphs.GlyphArrays]) -> None:
    _, data = rendered
    border = np.concatenate(
        [data.images[:, 0, :], data.images[:, -1, :], data.images[:, :, 0], data.images[:, :, -1]], axis=1
    )
    assert not border.any()


def test_rendering_is_deterministic(rendered: tuple[Path, glyphs.GlyphArrays]) -> None:
    _, data = rendered
    again = glyphs._render_images(glyphs.common_characters(), 32)
    assert again.tobytes() == data.images.tobytes()


def test_version_names_content_and_size(rendered: tuple[Path, glyphs.GlyphArrays]) -> None:
    _, data = rendered
    assert re.fullmatch(rf"glyphs-v{glyphs.CONTENT_VERSION}-32px-[0-9a-f]{{12}}", data.version)
    assert glyphs.dataset_version(data.images, data.labels) == data.version
    changed = data.images.copy()
    changed[0, 0, 0] ^= 1
    assert glyphs.dataset_version(changed, data.labels) != data.version


def test_cache_is_written_atomically_and_reused(
    rendered: tuple[Path, glyphs.GlyphArrays], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, data = rendered
    assert [p.name for p in root.iterdir()] == [f"glyphs-v{glyphs.CONTENT_VERSION}-32px.npz"]

    def refuse(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(glyphs, "_render_images", refuse)
    cached = glyphs.load_glyphs(root)
    assert cached.images.tobytes() == data.images.tobytes()
    assert cached.class_names == data.class_names
    assert cached.version == data.version
    with np.load(glyphs.cache_path(root)) as archive:
        assert archive["faces"][:16].tolist() == list(glyphs.FACES)
        assert "".join(archive["characters"].tolist()) == "".join(glyphs.common_characters())


def _garbage(path: Path, valid: bytes) -> None:
    path.write_bytes(b"not a zip archive")


def _truncated(path: Path, valid: bytes) -> None:
    path.write_bytes(valid[: len(valid) // 2])


def _wrong_keys(path: Path, valid: bytes) -> None:
    with path.open("wb") as handle:
        np.savez(handle, images=np.zeros((16, 32, 32), np.uint8))


def _wrong_shape(path: Path, valid: bytes) -> None:
    with path.open("wb") as handle:
        np.savez(
            handle,
            images=np.zeros((16, 24, 24), np.uint8),
            labels=np.zeros(16, np.int64),
            characters=np.array(["A"]),
            faces=np.array(glyphs.FACES),
        )


@pytest.mark.parametrize("corrupt", [_garbage, _truncated, _wrong_keys, _wrong_shape])
def test_unreadable_cache_raises_naming_the_file(
    rendered: tuple[Path, glyphs.GlyphArrays], tmp_path: Path, corrupt, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = rendered
    path = glyphs.cache_path(tmp_path)
    corrupt(path, glyphs.cache_path(root).read_bytes())
    before = path.read_bytes()
    monkeypatch.setattr(glyphs, "_render_images", lambda *a, **k: pytest.fail("must not re-render"))
    with pytest.raises(HarnessError, match="delete it") as caught:
        glyphs.load_glyphs(tmp_path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)
    assert path.read_bytes() == before


def test_other_image_size(tmp_path: Path) -> None:
    data = glyphs.load_glyphs(tmp_path, image_size=24)
    assert data.images.shape == (len(glyphs.common_characters()) * 16, 24, 24)
    assert data.version.startswith(f"glyphs-v{glyphs.CONTENT_VERSION}-24px-")
    assert glyphs.cache_path(tmp_path, 24).is_file()


@pytest.mark.parametrize("size", [0, 4, 10_000, 32.0, "32"])
def test_bad_image_size_is_a_user_error(tmp_path: Path, size: object) -> None:
    with pytest.raises(HarnessError, match="image_size"):
        glyphs.load_glyphs(tmp_path, image_size=size)  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())
