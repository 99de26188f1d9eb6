"""Shared fixtures: a tiny protocol and glyphs rendered once per session into a temporary root."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.protocol import load_protocol

# tests/ is on sys.path (rootdir-relative imports): the real PostgreSQL server fixtures, see postgres_server.py
pytest_plugins = ["postgres_server"]

TINY_PROTOCOL = Path(__file__).parent / "tiny.toml"


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """A dataset root of the tests' own; the glyphs are rendered into it on first use."""
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture
def tiny_protocol():
    return load_protocol(TINY_PROTOCOL)
