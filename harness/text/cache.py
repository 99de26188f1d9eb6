"""The encoder's frozen part, run once per (dataset version, encoder, what is cached) into a file cache.

A text protocol trains the encoder's last `trained_layers` transformer layers (and any head) on top of
what the frozen layers give, so those run once: each text's token states after layer L - k (k trained
layers; float32, one flat memory-mapped array with offsets, padding never stored), or, with k = 0, the
sentence embedding as `SentenceTransformer.encode(..., normalize_embeddings=True)` gives it. Texts are
batched by length as sentence-transformers batches them. The build goes chunk by chunk, each written
atomically, so an interrupted build resumes where it stopped; the finished arrays are then memory-mapped,
so no set has to fit in RAM.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from harness.atomic import atomic_open, write_atomic

__all__ = ["TextFeatures", "build_text_cache", "cache_key", "encode_sentences", "token_states"]

CHUNK = 2048  # texts per resumable chunk
ENCODE_BATCH = 64  # texts per forward pass, as SentenceTransformer.encode's default batch (32) doubled


@dataclass(frozen=True)
class TextFeatures:
    """What the frozen encoder gave each text: `pooled` [N, D] (k = 0), or token states `tokens` [T, D] with
    `offsets` [N + 1] (text i is tokens[offsets[i]:offsets[i + 1]])."""

    directory: Path
    trained_layers: int
    pooled: np.ndarray | None = None
    tokens: np.ndarray | None = None
    offsets: np.ndarray | None = None

    def lengths(self, rows: np.ndarray) -> np.ndarray:
        """Tokens per text (1 for pooled features)."""
        if self.offsets is None:
            return np.ones(len(rows), dtype=np.int64)
        return self.offsets[rows + 1] - self.offsets[rows]

    def batch(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(states, mask) of the texts at `rows`: pooled [B, D] with no mask, or token states padded to the
        longest text [B, T, D] with the attention mask [B, T]."""
        if self.pooled is not None:
            return torch.from_numpy(np.ascontiguousarray(self.pooled[rows])), None
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        lengths = ends - starts
        states = np.zeros((len(rows), int(lengths.max()), self.tokens.shape[1]), dtype=np.float32)
        mask = np.zeros((len(rows), int(lengths.max())), dtype=np.int64)
        for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
            states[i, : end - start] = self.tokens[start:end]
            mask[i, : end - start] = 1
        return torch.from_numpy(states), torch.from_numpy(mask)


def cache_key(version: str, encoder_sha256: str, trained_layers: int, max_seq_length: int) -> str:
    what = json.dumps([version, encoder_sha256, trained_layers, max_seq_length])
    return f"{version}-k{trained_layers}-{hashlib.sha256(what.encode()).hexdigest()[:12]}"


@contextmanager
def _sequence_length(model, max_seq_length: int):
    """The model with its tokens per text capped at `max_seq_length` (0: its own) for the duration."""
    own = model.max_seq_length
    model.max_seq_length = max_seq_length or own
    try:
        yield
    finally:
        model.max_seq_length = own


def _length_order(model, texts: Sequence[str]) -> np.ndarray:
    """sentence-transformers' order: longest text first (by its own length measure)."""
    return np.argsort([-model._input_length(text) for text in texts], kind="stable")


@torch.no_grad()
def encode_sentences(model, texts: Sequence[str], max_seq_length: int = 0) -> np.ndarray:
    """The normalised sentence embeddings [N, D], as encode(..., normalize_embeddings=True) gives them."""
    with _sequence_length(model, max_seq_length):
        return model.encode(list(texts), batch_size=ENCODE_BATCH, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False).astype(np.float32)


