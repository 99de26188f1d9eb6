"""The decoded-image cache and the reality check's transforms: exact against torchvision, resumable, seeded."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from dataset_fixtures import corrupt_image, make_image_folder
from PIL import Image
from torchvision.transforms import v2

import harness.image.data.cache as cache_module
from harness.errors import HarnessError
from harness.image.data import ImageSet
from harness.image.data.cache import ImageCache, build_cache, cache_folder, decode_resized, resized_size
from harness.image.data.folder import load_own
from harness.image.transforms import eval_batch, random_resized_crop_box, train_batch
from harness.protocol import load_protocol


def _image_set(images, cache) -> ImageSet:
    return ImageSet(images.name, "v", cache, np.arange(len(images)), torch.from_numpy(images.labels),
                    images.class_names, channels=3)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    return load_own(make_image_folder(tmp_path_factory.mktemp("own"), num_classes=20, per_class=4, size=(50, 38)))


def test_resize_rule_and_pixels_equal_torchvision_resize(tmp_path):
    for size in ((500, 375), (375, 500), (333, 333), (41, 977)):
        path = tmp_path / f"{size[0]}x{size[1]}.jpg"
        rng = np.random.default_rng(sum(size))
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)
        ours = decode_resized(path, 256)
        with Image.open(path) as image:
            theirs = np.asarray(v2.Resize(256)(image.convert("RGB")))
        assert ours.shape == theirs.shape == (*resized_size(size[1], size[0], 256), 3)
        assert np.array_equal(ours, theirs)


def test_cache_holds_each_image_decoded_once_and_is_reused(tmp_path, small_set, monkeypatch):
    cache = build_cache(small_set, "own-test", 40, tmp_path, progress=False, workers=1)
    assert len(cache) == len(small_set)
    for row in (0, 7, len(small_set) - 1):
        assert np.array_equal(cache.image(row), decode_resized(small_set.root / small_set.paths[row], 40))
    assert isinstance(cache.pixels, np.memmap)  # read on demand, never loaded whole

    def no_decoding(*args):
        raise AssertionError("a complete cache must not decode again")

    monkeypatch.setattr(cache_module, "_decode_task", no_decoding)
    again = build_cache(small_set, "own-test", 40, tmp_path, progress=False, workers=1)
    assert np.array_equal(again.index, cache.index)


def test_interrupted_build_resumes_from_its_last_committed_chunk(tmp_path):
    images = load_own(make_image_folder(tmp_path / "set", num_classes=30, per_class=10, size=(20, 16)))
    assert len(images) == 300  # more than one chunk of 256
    reference = build_cache(images, "ref", 16, tmp_path / "ref", progress=False, workers=1)

    decoded = []
    real = cache_module._decode_task

    def interrupted(task):
        if len(decoded) == 280:
            raise KeyboardInterrupt
        decoded.append(task[0])
        return real(task)

    cache_module_patch = pytest.MonkeyPatch()
    cache_module_patch.setattr(cache_module, "_decode_task", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_cache(images, "v1", 16, tmp_path / "c", progress=False, workers=1)
    cache_module_patch.undo()
    final = cache_folder(tmp_path / "c", "v1", 16)
    assert not final.exists()  # an interrupted build never looks complete
    with pytest.raises(HarnessError, match="incomplete"):
        ImageCache(final.with_name(final.name + ".building"))

    resumed = []

    def counting(task):
        resumed.append(task[0])
        return real(task)

    cache_module_patch.setattr(cache_module, "_decode_task", counting)
    cache = build_cache(images, "v1", 16, tmp_path / "c", progress=False, workers=1)
    cache_module_patch.undo()
    assert resumed == list(range(256, 300))  # the first chunk was committed, the rest is redone
    assert np.array_equal(cache.index, reference.index)
    assert np.array_equal(np.asarray(cache.pixels), np.asarray(reference.pixels))


def test_undecodable_image_is_named_and_the_build_continues_once_fixed(tmp_path):
    root = make_image_folder(tmp_path / "set", num_classes=4, per_class=3, size=(20, 16))
    images = load_own(root)
    bad = images.root / images.paths[5]
    good_bytes = bad.read_bytes()
    corrupt_image(bad)
    with pytest.raises(HarnessError, match=f"cannot decode image {bad}"):
        build_cache(images, "v", 16, tmp_path / "c", progress=False, workers=1)
    assert not cache_folder(tmp_path / "c", "v", 16).exists()
    bad.write_bytes(good_bytes)
    assert len(build_cache(images, "v", 16, tmp_path / "c", progress=False, workers=1)) == len(images)


def test_damaged_cache_is_named(tmp_path, small_set):
    cache = build_cache(small_set, "v", 40, tmp_path, progress=False, workers=1)
    with open(cache.folder / "pixels.u8", "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(HarnessError, match=f"image cache {cache.folder} is damaged"):
        build_cache(small_set, "v", 40, tmp_path, progress=False, workers=1)


def test_parallel_build_equals_serial(tmp_path):
    images = load_own(make_image_folder(tmp_path / "set", num_classes=10, per_class=8, size=(30, 20)))
    serial = build_cache(images, "s", 24, tmp_path / "a", progress=False, workers=1)
    parallel = build_cache(images, "s", 24, tmp_path / "b", progress=False, workers=2)
    assert np.array_equal(serial.index, parallel.index)
    assert np.array_equal(np.asarray(serial.pixels), np.asarray(parallel.pixels))


def test_eval_batch_is_torchvision_center_crop_then_bgr_0_255_minus_mean(tmp_path, small_set):
    settings = dataclasses.replace(load_protocol("reality_check").images, resize=40, image_size=32)
    data = _image_set(small_set, build_cache(small_set, "v", 40, tmp_path, progress=False, workers=1))
    batch = eval_batch(data, np.array([0, 3]), settings)
    assert batch.shape == (2, 3, 32, 32) and batch.dtype == torch.float32
    for i, row in enumerate((0, 3)):
        image = torch.from_numpy(np.array(data.pixels.image(row))).permute(2, 0, 1)
        rgb = v2.CenterCrop(32)(image).float()
        expected = rgb.flip(0) - torch.tensor([104.0, 117.0, 128.0]).view(3, 1, 1)  # BGR, 0-255, mean only
        assert torch.equal(batch[i], expected)


def test_rgb_unit_range_normalisation(tmp_path, small_set):
    settings = dataclasses.replace(load_protocol("reality_check_resnet50").images, resize=40, image_size=32)
    data = _image_set(small_set, build_cache(small_set, "v", 40, tmp_path, progress=False, workers=1))
    batch = eval_batch(data, np.array([1]), settings)
    rgb = v2.CenterCrop(32)(torch.from_numpy(np.array(data.pixels.image(1))).permute(2, 0, 1)).float() / 255
    mean, std = torch.tensor(settings.mean).view(3, 1, 1), torch.tensor(settings.std).view(3, 1, 1)
    assert torch.allclose(batch[0], (rgb - mean) / std, atol=1e-6)


def test_random_resized_crop_boxes_follow_the_protocol_ranges():
    settings = load_protocol("reality_check").images
    generator = torch.Generator().manual_seed(0)
    shares, ratios = [], []
    for _ in range(2000):
        top, left, h, w = random_resized_crop_box(256, 341, settings, generator)
        assert 0 <= top and top + h <= 256 and 0 <= left and left + w <= 341
        shares.append(h * w / (256 * 341))
        ratios.append(w / h)
    # rounding to whole pixels moves the share and ratio a little past the drawn values
    assert 0.16 - 0.01 <= min(shares) and max(shares) <= 1.0
    assert 0.75 - 0.02 <= min(ratios) and max(ratios) <= 1.33 + 0.02
    assert 0.3 < np.mean(shares) < 0.75  # spread over the range, not stuck at one end
    # an image too narrow for any drawn ratio falls back to the centre crop of the clamped ratio
    assert random_resized_crop_box(256, 10, settings, generator) == (
        (256 - round(10 / 0.75)) // 2, 0, round(10 / 0.75), 10)


def test_train_batches_are_seeded_and_augmented(tmp_path, small_set):
    settings = dataclasses.replace(load_protocol("reality_check").images, resize=40, image_size=32)
    data = _image_set(small_set, build_cache(small_set, "v", 40, tmp_path, progress=False, workers=1))
    items = np.arange(16)
    first = train_batch(data, items, settings, torch.Generator().manual_seed(5))
    again = train_batch(data, items, settings, torch.Generator().manual_seed(5))
    other = train_batch(data, items, settings, torch.Generator().manual_seed(6))
    assert first.shape == (16, 3, 32, 32) and torch.equal(first, again) and not torch.equal(first, other)
    assert not torch.equal(first, eval_batch(data, items, settings))
    image = torch.from_numpy(np.array(data.pixels.image(0))).permute(2, 0, 1)
    aspect = image.shape[2] / image.shape[1]  # a crop of the whole image: scale 1 at the image's own ratio
    no_flip = dataclasses.replace(settings, horizontal_flip=False, crop_scale_min=1.0, crop_ratio_min=aspect,
                                  crop_ratio_max=aspect)
    whole = train_batch(data, np.array([0]), no_flip, torch.Generator().manual_seed(0))
    expected = v2.functional.resize(image, [32, 32], antialias=True).float().flip(0)
    assert torch.equal(whole[0], expected - torch.tensor([104.0, 117.0, 128.0]).view(3, 1, 1))
