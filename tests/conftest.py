"""Shared fixtures: a tiny protocol and glyphs rendered once per session into a temporary root."""

from __future__ import annotations

import pytest

from harness.protocol import protocol_from_dict

TINY = {
    "name": "tiny",
    "version": 1,
    "description": "test-sized: a few iterations per fold",
    "model": {"backbone": "test_efficientnet", "embedding_size": 32},
    "batch": {"batch_size": 32, "m_per_class": 4},
    "images": {"image_size": 16},
    "budget": {"max_iterations": 12, "validation_interval": 6, "patience": 1},
    "search": {"folds": 4, "trials": 2, "reproductions": 2, "seed": 3},
}


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """A dataset root of the tests' own; the glyphs are rendered into it on first use."""
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture
def tiny_protocol():
    return protocol_from_dict(TINY, source="tests/conftest.py TINY")
