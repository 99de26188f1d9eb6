"""BibTeX for every zoo loss, and the cite block of a record."""

from __future__ import annotations

import re

from record_factory import make_record

import losses
from harness.citations import HARNESS_BIBTEX, LOSS_PAPERS, PAPERS, bibtex_for, cite_block


def test_every_registered_loss_has_its_papers_and_no_others():
    assert set(LOSS_PAPERS) == set(losses.available())
    for loss, keys in LOSS_PAPERS.items():
        assert keys and all(key in PAPERS for key in keys), loss


def test_entries_are_well_formed():
    for key, entry in PAPERS.items():
        assert entry.startswith("@") and re.match(r"@\w+\{" + key + ",", entry), key
        assert entry.count("{") == entry.count("}"), key
        for field in ("title", "author", "year"):
            assert re.search(rf"^\s+{field} = \{{", entry, re.M), (key, field)
    assert HARNESS_BIBTEX.count("{") == HARNESS_BIBTEX.count("}")


def test_bibtex_for_a_loss_cites_the_harness_the_reality_check_and_its_paper():
    text = bibtex_for("lifted_structure", "0.1.0")
    assert "version = {0.1.0}" in text
    assert [m for m in re.findall(r"@\w+\{(\w+),", text)] == ["dml_harness", "musgrave2020reality", "song2016lifted",
                                                            "hermans2017defense"]
    assert re.findall(r"@\w+\{(\w+),", bibtex_for("my_plugin", "0.1.0")) == ["dml_harness", "musgrave2020reality"]


def test_cite_block_names_the_rerun_command_hashes_and_versions():
    record = make_record("R1", "arcface", protocol_hash="h" * 64, dataset_version="glyphs-v1-123", identity="abc",
                         environment={"git_commit": "c0ffee", "git_dirty": False,
                                      "command": "harness benchmark --loss arcface",
                                      "packages": {"dml-harness": "0.1.0", "torch": "2.14.1", "faiss-cpu": None},
                                      "platform": "Linux", "device": "cpu", "jobs": 2})
    block = cite_block(record)
    assert "rerun: git checkout c0ffee && harness benchmark --loss arcface" in block
    assert f"protocol: quick  hash {'h' * 64}" in block and "dataset: glyphs  version glyphs-v1-123" in block
    assert "harness: 0.1.0  commit c0ffee" in block and "torch 2.14.1" in block and "faiss-cpu" not in block
    assert "@inproceedings{deng2019arcface," in block
    assert "loss: arcface  (identity abc)" in block


def test_a_text_row_cites_its_data_and_encoder_and_the_floor_its_library():
    text = bibtex_for("multiple_negatives_ranking", "0.1.0", dataset="wordnet", encoder="all-MiniLM-L6-v2")
    assert re.findall(r"@\w+\{(\w+),", text) == ["dml_harness", "musgrave2020reality", "henderson2017efficient",
                                                 "oord2018representation", "miller1995wordnet", "wang2020minilm",
                                                 "reimers2019sentencebert"]
    floor = bibtex_for("tfidf", "0.1.0", dataset="wordnet")
    assert re.findall(r"@\w+\{(\w+),", floor)[2:] == ["pedregosa2011scikit", "miller1995wordnet"]
    # an image row cites no text source
    assert "miller1995wordnet" not in bibtex_for("arcface", "0.1.0", dataset="glyphs")
