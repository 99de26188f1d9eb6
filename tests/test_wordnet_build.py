"""The wordnet text benchmark: its construction rules on a hand-written data.noun, and the committed file.

The rebuild test needs Debian's wordnet-base (/usr/share/wordnet). Without it the test is skipped, unless
HARNESS_REQUIRE_WORDNET=1 (CI sets it), where a missing database fails.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections import Counter
from pathlib import Path

import pytest

from harness.text.wordnet_build import MIN_ITEMS_PER_CLASS, build, parse_data_noun

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "datasets" / "wordnet" / "definitions.csv.gz"
SYSTEM_WORDNET = Path("/usr/share/wordnet")

LICENCE_HEADER = """\
  1 This software and database is being provided to you, the LICENSEE, by  
  2 Princeton University under the following license.  
  3   
"""


def _synset(offset: str, lemmas: list[str], parents: list[tuple[str, str]], gloss: str) -> str:
    """One data.noun line: offset, lex_filenum, ss_type, w_cnt (hex), words, p_cnt, pointers, gloss."""
    words = " ".join(f"{lemma} 0" for lemma in lemmas)
    pointers = " ".join(f"{symbol} {target} n 0000" for symbol, target in parents)
    return f"{offset} 05 n {len(lemmas):02x} {words} {len(parents):03d} {pointers} | {gloss}  \n"


ANIMAL, GOOSE, MOUSE, CITY, TREE = "00001000", "00002000", "00003000", "00004000", "00005000"
FIXTURE = LICENCE_HEADER + "".join(
    [
        _synset(ANIMAL, ["animal", "beast"], [("~", "00001100")], "a living organism"),
        _synset(GOOSE, ["goose"], [], "a web-footed bird"),
        _synset(MOUSE, ["mouse"], [], "a small rodent"),
        _synset(CITY, ["city", "metropolis", "urban_center"], [], "a large town"),
        _synset(TREE, ["tree"], [], "a tall perennial woody plant"),
        # animal: example quotes dropped, a second lemma, a plural, a hyphen, a repeat, a shared text, two parents
        _synset("00001100", ["pet"], [("@", ANIMAL)], 'a domestic animal kept as a pet; "the dog is a good animal"'),
        _synset("00001200", ["brute"], [("@", ANIMAL)], "a wild Beast of the forest"),
        _synset("00001300", ["herd_animal"], [("@", ANIMAL)], "one of the animals that live in herds"),
        _synset("00001400", ["critter"], [("@", ANIMAL)], "a small furry creature"),
        _synset("00001500", ["varmint"], [("@", ANIMAL)], "a small furry creature"),
        _synset("00001600", ["zoophyte"], [("@", ANIMAL)], "an animal-like plant, not animalistic"),
        _synset("00001700", ["hybrid"], [("@", ANIMAL), ("@", GOOSE)], "an animal and a goose at once"),
        _synset("00001800", ["honker"], [("@", ANIMAL)], "a bird that honks"),
        # goose: an irregular plural from noun.exc; the shared text
        _synset("00002100", ["gosling"], [("@", GOOSE)], 'a young goose; "goslings follow their mother"'),
        _synset("00002200", ["gaggle"], [("@", GOOSE)], "a flock of wild GEESE"),
        _synset("00002300", ["gander"], [("@", GOOSE)], "a male, Goose-like"),
        _synset("00002400", ["greylag"], [("@", GOOSE)], "a bird that honks"),
        # mouse: too few children for a class
        _synset("00003100", ["field_mouse"], [("@", MOUSE)], "a mouse of the fields"),
        _synset("00003200", ["dormouse"], [("@", MOUSE)], "a mouse that sleeps"),
        # city: instance hypernyms count as parents; y -> ies; a multi-word lemma; @ plus @i is two parents
        _synset("00004100", ["Austin"], [("@i", CITY)], "a city in Texas"),
        _synset("00004200", ["Columbus"], [("@i", CITY)], "the largest of the cities of Ohio"),
        _synset("00004300", ["Nice"], [("@i", CITY)], "an urban center on the coast"),
        _synset("00004400", ["Springfield"], [("@i", CITY)], "a metropolis; capital of Illinois"),
        _synset("00004500", ["Rome"], [("@", CITY), ("@i", ANIMAL)], "a city and a wolf"),
        # tree: three children, but one repeats, so it ends below the threshold
        _synset("00005100", ["oak"], [("@", TREE)], "a tree with acorns"),
        _synset("00005200", ["beech"], [("@", TREE)], "a tree with smooth bark"),
        _synset("00005300", ["beech_tree"], [("@", TREE)], "a tree with smooth bark"),
    ]
)


def _read_rows(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as text:
        return list(csv.reader(text))


def test_fixture_rows(tmp_path):
    (tmp_path / "data.noun").write_text(FIXTURE, encoding="utf-8")
    (tmp_path / "noun.exc").write_text("geese goose\nmice mouse\n", encoding="utf-8")
    out = tmp_path / "out" / "definitions.csv.gz"

    stats = build(tmp_path, out, min_items=3)

    assert _read_rows(out) == [
        ["text", "label"],
        ["a domestic [MASK] kept as a pet", "animal.n.00001000"],
        ["a wild [MASK] of the forest", "animal.n.00001000"],
        ["one of the [MASK] that live in herds", "animal.n.00001000"],
        ["a small furry creature", "animal.n.00001000"],
        ["an [MASK]-like plant, not animalistic", "animal.n.00001000"],
        ["a young [MASK]", "goose.n.00002000"],
        ["a flock of wild [MASK]", "goose.n.00002000"],
        ["a male, [MASK]-like", "goose.n.00002000"],
        ["a [MASK] in Texas", "city.n.00004000"],
        ["the largest of the [MASK] of Ohio", "city.n.00004000"],
        ["an [MASK] on the coast", "city.n.00004000"],
        ["a [MASK]; capital of Illinois", "city.n.00004000"],
    ]
    assert b"\r\n" not in gzip.decompress(out.read_bytes())
    assert (stats.candidate_classes, stats.candidate_items) == (4, 18)
    assert (stats.duplicates_within_class, stats.cross_class_texts, stats.cross_class_items) == (2, 1, 2)
    assert (stats.small_classes_dropped, stats.small_class_items_dropped) == (1, 2)
    assert (stats.classes, stats.items) == (3, 12)
    # a lemma as it is, as a whole word (not "animals", "GEESE", "cities"): 3 + 2 + 3 of the 12 kept items
    assert stats.leaking_before_masking == 8
    assert stats.masked_items == 11
    assert stats.stems_after_masking == 1  # "animalistic"


def test_fixture_rebuild_is_byte_identical(tmp_path):
    (tmp_path / "data.noun").write_text(FIXTURE, encoding="utf-8")
    build(tmp_path, tmp_path / "first.csv.gz", min_items=3)
    build(tmp_path, tmp_path / "second.csv.gz", min_items=3)
    first = (tmp_path / "first.csv.gz").read_bytes()
    assert first == (tmp_path / "second.csv.gz").read_bytes()
    assert first[3] == 0 and first[4:8] == b"\0\0\0\0"  # no file name, no modification time in the gzip header
    assert not [path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp")]


def test_parse_reads_hex_word_counts_and_both_hypernym_pointers(tmp_path):
    lemmas = [f"w{index}" for index in range(11)]
    line = _synset("00009000", lemmas, [("@", "00000001"), ("~", "00000002"), ("@i", "00000003")], 'x; "y"')
    (tmp_path / "data.noun").write_text(LICENCE_HEADER + line, encoding="utf-8")
    (synset,) = parse_data_noun(tmp_path / "data.noun").values()
    assert line.split()[3] == "0b"
    assert synset.lemmas == tuple(lemmas)
    assert synset.parents == ("00000001", "00000003")
    assert synset.gloss == 'x; "y"'


def test_rebuild_from_system_wordnet_matches_committed_file(tmp_path):
    if not (SYSTEM_WORDNET / "data.noun").exists():
        if os.environ.get("HARNESS_REQUIRE_WORDNET") == "1":
            pytest.fail(f"HARNESS_REQUIRE_WORDNET=1 but no {SYSTEM_WORDNET}/data.noun (apt-get install wordnet-base)")
        pytest.skip(f"no {SYSTEM_WORDNET}/data.noun (apt-get install wordnet-base; CI sets HARNESS_REQUIRE_WORDNET=1)")
    rebuilt = tmp_path / "definitions.csv.gz"
    build(SYSTEM_WORDNET, rebuilt)
    # the content first, so that a difference in the data is told apart from one in zlib's output
    assert gzip.decompress(rebuilt.read_bytes()) == gzip.decompress(COMMITTED.read_bytes())
    assert rebuilt.read_bytes() == COMMITTED.read_bytes()


def test_committed_file_shape():
    raw = gzip.decompress(COMMITTED.read_bytes())
    assert b"\r" not in raw
    header, *rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    assert header == ["text", "label"]
    assert all(len(row) == 2 and row[0].strip() for row in rows)

    labels_in_order = [label for _, label in rows]
    blocks = [label for index, label in enumerate(labels_in_order) if index == 0 or label != labels_in_order[index - 1]]
    assert len(blocks) == len(set(blocks)), "each label's rows must be one contiguous block"
    assert blocks == sorted(blocks, key=lambda label: label.rsplit(".", 1)[1]), "classes in synset offset order"
    assert min(Counter(labels_in_order).values()) >= MIN_ITEMS_PER_CLASS

    labels_of_text: dict[str, set[str]] = {}
    for text, label in rows:
        labels_of_text.setdefault(text, set()).add(label)
    assert not [text for text, labels in labels_of_text.items() if len(labels) > 1]
    assert len(labels_of_text) == len(rows), "no text repeats, within a class or across"
