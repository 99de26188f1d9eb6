"""The protocol file: strict loading, hashing, overrides."""

from __future__ import annotations

import dataclasses

import pytest

from harness.errors import HarnessError
from harness.protocol import PROTOCOL_DIR, available_protocols, load_protocol


def test_quick_loads_and_hash_is_stable():
    a, b = load_protocol("quick"), load_protocol(PROTOCOL_DIR / "quick.toml")
    assert a == b and a.hash == b.hash
    assert len(a.hash) == 64 and a.short_hash == a.hash[:12]
    assert "quick" in available_protocols()


def test_every_field_changes_the_hash():
    base = load_protocol("quick")
    for section in ("model", "optimizer", "batch", "images", "budget", "search"):
        settings = getattr(base, section)
        for field in dataclasses.fields(settings):
            value = getattr(settings, field.name)
            changed = {bool: lambda v: not v, int: lambda v: v + 1, float: lambda v: v * 1.5 + 0.1,
                       str: lambda v: v + "x"}[type(value)](value)
            variant = dataclasses.replace(base, **{section: dataclasses.replace(settings, **{field.name: changed})})
            assert variant.hash != base.hash, f"{section}.{field.name} does not change the hash"


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