@torch.no_grad()
def token_states(model, texts: Sequence[str], layer: int, max_seq_length: int = 0) -> list[np.ndarray]:
    """Each text's token states after transformer layer `layer` (0: the embeddings), unpadded [len_i, D]."""
    model.eval()
    transformer = model[0].auto_model
    out: list[np.ndarray | None] = [None] * len(texts)
    with _sequence_length(model, max_seq_length):
        order = _length_order(model, texts)
        for start in range(0, len(texts), ENCODE_BATCH):
            chosen = order[start:start + ENCODE_BATCH]
            batch = [texts[i] for i in chosen]
            features = model.preprocess(batch) if hasattr(model, "preprocess") else model.tokenize(batch)
            inputs = {k: v for k, v in features.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            states = _first_layers(transformer, inputs, layer)
            lengths = inputs["attention_mask"].sum(dim=1).tolist()
            for row, (i, length) in enumerate(zip(chosen, lengths, strict=True)):
                out[i] = states[row, :length].float().numpy().copy()
    return out


def _first_layers(transformer, inputs: dict, layer: int) -> torch.Tensor:
    """The token states after `layer` layers, running only those (a BERT-family encoder: embeddings, then
    `encoder.layer`, as its own forward runs them)."""
    from transformers.masking_utils import create_bidirectional_mask

    states = transformer.embeddings(input_ids=inputs["input_ids"], token_type_ids=inputs.get("token_type_ids"))
    mask = create_bidirectional_mask(config=transformer.config, inputs_embeds=states,
                                     attention_mask=inputs["attention_mask"])
    for block in transformer.encoder.layer[:layer]:
        states = block(states, mask)
    return states


def _chunk_path(directory: Path, index: int) -> Path:
    return directory / "parts" / f"{index:06d}.npz"


def build_text_cache(texts: Sequence[str], *, model, directory: Path, trained_layers: int, num_layers: int,
                     max_seq_length: int, progress: bool = True) -> TextFeatures:
    """The cache of `texts` under `directory`, built (or finished) first if it is not complete."""
    directory = Path(directory)
    done = directory / "complete.json"
    if not done.is_file():
        _build(texts, model, directory, trained_layers, num_layers, max_seq_length, progress)
        write_atomic(done, json.dumps({"items": len(texts), "trained_layers": trained_layers}) + "\n")
        shutil.rmtree(directory / "parts", ignore_errors=True)
    if trained_layers == 0:
        return TextFeatures(directory, 0, pooled=np.load(directory / "pooled.npy", mmap_mode="r"))
    return TextFeatures(directory, trained_layers, tokens=np.load(directory / "tokens.npy", mmap_mode="r"),
                        offsets=np.load(directory / "offsets.npy"))


def _build(texts, model, directory, trained_layers, num_layers, max_seq_length, progress) -> None:
    chunks = range(0, len(texts), CHUNK)
    bar = tqdm(total=len(texts), desc="text cache", unit="text", disable=not progress)
    with torch.inference_mode():
        for index, start in enumerate(chunks):
            part = _chunk_path(directory, index)
            if not part.is_file():
                chunk = list(texts[start:start + CHUNK])
                part.parent.mkdir(parents=True, exist_ok=True)
                if trained_layers == 0:
                    arrays = {"pooled": encode_sentences(model, chunk, max_seq_length)}
                else:
                    states = token_states(model, chunk, num_layers - trained_layers, max_seq_length)
                    arrays = {"tokens": np.concatenate(states), "lengths": np.array([len(s) for s in states])}
                with atomic_open(part, "wb") as handle:
                    np.savez(handle, **arrays)
            bar.update(min(CHUNK, len(texts) - start))
    bar.close()
    parts = [np.load(_chunk_path(directory, i)) for i in range(len(chunks))]
    if trained_layers == 0:
        with atomic_open(directory / "pooled.npy", "wb") as handle:
            np.save(handle, np.concatenate([p["pooled"] for p in parts]))
        return
    lengths = np.concatenate([p["lengths"] for p in parts])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    width = parts[0]["tokens"].shape[1]
    with atomic_open(directory / "tokens.npy", "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False,
                                                      "shape": (int(offsets[-1]), width)})
        for p in parts:
            handle.write(np.ascontiguousarray(p["tokens"], dtype="<f4").tobytes())
    with atomic_open(directory / "offsets.npy", "wb") as handle:
        np.save(handle, offsets)
