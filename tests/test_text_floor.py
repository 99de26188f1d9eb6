"""The TF-IDF floor: fitted on the search half alone, scored once, a row of its own block in the text tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.feature_extraction.text import TfidfVectorizer

from harness.benchmark import check_inputs
from harness.cli import main
from harness.errors import HarnessError
from harness.metrics import retrieval_metrics
from harness.protocol import load_protocol
from harness.splits import class_disjoint_split
from harness.tables import leaderboard_tables
from harness.text.data import TextSet, read_text_table
from harness.text.floor import TFIDF, UNKNOWN_WEIGHT

TINY_TEXT = Path(__file__).parent / "tiny_text.toml"
WORDS = ["apple", "river", "engine", "violin", "mountain", "doctor", "planet", "garden", "castle", "ocean",
         "tiger", "bread", "pencil", "cloud", "train", "forest"]


def _texts(per_class=4):
    # each class has words of its own and shares "the" and "thing" with every other
    return [(f"the {word} thing number {i} {word}{i % 2}", word) for word in WORDS for i in range(per_class)]


def _write_csv(path: Path, rows) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("text", "label"))
        writer.writerows(rows)
    return path


def _text_set(path: Path) -> TextSet:
    table = read_text_table(path, name=path.stem, official=False, sort_classes=True)
    return TextSet(table.name, table.version, None, np.arange(len(table.texts)), torch.from_numpy(table.labels),
                   table.class_names, texts=table.texts, official=False)


def test_tfidf_is_fitted_on_the_search_half_alone(tmp_path):
    rows = _texts() + [("zebra quokka", "zz"), ("quokka zebra again", "zz")]
    items = _text_set(_write_csv(tmp_path / "t.csv", rows))
    search, test = items.subset(range(8)), items.subset(range(8, items.num_classes))
    embeddings = TFIDF.embed(search, test)
    texts = np.asarray(items.texts, dtype=object)
    expected = TfidfVectorizer().fit(texts[search.rows]).transform(texts[test.rows]).toarray()
    assert embeddings.dtype == np.float32 and embeddings.shape == (len(test), expected.shape[1] + 1)
    np.testing.assert_allclose(embeddings[:, :-1], expected, rtol=1e-6, atol=1e-7)
    assert (embeddings[:, -1] == np.float32(UNKNOWN_WEIGHT)).all()
    # "zebra" and "quokka" appear only in the test half: those texts have the unknown column alone
    unseen = [i for i, row in enumerate(test.rows) if "quokka" in items.texts[row]]
    assert len(unseen) == 2 and not embeddings[unseen, :-1].any()


def test_a_text_floor_is_refused_for_images_and_an_unknown_name_lists_the_losses():
    with pytest.raises(HarnessError, match=r"^tfidf is a floor of another input kind; the image floors: none$"):
        check_inputs("tfidf", "glyphs", load_protocol("quick"))
    with pytest.raises(Exception, match=r"tfidff.*batch_hard"):
        check_inputs("tfidff", "glyphs", load_protocol("quick"))


@pytest.mark.slow
def test_the_floor_is_scored_once_in_a_block_of_its_own(tmp_path, capsys, monkeypatch):
    path = _write_csv(tmp_path / "small.csv", _texts())
    common = ["--dataset", str(path), "--protocol", str(TINY_TEXT), "--results", str(tmp_path / "results"),
              "--reports", str(tmp_path / "reports"), "--data-root", str(tmp_path / "root"), "--no-progress"]
    for loss in ("tfidf", "none"):
        assert main(["benchmark", "--loss", loss, *common]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "| tfidf (floor) |" in out
    (frame,) = leaderboard_tables(tmp_path / "results").values()
    assert list(frame["loss"]) == ["none", "tfidf"] and list(frame["role"]) == ["baseline", "floor"]
    floor = frame.iloc[1]
    assert floor["current"] and floor["reproductions"] == 1 and floor["trials"] == 0
    assert pd.isna(floor["concatenated_map_at_r_ci95"])
    assert floor["separated_map_at_r_mean"] == floor["concatenated_map_at_r_mean"]
    # the figures are the harness's metrics on TF-IDF fitted on the search half, by hand
    items = _text_set(path)
    split = class_disjoint_split(items.num_classes, 4)
    search, test = items.subset(split.trainval), items.subset(split.test)
    texts = np.asarray(items.texts, dtype=object)
    vectors = TfidfVectorizer().fit(texts[search.rows]).transform(texts[test.rows]).toarray()
    vectors = np.hstack([vectors, np.full((len(vectors), 1), UNKNOWN_WEIGHT)]).astype(np.float32)
    expected = retrieval_metrics(vectors, test.labels.numpy())
    assert floor["concatenated_map_at_r_mean"] == pytest.approx(expected["map_at_r"], abs=1e-12)
    assert floor["concatenated_precision_at_1_mean"] == pytest.approx(expected["precision_at_1"], abs=1e-12)
    # against the untrained encoder, with the bootstrap's p
    assert not math.isnan(floor["diff_vs_baseline"]) and 0 <= floor["p_vs_baseline"] <= 1
    record = json.loads((tmp_path / "results" / "runs" / floor["run_id"] / "record.json").read_text())
    assert record["loss"]["role"] == "floor" and record["loss"]["identity"] == TFIDF.identity()
    assert record["search"]["trials_counted"] == 0 and len(record["test"]["reproductions"]) == 1
    page = (tmp_path / "reports" / f"{next(iter(leaderboard_tables(tmp_path / 'results')))}.html").read_text()
    assert '<tbody class="floor">' in page
    # a text run reproduces (the text set's own version, the floor's own identity)
    from harness.reproduce import reproduce

    again = reproduce(tmp_path / "results", floor["run_id"], dataset=str(path), data_root=tmp_path / "root",
                      progress=False)
    assert again.identical, "\n".join(again.lines())
    # a changed floor makes its row stale, like a changed loss
    monkeypatch.setattr(type(TFIDF), "identity", lambda self: "0" * 64)
    (frame,) = leaderboard_tables(tmp_path / "results").values()
    assert not frame.iloc[1]["current"] and "changed" in frame.iloc[1]["stale_reason"]
    # --if-missing finds the floor's row by its key, and a second benchmark answers with the same record
    monkeypatch.undo()
    assert main(["benchmark", "--if-missing", "--loss", "tfidf", *common]) == 0
    assert main(["benchmark", "--loss", "tfidf", *common]) == 0
    assert len(list((tmp_path / "results" / "runs").glob("*tfidf*/record.json"))) == 1


def test_make_zoo_lists_the_floors_of_the_dataset_first(capsys):
    assert main(["losses", "--names", "--dataset", "wordnet"]) == 0
    text = capsys.readouterr().out.split()
    assert main(["losses", "--names", "--dataset", "glyphs"]) == 0
    image = capsys.readouterr().out.split()
    assert text[0] == "tfidf" and text[1:] == image and "tfidf" not in image
