"""Text as a modality: what the engine calls (harness.modality.Modality), for every text set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from harness.dataset_names import TEXT_DATASETS
from harness.errors import HarnessError
from harness.protocol import Protocol
from harness.text.floor import TFIDF

__all__ = ["TEXT", "TextModality", "EVAL_BATCH"]

EVAL_BATCH = 64


def _root(root: Path | None) -> Path:
    return Path(root) if root is not None else Path.cwd() / "datasets"


class TextModality:
    name = "text"
    default_protocol = "text_quick"
    floors = {TFIDF.name: TFIDF}

    def owns(self, dataset: str) -> bool:
        from harness.text.data import is_text_file

        return dataset in TEXT_DATASETS or is_text_file(dataset)

    def check_inputs(self, dataset: str, protocol: Protocol) -> None:
        from harness.text.encoder import encoder_dimension

        text = protocol.text
        if not (text.trained_layers or text.head_hidden):
            raise HarnessError(f"protocol {protocol.name}: a text protocol trains something: set [text] "
                               "trained_layers or head_hidden")
        width = encoder_dimension(text.encoder)
        if protocol.model.embedding_size != width:
            raise HarnessError(f"protocol {protocol.name}: model.embedding_size is {protocol.model.embedding_size}, "
                               f"but the encoder {text.encoder} embeds in {width} dimensions")

    def _table(self, dataset: str, root: Path | None):
        from harness.dataset_names import dataset_label
        from harness.text.data import locate_text_set, read_text_table

        path, embedded = locate_text_set(dataset, _root(root))
        return read_text_table(path, name=dataset_label(dataset), official=embedded, sort_classes=not embedded)

    def describe(self, root: Path | None) -> list[dict]:
        from harness.text.data import wordnet_path

        rows = []
        for name in TEXT_DATASETS:
            row = {"name": name, "present": wordnet_path(_root(root)).is_file(),
                   "where": str(wordnet_path(_root(root))), "version": None,
                   "how_to_get": f"it is committed with the repository (datasets/{name}/); rebuild it with "
                                 "`python -m harness.text.wordnet_build` from Debian's wordnet-base"}
            if row["present"]:
                table = self._table(name, root)
                row.update(items=len(table.texts), classes=len(table.class_names), version=table.version,
                           summary=f"embedded text ({row['where']}), {len(table.texts):,} texts, "
                                   f"{len(table.class_names):,} classes, version {table.version}")
            rows.append(row)
        return rows

    def classes(self, dataset: str, *, root: Path | None) -> tuple[tuple[str, ...], int | None]:
        return self._table(dataset, root).class_names, None

    def version(self, dataset: str, protocol: Protocol, *, root: Path | None) -> str:
        return self._table(dataset, root).version

    def load(self, dataset: str, protocol: Protocol, *, root: Path | None, progress: bool):
        from harness.text.cache import build_text_cache, cache_key
        from harness.text.data import TextSet
        from harness.text.encoder import load_encoder

        table = self._table(dataset, root)
        text = protocol.text
        encoder = load_encoder(text.encoder)
        transformer = encoder[0].auto_model
        num_layers = transformer.config.num_hidden_layers
        if text.trained_layers and not (hasattr(transformer, "embeddings") and hasattr(transformer, "encoder")):
            raise HarnessError(f"protocol {protocol.name}: [text] trained_layers needs a BERT-family encoder "
                               f"(embeddings, then encoder.layer); {text.encoder} is a {type(transformer).__name__}: "
                               "train a head on its sentence embeddings instead (trained_layers = 0, head_hidden)")
        if text.trained_layers > num_layers:
            raise HarnessError(f"protocol {protocol.name}: [text] trained_layers is {text.trained_layers}, but the "
                               f"encoder {text.encoder} has {num_layers} layers")
        directory = _root(root) / ".cache" / "text" / cache_key(table.version, text.encoder_sha256,
                                                                text.trained_layers, text.max_seq_length)
        features = build_text_cache(table.texts, model=encoder, directory=directory,
                                    trained_layers=text.trained_layers, num_layers=num_layers,
                                    max_seq_length=text.max_seq_length, progress=progress)
        return TextSet(table.name, table.version, features, np.arange(len(table.texts)),
                       torch.from_numpy(table.labels), table.class_names, texts=table.texts, official=table.official,
                       details={"file": str(table.path), "encoder": text.encoder, "cache": str(directory)})

    def build_network(self, protocol: Protocol, items) -> torch.nn.Module:
        from harness.text.encoder import load_encoder
        from harness.text.network import TextNet

        return TextNet(load_encoder(protocol.text.encoder), protocol.text.trained_layers, protocol.text.head_hidden,
                       normalize=protocol.model.normalize_embeddings)

    def training_batch(self, items, index: np.ndarray, protocol: Protocol, rng: torch.Generator,
                       device: torch.device | None):
        return _on(items.features.batch(items.rows[index]), device)  # text is never augmented

    def evaluation_batches(self, items, protocol: Protocol, device: torch.device | None) -> Iterator:
        """Texts of similar length together, as sentence-transformers batches them, so little is padded."""
        order = np.argsort(-items.features.lengths(items.rows), kind="stable")
        for start in range(0, len(items), EVAL_BATCH):
            positions = order[start:start + EVAL_BATCH]
            yield positions, _on(items.features.batch(items.rows[positions]), device)

    def check_fits(self, items, split, protocol: Protocol) -> None:
        from harness.seeding import seed_everything

        seed_everything(0)
        with torch.no_grad():
            _, batch = next(self.evaluation_batches(items.subset([0]), protocol, None))
            self.build_network(protocol, items).eval()(batch)


def _on(batch, device: torch.device | None):
    if device is None:
        return batch
    return tuple(None if t is None else t.to(device, non_blocking=True) for t in batch)


TEXT = TextModality()
