"""model.precision and model.channels_last, and batches made on a device: hashed, validated, and on the CPU
either exactly or within rounding of the float32 reference path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dataset_fixtures import make_image_folder
from torchvision.transforms.v2 import functional as TF

from harness.errors import HarnessError
from harness.image.data import ImageSet, load_dataset
from harness.image.data.cache import build_cache
from harness.image.data.folder import load_own
from harness.image.transforms import eval_batch, random_resized_crop_box, to_device, train_batch
from harness.protocol import load_protocol
from harness.splits import class_disjoint_split
from harness.train import build_model, embed, train_fold

CUDA = torch.cuda.is_available()


def _write(tmp_path, text):
    path = tmp_path / "p.toml"
    path.write_text('name = "t"\nversion = 1\ndescription = "d"\n' + text)
    return path


def _with_model(protocol, **changes):
    return dataclasses.replace(protocol, model=dataclasses.replace(protocol.model, **changes))


def test_precision_and_channels_last_enter_the_hash_only_away_from_their_defaults(tmp_path):
    plain = load_protocol(_write(tmp_path, ""))
    assert load_protocol(_write(tmp_path, "[model]\nprecision = 'float32'\nchannels_last = false\n")).hash == plain.hash
    bf16 = load_protocol(_write(tmp_path, "[model]\nprecision = 'bfloat16'\n"))
    nhwc = load_protocol(_write(tmp_path, "[model]\nchannels_last = true\n"))
    assert bf16.model.precision == "bfloat16" and nhwc.model.channels_last
    assert len({plain.hash, bf16.hash, nhwc.hash}) == 3
    assert "precision" not in plain.canonical_dict()["model"] and "channels_last" not in plain.canonical_dict()["model"]


def test_bad_precision_or_channels_last_is_one_clear_line(tmp_path):
    with pytest.raises(HarnessError, match="model.precision must be one of float32, bfloat16$"):
        load_protocol(_write(tmp_path, "[model]\nprecision = 'float16'\n"))
    with pytest.raises(HarnessError, match=r"\[model\] channels_last must be bool, got 'yes'"):
        load_protocol(_write(tmp_path, "[model]\nchannels_last = 'yes'\n"))


@pytest.fixture(scope="module")
def glyph_fold(data_root):
    data = load_dataset("glyphs", image_size=16, root=data_root)
    fold = class_disjoint_split(data.num_classes).folds[0]
    return data.subset(fold.train), data.subset(fold.val)


def _short(protocol, iterations=4):
    return dataclasses.replace(protocol, budget=dataclasses.replace(
        protocol.budget, max_iterations=iterations, validation_interval=iterations // 2))


def test_bfloat16_training_runs_with_float32_parameters_and_finite_figures(tiny_protocol, glyph_fold):
    train_set, val_set = glyph_fold
    protocol = _short(_with_model(tiny_protocol, precision="bfloat16"))
    result = train_fold(protocol=protocol, loss_name="batch_hard", hparams={"margin": 0.2}, train_set=train_set,
                        val_set=val_set, seed=0)
    assert all(np.isfinite([h["loss"], h["val_map_at_r"]]).all() for h in result.history)
    assert 0 <= result.best_val_map_at_r <= 1
    assert all(p.dtype == torch.float32 for p in result.model.parameters())
    embeddings = embed(result.model, val_set, protocol, device=torch.device("cpu"))
    assert embeddings.dtype == np.float32 and np.isfinite(embeddings).all()
    float32 = embed(result.model, val_set, _with_model(protocol, precision="float32"), device=torch.device("cpu"))
    assert not np.array_equal(embeddings, float32)  # the forward really ran in bfloat16
    assert np.abs(embeddings - float32).max() < 0.1


def test_channels_last_embeds_and_trains_as_the_default_does(tiny_protocol, glyph_fold):
    train_set, val_set = glyph_fold
    nhwc = _with_model(tiny_protocol, channels_last=True)
    cpu = torch.device("cpu")
    default = embed(build_model(tiny_protocol, train_set, seed=1), val_set, tiny_protocol, device=cpu)
    model = build_model(nhwc, train_set, seed=1)
    assert np.allclose(embed(model, val_set, nhwc, device=cpu), default, atol=1e-5)
    conv = next(p for p in model.parameters() if p.ndim == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)  # embed placed it in the protocol's format

    def trained(protocol):
        result = train_fold(protocol=_short(protocol, 2), loss_name="batch_hard", hparams={"margin": 0.2},
                            train_set=train_set, val_set=val_set, seed=0)
        return embed(result.model, val_set, protocol, device=cpu)

    assert np.allclose(trained(nhwc), trained(tiny_protocol), atol=1e-3)


@pytest.fixture(scope="module")
def cached_images(tmp_path_factory):
    """Images of several shapes cached at 40 px, so the 32 px crops both shrink and enlarge."""
    root = tmp_path_factory.mktemp("own")
    images = load_own(make_image_folder(root, num_classes=12, per_class=4, size=(61, 40)))
    cache = build_cache(images, "v", 40, root / "cache", progress=False, workers=1)
    return ImageSet(images.name, "v", cache, np.arange(len(images)), torch.from_numpy(images.labels),
                    images.class_names, channels=3)


def _reference_train_batch(data, items, settings, generator):
    """The resized_crop training batch as it was written before batches could be made on a device: each
    image's box, then its flip, drawn as the image is cropped."""
    crops = []
    for row in data.rows[items]:
        image = torch.from_numpy(np.array(data.pixels.image(int(row)))).permute(2, 0, 1)
        top, left, height, width = random_resized_crop_box(image.shape[1], image.shape[2], settings, generator)
        crop = TF.resized_crop(image, top, left, height, width, [settings.image_size] * 2, antialias=True)
        if settings.horizontal_flip and torch.rand(1, generator=generator).item() < 0.5:
            crop = crop.flip(-1)
        crops.append(crop)
    images = torch.stack(crops).float().flip(1)  # reality_check: BGR, 0-255
    return images - torch.tensor(settings.mean).view(1, 3, 1, 1)


