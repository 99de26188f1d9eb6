"""The text modality: own text files and their bad input, the encoder path against SentenceTransformer.encode,
the feature cache, the group-by-label sampler against sentence-transformers', and the kind checks."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.cli import main
from harness.errors import HarnessError
from harness.modality import check_kind, modality_of
from harness.protocol import load_protocol
from harness.sampler import GroupByLabelSampler
from harness.text.cache import build_text_cache
from harness.text.data import read_text_table
from harness.text.encoder import load_encoder, locate_encoder
from harness.text.modality import TEXT
from harness.train import build_model, embed

TINY_TEXT = Path(__file__).parent / "tiny_text.toml"
WORDS = ["apple", "river", "engine", "violin", "mountain", "doctor", "planet", "garden", "castle", "ocean",
         "tiger", "bread", "pencil", "cloud", "train", "forest"]
CJK = [("東京は日本の首都です。", "都市"), ("大阪は大きな都市です。", "都市"), ("猫が好きです。", "動物"),
       ("犬は忠実な動物です。", "動物"), ("我喜欢喝茶。", "饮料"), ("咖啡很好喝。", "饮料")]


def _write_csv(path: Path, rows, header=("text", "label"), delimiter=","):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _rows(per_class=5, classes=WORDS):
    return [(f"sentence {i} about a {word} and what it does", word) for word in classes for i in range(per_class)]


@pytest.fixture(scope="module")
def threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # 1 and 2 threads differ by about 1e-8
    yield
    torch.set_num_threads(before)


def test_csv_tsv_and_jsonl_read_alike_with_sentence_or_text_columns(tmp_path):
    rows = _rows(3)
    csv_path = _write_csv(tmp_path / "a.csv", rows)
    tsv_path = _write_csv(tmp_path / "a.tsv", rows, header=("sentence", "label"), delimiter="\t")
    jsonl_path = tmp_path / "a.jsonl"
    jsonl_path.write_text("".join(json.dumps({"sentence": t, "label": label}) + "\n" for t, label in rows))
    tables = [read_text_table(p, name="a", official=False, sort_classes=True)
              for p in (csv_path, tsv_path, jsonl_path)]
    for table in tables:
        assert table.texts == tables[0].texts and list(table.labels) == list(tables[0].labels)
        assert table.class_names == tuple(sorted(WORDS)) and table.version == tables[0].version
    assert all(modality_of(str(p)).name == "text" for p in (csv_path, tsv_path, jsonl_path))


def test_an_image_csv_stays_an_image_set(tmp_path):
    path = tmp_path / "images.csv"
    path.write_text("path,label\na.png,0\n")
    assert modality_of(str(path)).name == "image"


def test_japanese_and_chinese_go_through_like_any_text(tmp_path, threads):
    path = _write_csv(tmp_path / "cjk.csv", CJK)
    table = read_text_table(path, name="cjk", official=False, sort_classes=True)
    assert table.texts == tuple(t for t, _ in CJK) and table.class_names == tuple(sorted({c for _, c in CJK}))
    protocol = load_protocol(TINY_TEXT)
    data = TEXT.load(str(path), protocol, root=tmp_path / "root", progress=False)
    got = embed(build_model(protocol, data, seed=0), data, protocol, device=torch.device("cpu"))
    want = load_encoder(protocol.text.encoder).encode(list(table.texts), normalize_embeddings=True)
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize(("content", "message"), [
    ("sentence,labels\na,b\n", "no a label column; columns found: sentence, labels"),
    ("words,label\na,b\n", "no a text (or sentence) column; columns found: words, label"),
    ("text,label\na,x\n ,x\nb,y\nc,y\n", "line 3 has an empty text"),
    ("text,label\na,x\nb,y\nc,z\nd,z\n", "1 class(es) with at least 2 items"),
])
def test_bad_text_files_are_one_line_naming_file_and_row(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(HarnessError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        read_text_table(path, name="bad", official=False, sort_classes=True)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_non_utf8_row_is_named(tmp_path):
    path = tmp_path / "latin1.tsv"
    path.write_bytes(b"text\tlabel\nal\tx\nbe\tx\n" + "caf\u00e9\ty\n".encode("latin-1") + b"d\ty\n")
    with pytest.raises(HarnessError, match=r"latin1.tsv: line 4 is not UTF-8"):
        read_text_table(path, name="latin1", official=False, sort_classes=True)


def test_bad_text_input_exits_2_and_writes_nothing(tmp_path, capsys):
    results = tmp_path / "results"
    wide = tmp_path / "wide.toml"  # 16 / 2 = 8 classes a batch; 16 classes leave a fold 6 to train on
    wide.write_text(TINY_TEXT.read_text().replace("batch_size = 8", "batch_size = 16"))
    few = _write_csv(tmp_path / "few.csv", _rows(3, WORDS))
    bad = tmp_path / "bad.csv"
    bad.write_text("sentence,labels\na,b\n")
    expected = {few: "dataset few: a fold trains on only 6 classes, but a batch of the protocol needs 8",
                bad: "no a label column; columns found: sentence, labels"}
    for path, message in expected.items():
        code = main(["benchmark", "--loss", "batch_hard", "--dataset", str(path), "--protocol", str(wide),
                     "--results", str(results), "--data-root", str(tmp_path / "root"), "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not results.exists()


def test_a_protocol_of_the_other_kind_is_one_line(tmp_path):
    path = _write_csv(tmp_path / "t.csv", _rows(3))
    with pytest.raises(HarnessError, match=r"protocol quick is for image .*is text; try --protocol text_quick"):
        check_kind(str(path), load_protocol("quick"))
    with pytest.raises(HarnessError, match=r"protocol tiny_text is for text .*glyphs is image; try --protocol quick"):
        check_kind("glyphs", load_protocol(TINY_TEXT))


def test_existing_protocol_hashes_do_not_move():
    assert load_protocol("quick").short_hash == "7cda75aec4d7"
    assert "input" not in load_protocol("quick").canonical_dict()
    assert "text" not in load_protocol("quick").to_dict()


def test_the_encoder_is_hashed_by_its_weights_and_a_missing_one_says_where_it_looked(tmp_path):
    protocol = load_protocol(TINY_TEXT)
    assert protocol.text.encoder_sha256 == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    moved = dataclasses.replace(protocol.text, encoder=str(locate_encoder("all-MiniLM-L6-v2")))
    assert moved.encoder != protocol.text.encoder
    toml = TINY_TEXT.read_text().replace('encoder = "all-MiniLM-L6-v2"', f'encoder = "{moved.encoder}"')
    (tmp_path / "p.toml").write_text(toml)
    assert load_protocol(tmp_path / "p.toml").hash == protocol.hash  # the weights, never the path
    (tmp_path / "q.toml").write_text(TINY_TEXT.read_text().replace("all-MiniLM-L6-v2", "no-such-model"))
    with pytest.raises(HarnessError, match=r"'no-such-model' not found \(looked in: .*no-such-model.*\); install"):
        load_protocol(tmp_path / "q.toml")


@pytest.mark.parametrize(("trained_layers", "head_hidden"), [(0, 32), (1, 0), (2, 16)])
def test_the_untrained_network_embeds_exactly_as_encode(tmp_path, threads, trained_layers, head_hidden):
    """`none` on a text table is the encoder off the shelf: encode(..., normalize_embeddings=True)."""
    protocol = load_protocol(TINY_TEXT)
    protocol = dataclasses.replace(protocol, text=dataclasses.replace(
        protocol.text, trained_layers=trained_layers, head_hidden=head_hidden))
    path = _write_csv(tmp_path / "t.csv", _rows(2) + [("a much longer sentence " * 12 + "to pad the others", "apple")])
    data = TEXT.load(str(path), protocol, root=tmp_path / "root", progress=False)
    got = embed(build_model(protocol, data, seed=3), data, protocol, device=torch.device("cpu"))
    want = load_encoder(protocol.text.encoder).encode(list(data.texts), normalize_embeddings=True)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_an_interrupted_cache_build_resumes_to_the_same_arrays(tmp_path, threads, monkeypatch):
    import harness.text.cache as cache

    monkeypatch.setattr(cache, "CHUNK", 7)
    texts = [text for text, _ in _rows(2)]
    model = load_encoder("all-MiniLM-L6-v2")
    whole = build_text_cache(texts, model=model, directory=tmp_path / "whole", trained_layers=1, num_layers=6,
                             max_seq_length=0, progress=False)
    calls = []
    real = cache.token_states

    def dies_on_the_third_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cache, "token_states", dies_on_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        build_text_cache(texts, model=model, directory=tmp_path / "again", trained_layers=1, num_layers=6,
                         max_seq_length=0, progress=False)
    assert len(list((tmp_path / "again" / "parts").glob("*.npz"))) == 2
    monkeypatch.setattr(cache, "token_states", real)
    again = build_text_cache(texts, model=model, directory=tmp_path / "again", trained_layers=1, num_layers=6,
                             max_seq_length=0, progress=False)
    assert len(calls) == 3  # the two finished chunks were not encoded again
    np.testing.assert_array_equal(again.offsets, whole.offsets)
    np.testing.assert_allclose(again.tokens, whole.tokens, atol=1e-6)


def test_group_by_label_gives_sentence_transformers_batches():
    from sentence_transformers.base.sampler import GroupByLabelBatchSampler

    class Labels:  # the two things its sampler reads of a datasets.Dataset
        column_names = ["label"]

        def __init__(self, labels):
            self.labels = labels

        def __getitem__(self, column):
            return self.labels

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 9, size=101).tolist() + [42]  # one label with a single item: dropped
    theirs = GroupByLabelBatchSampler(Labels(labels), batch_size=8, drop_last=True, valid_label_columns=["label"],
                                      generator=torch.Generator(), seed=5)
    ours = GroupByLabelSampler(torch.tensor(labels), batch_size=8, seed=5)
    first_epoch = list(theirs)
    assert [ours.next_batch().tolist() for _ in first_epoch] == first_epoch
    theirs.set_epoch(1)
    assert ours.next_batch().tolist() == next(iter(theirs))  # the next epoch, seeded seed + 1


def test_wordnet_is_a_text_set_with_its_classes_in_offset_order():
    names, trainval = TEXT.classes("wordnet", root=Path("datasets"))
    offsets = [int(name.rsplit(".", 1)[1]) for name in names]
    assert offsets == sorted(offsets) and trainval is None and len(names) > 2000
    with gzip.open("datasets/wordnet/definitions.csv.gz", "rt", encoding="utf-8") as handle:
        assert handle.readline().strip() == "text,label"


@pytest.mark.slow
def test_a_text_benchmark_runs_to_a_row(tmp_path, capsys):
    path = _write_csv(tmp_path / "small.csv", _rows(4))
    code = main(["benchmark", "--loss", "batch_semi_hard", "--dataset", str(path), "--protocol", str(TINY_TEXT),
                 "--results", str(tmp_path / "results"), "--reports", str(tmp_path / "reports"),
                 "--data-root", str(tmp_path / "root"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "| batch_semi_hard |" in out
    record = json.loads(next((tmp_path / "results" / "runs").glob("*/record.json")).read_text())
    assert record["protocol"]["input"]["kind"] == "text" and record["dataset"]["name"] == "small"


def test_datasets_lists_wordnet_and_splits_names_its_classes(capsys):
    assert main(["datasets"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("wordnet:"))
    assert "embedded text" in line and "2,098 classes" in line and "version wordnet-" in line
    assert main(["splits", "--dataset", "wordnet"]) == 0
    split = json.loads(capsys.readouterr().out)
    names, _ = TEXT.classes("wordnet", root=Path("datasets"))
    assert split["classes"] == list(names) and split["test"][0] == len(names) // 2
