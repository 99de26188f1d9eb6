"""The protocol file: strict loading, hashing, overrides."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.protocol import PROTOCOL_DIR, available_protocols, load_protocol


def test_quick_loads_and_hash_is_stable():
    a, b = load_protocol("quick"), load_protocol(PROTOCOL_DIR / "quick.toml")
    assert a == b and a.hash == b.hash
    assert len(a.hash) == 64 and a.short_hash == a.hash[:12]
    assert "quick" in available_protocols()


def test_quick_and_tiny_hashes_are_pinned():
    # the committed glyphs/quick records carry this hash: a new protocol field must not change it
    assert load_protocol("quick").short_hash == "7cda75aec4d7"
    assert load_protocol(Path(__file__).parent / "tiny.toml").short_hash == "d61c52bfc1cc"


def test_every_field_changes_the_hash():
    for name, dataset in (("quick", None), ("reality_check", "cub200")):
        base = load_protocol(name, dataset=dataset)
        for section in ("model", "optimizer", "batch", "images", "budget", "search"):
            settings = getattr(base, section)
            for field in dataclasses.fields(settings):
                value = getattr(settings, field.name)
                changed = {bool: lambda v: not v, int: lambda v: v + 1, float: lambda v: v * 1.5 + 0.1,
                           str: lambda v: v + "x", tuple: lambda v: tuple(x + 1 for x in v)}[type(value)](value)
                variant = dataclasses.replace(base, **{section: dataclasses.replace(settings, **{field.name: changed})})
                if field.metadata.get("hashed", True):
                    assert variant.hash != base.hash, f"{name}: {section}.{field.name} does not change the hash"
                else:  # a weights path is hashed through the file's sha256, not its name
                    assert variant.hash == base.hash, f"{name}: {section}.{field.name} changes the hash"


def test_weights_file_enters_the_hash_by_content(tmp_path):
    for name, content in (("a.pth", b"one"), ("b.pth", b"one"), ("c.pth", b"two")):
        (tmp_path / name).write_bytes(content)
    a, b, c = (load_protocol(_write(tmp_path, f"[model]\nweights = '{tmp_path / n}'\n")) for n in ("a.pth", "b.pth",
                                                                                                 "c.pth"))
    assert a.model.weights_sha256 == hashlib.sha256(b"one").hexdigest()
    assert a.hash == b.hash != c.hash
    assert a.hash != load_protocol(_write(tmp_path, "")).hash
    relative = load_protocol(_write(tmp_path, "[model]\nweights = 'c.pth'\n"))  # beside the protocol file
    assert relative.model.weights == str((tmp_path / "c.pth").resolve())
    with pytest.raises(HarnessError, match="weights file not found: nope.pth"):
        load_protocol(_write(tmp_path, "[model]\nweights = 'nope.pth'\n"))


def test_reality_check_holds_the_papers_settings_per_dataset():
    cub = load_protocol("reality_check", dataset="cub200")
    assert (cub.model.backbone, cub.model.pretrained, cub.model.freeze_batchnorm) == ("bn_inception", True, True)
    assert cub.model.embedding_size == 128 and cub.model.normalize_embeddings
    o = cub.optimizer
    assert (o.name, o.trunk_lr, o.embedder_lr, o.weight_decay, o.momentum) == ("rmsprop", 1e-6, 1e-6, 1e-4, 0.9)
    assert (cub.batch.batch_size, cub.batch.m_per_class) == (32, 4)
    i = cub.images
    assert (i.transform, i.resize, i.image_size, i.crop_scale_min, i.crop_scale_max) == ("resized_crop", 256, 227,
                                                                                        0.16, 1.0)
    assert (i.crop_ratio_min, i.crop_ratio_max, i.horizontal_flip) == (0.75, 1.33, True)
    assert (i.channel_order, i.pixel_range, i.mean, i.std) == ("BGR", 255.0, (104.0, 117.0, 128.0), (1.0, 1.0, 1.0))
    assert (cub.search.folds, cub.search.trials, cub.search.reproductions) == (4, 50, 10)
    assert cub.budget.max_iterations == 1000 * 100
    # validation every 2 / 5 / 20 epochs of 100 iterations, patience 9 / 14 / 39 epochs
    for dataset, every, patience in (("cub200", 2, 9), ("cars196", 5, 14), ("sop", 20, 39)):
        budget = load_protocol("reality_check", dataset=dataset).budget
        assert (budget.validation_interval, budget.patience_iterations) == (every * 100, patience * 100)
    hashes = {load_protocol("reality_check", dataset=d).hash for d in ("cub200", "cars196", "sop")}
    assert len(hashes) == 3
    assert load_protocol("reality_check", dataset="my_own_set") == load_protocol("reality_check")


def test_resnet50_protocol_differs_only_in_backbone_and_its_input():
    bn, rn = load_protocol("reality_check", dataset="cub200"), load_protocol("reality_check_resnet50", dataset="cub200")
    assert rn.model.backbone == "resnet50" and rn.images.image_size == 224
    differing = {(section, f.name) for section in ("model", "optimizer", "batch", "images", "budget", "search")
                 for f in dataclasses.fields(getattr(bn, section))
                 if getattr(getattr(bn, section), f.name) != getattr(getattr(rn, section), f.name)}
    assert differing == {("model", "backbone"), ("images", "image_size"), ("images", "channel_order"),
                         ("images", "pixel_range"), ("images", "mean"), ("images", "std")}


def test_per_dataset_settings_are_checked(tmp_path):
    with pytest.raises(HarnessError, match=r"\[datasets.cub200\].*unknown key\(s\) in \[budget\]: patiense"):
        load_protocol(_write(tmp_path, "[datasets.cub200.budget]\npatiense = 3\n"))
    with pytest.raises(HarnessError, match="'bugdet' is not a settings section"):
        load_protocol(_write(tmp_path, "[datasets.cub200.bugdet]\npatience = 3\n"))
    protocol = load_protocol(_write(tmp_path, "[datasets.cub200.budget]\npatience = 7\n"), dataset="cub200")
    assert protocol.budget.patience == 7


def test_per_channel_mean_and_std(tmp_path):
    protocol = load_protocol(_write(tmp_path, "[images]\nmean = [1, 2, 3]\nstd = [2]\n"))
    assert protocol.images.mean == (1.0, 2.0, 3.0) and protocol.images.std == 2.0
    assert protocol.images.per_channel("std", 3) == (2.0, 2.0, 2.0)
    with pytest.raises(HarnessError, match="3 values but the images have 1 channels"):
        protocol.images.per_channel("mean", 1)
    with pytest.raises(HarnessError, match="a number or a list of numbers"):
        load_protocol(_write(tmp_path, "[images]\nmean = ['a']\n"))


def test_overrides_make_a_new_protocol():
    base = load_protocol("quick")
    assert base.with_overrides() is base
    variant = base.with_overrides(trials=2, reproductions=2, seed=7)
    assert (variant.search.trials, variant.search.reproductions, variant.search.seed) == (2, 2, 7)
    assert variant.hash != base.hash
    with pytest.raises(HarnessError, match="trials"):
        base.with_overrides(trials=0)


def _write(tmp_path, text):
    path = tmp_path / "p.toml"
    path.write_text('name = "t"\nversion = 1\ndescription = "d"\n' + text)
    return path


def test_unknown_key_is_an_error(tmp_path):
    with pytest.raises(HarnessError, match=r"unknown key\(s\) in \[model\]: embeding_size"):
        load_protocol(_write(tmp_path, "[model]\nembeding_size = 64\n"))
    with pytest.raises(HarnessError, match="unknown key"):
        load_protocol(_write(tmp_path, "[modle]\nbackbone = 'x'\n"))


def test_wrong_type_and_bad_values_are_errors(tmp_path):
    with pytest.raises(HarnessError, match="batch_size must be int"):
        load_protocol(_write(tmp_path, "[batch]\nbatch_size = '64'\n"))
    with pytest.raises(HarnessError, match="m_per_class"):
        load_protocol(_write(tmp_path, "[batch]\nbatch_size = 63\nm_per_class = 4\n"))
    with pytest.raises(HarnessError, match="optimizer.name"):
        load_protocol(_write(tmp_path, "[optimizer]\nname = 'lion'\n"))


def test_missing_or_unknown_protocol(tmp_path):
    with pytest.raises(HarnessError, match="unknown protocol 'nope'; known protocols: .*quick"):
        load_protocol("nope")
    with pytest.raises(HarnessError, match="not found"):
        load_protocol(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(HarnessError, match="not valid TOML"):
        load_protocol(bad)


def test_int_accepted_where_float_expected(tmp_path):
    protocol = load_protocol(_write(tmp_path, "[optimizer]\ntrunk_lr = 1\n"))
    assert protocol.optimizer.trunk_lr == 1.0 and isinstance(protocol.optimizer.trunk_lr, float)