def _crop_settings():
    return dataclasses.replace(load_protocol("reality_check").images, resize=40, image_size=32)


def test_cpu_path_is_the_reference_and_the_device_path_differs_only_by_rounding(cached_images):
    settings, items = _crop_settings(), np.arange(len(cached_images))
    reference_rng, cpu_rng, device_rng = (torch.Generator().manual_seed(11) for _ in range(3))
    reference = _reference_train_batch(cached_images, items, settings, reference_rng)
    assert torch.equal(train_batch(cached_images, items, settings, cpu_rng), reference)
    on_device = train_batch(cached_images, items, settings, device_rng, device=torch.device("cpu"))
    # the same draws, in the same order: the generators end in the same state
    assert torch.equal(device_rng.get_state(), reference_rng.get_state())
    assert torch.equal(cpu_rng.get_state(), reference_rng.get_state())
    # 0-255 pixels, so one level is 1.0: torchvision's uint8 resize rounds its fixed-point sums, the
    # float32 one its float sums, and about one pixel in six lands on the other side of a half
    difference = (on_device - reference).abs()
    assert difference.max() <= 1.0 and (difference > 0).float().mean() < 0.3


def test_device_path_resizes_as_torchvision_does_for_float_images(cached_images):
    """Its crops are exactly a float32 antialiased resize of the CPU path's boxes, flipped as drawn."""
    settings = dataclasses.replace(_crop_settings(), channel_order="RGB", mean=0.0, std=1.0)
    items = np.arange(8)
    on_device = train_batch(cached_images, items, settings, torch.Generator().manual_seed(3),
                            device=torch.device("cpu"))
    generator = torch.Generator().manual_seed(3)
    for i, row in enumerate(items):
        image = torch.from_numpy(np.array(cached_images.pixels.image(int(row)))).permute(2, 0, 1).float()
        top, left, height, width = random_resized_crop_box(image.shape[1], image.shape[2], settings, generator)
        crop = F.interpolate(image[None, :, top:top + height, left:left + width], size=[32, 32], mode="bilinear",
                             align_corners=False, antialias=True)[0].round()
        flip = torch.rand(1, generator=generator).item() < 0.5
        assert torch.equal(on_device[i], crop.flip(-1) if flip else crop)


def test_a_crop_of_the_output_size_is_taken_as_it_is(cached_images):
    height, width = cached_images.pixels.image(0).shape[:2]  # every image is 40 x 61
    exact = dataclasses.replace(_crop_settings(), image_size=height, crop_ratio_min=1.0, crop_ratio_max=1.0,
                                crop_scale_min=height / width, crop_scale_max=height / width)
    items = np.arange(len(cached_images))
    cpu = train_batch(cached_images, items, exact, torch.Generator().manual_seed(0))
    assert torch.equal(train_batch(cached_images, items, exact, torch.Generator().manual_seed(0),
                                   device=torch.device("cpu")), cpu)


def test_eval_and_affine_batches_are_the_same_made_on_a_device(cached_images, glyph_fold):
    cpu = torch.device("cpu")
    settings, items = _crop_settings(), np.arange(10)
    assert torch.equal(eval_batch(cached_images, items, settings, device=cpu), eval_batch(cached_images, items,
                                                                                          settings))
    glyphs, affine = glyph_fold[0], load_protocol("quick").images
    assert torch.equal(eval_batch(glyphs, items, affine, device=cpu), eval_batch(glyphs, items, affine))
    assert torch.equal(train_batch(glyphs, items, affine, torch.Generator().manual_seed(1), device=cpu),
                       train_batch(glyphs, items, affine, torch.Generator().manual_seed(1)))
    labels = torch.arange(4)
    assert to_device(labels, None) is labels


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_batches_match_the_cpu_path_and_bfloat16_trains(cached_images, tiny_protocol, glyph_fold):
    settings, items = _crop_settings(), np.arange(len(cached_images))
    cpu = train_batch(cached_images, items, settings, torch.Generator().manual_seed(4))
    cuda = train_batch(cached_images, items, settings, torch.Generator().manual_seed(4), device=torch.device("cuda"))
    assert cuda.is_cuda and (cuda.cpu() - cpu).abs().max() <= 1.0
    assert torch.equal(eval_batch(cached_images, items, settings, device=torch.device("cuda")).cpu(),
                       eval_batch(cached_images, items, settings))
    protocol = _short(_with_model(tiny_protocol, precision="bfloat16", channels_last=True))
    result = train_fold(protocol=protocol, loss_name="batch_hard", hparams={"margin": 0.2}, train_set=glyph_fold[0],
                        val_set=glyph_fold[1], seed=0, device=torch.device("cuda"))
    assert np.isfinite(result.best_val_map_at_r)
