"""Build the embedded `wordnet` text benchmark: WordNet 3.0 noun definitions grouped by their direct hypernym.

Run from the repository root (stdlib only, so it needs nothing else of the harness)::

    python -m harness.text.wordnet_build [--wordnet-dir /usr/share/wordnet]
                                              [--out datasets/wordnet/definitions.csv.gz]

The source is Debian's `wordnet-base` (the WordNet 3.0 database): `data.noun` and `noun.exc`. Construction:

1. Parse every synset line of `data.noun` (licence lines start with two spaces and are skipped). A synset's
   direct parents are the targets of its `@` (hypernym) and `@i` (instance hypernym) pointers. Instance
   hypernyms count as parents: "Einstein" is a member of "physicist" just as "poodle" is of "dog", and without
   them every proper noun (cities, writers, rivers...) would be left out. In WordNet 3.0 this gives 2,148
   candidate classes with 45,495 definitions; `@` alone would give 1,990 classes with 39,216.
2. Items are the noun synsets with exactly one direct parent ("single-parent"); the 5 synsets with both an `@`
   and an `@i` parent have two and are excluded.
3. An item's text is its definition: the gloss up to the first `; "` (the example sentences are dropped),
   stripped. A gloss that is only examples gives an empty definition, which is dropped.
4. Candidate classes are the parents with at least `MIN_ITEMS_PER_CLASS` (8) items.
5. Every lemma of the parent (underscores read as spaces) is masked in its items' texts by `MASK_TOKEN`
   (`[MASK]`), together with its inflections: the irregular plurals listed for it in `noun.exc` and the regular
   ones (+s, +es, y -> ies). Matching is case-insensitive and whole-word (no letter, digit or underscore on
   either side), longest form first; the words of a multi-word lemma match across a space or a hyphen.
6. Exact duplicate texts (after masking) are dropped: a text under two or more different classes loses all its
   copies (it cannot belong to one label); a text repeated within one class keeps its first copy (lowest item
   offset). Classes left with fewer than `MIN_ITEMS_PER_CLASS` items are then dropped (no second pass).
7. Classes are ordered by the parent's synset offset, rows by class and then by the item's synset offset. The
   label is `<parent's first lemma>.n.<parent's 8-digit offset>`, for example `dog.n.02084071`: readable, and
   unique and stable because the offset identifies the synset in WordNet 3.0.

Output: a gzip CSV with header `text,label`, UTF-8, `\\n` line endings, written deterministically (compresslevel
9, mtime 0, no file name in the gzip header) to a temporary file beside it and renamed into place, so a rebuild
with the same data (and zlib) is byte-identical.

The build prints its counts and two leakage figures: the share of definitions that contain a parent lemma as a
whole word before masking, and the items that still contain a parent lemma's stem after masking (the lemma
minus a trailing 'es', 's' or 'y'; stems shorter than 4 characters are not searched; searched as a
case-insensitive substring with the mask tokens taken out).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import os
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MASK_TOKEN",
    "MIN_ITEMS_PER_CLASS",
    "BuildStats",
    "Synset",
    "build",
    "build_rows",
    "definition_of",
    "main",
    "parse_data_noun",
    "read_irregular_plurals",
    "write_csv_gz",
]

MASK_TOKEN = "[MASK]"
MIN_ITEMS_PER_CLASS = 8
PARENT_POINTERS = frozenset({"@", "@i"})  # hypernym and instance hypernym
MIN_STEM_LENGTH = 4
DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")
DEFAULT_OUT = Path("datasets/wordnet/definitions.csv.gz")


@dataclass(frozen=True)
class Synset:
    offset: str  # 8 digits, as in the file: the synset's identity in WordNet 3.0
    lemmas: tuple[str, ...]  # as written in data.noun, underscores included
    parents: tuple[str, ...]  # offsets of the direct (instance) hypernyms, distinct, in file order
    gloss: str


@dataclass
class BuildStats:
    candidate_classes: int = 0
    candidate_items: int = 0
    candidate_leaking_before_masking: int = 0  # candidate definitions containing a parent lemma (whole word)
    empty_definitions: int = 0
    duplicates_within_class: int = 0
    cross_class_texts: int = 0
    cross_class_items: int = 0
    small_classes_dropped: int = 0
    small_class_items_dropped: int = 0
    classes: int = 0
    items: int = 0
    leaking_before_masking: int = 0  # final items whose unmasked definition contains a parent lemma (whole word)
    masked_items: int = 0  # final items in which at least one form was masked
    stems_after_masking: int = 0  # final items still containing a parent lemma's stem after masking

    @property
    def duplicates_dropped(self) -> int:
        return self.duplicates_within_class + self.cross_class_items

    def lines(self) -> list[str]:
        def share(count: int, total: int) -> str:
            return f"{count:,} ({100 * count / total:.1f}%)" if total else f"{count:,}"

        return [
            f"candidate classes (>= threshold single-parent definitions): {self.candidate_classes:,}, "
            f"definitions: {self.candidate_items:,}",
            f"  containing a parent lemma as a whole word before masking: "
            f"{share(self.candidate_leaking_before_masking, self.candidate_items)}",
            f"empty definitions dropped: {self.empty_definitions:,}",
            f"duplicates dropped: {self.duplicates_dropped:,} ({self.duplicates_within_class:,} repeated within a "
            f"class; {self.cross_class_items:,} copies of {self.cross_class_texts:,} texts found in several classes)",
            f"classes dropped below the threshold after deduplication: {self.small_classes_dropped:,} "
            f"({self.small_class_items_dropped:,} items)",
            f"classes: {self.classes:,}",
            f"items: {self.items:,}",
            f"items containing a parent lemma as a whole word before masking: "
            f"{share(self.leaking_before_masking, self.items)}",
            f"items with at least one masked form: {share(self.masked_items, self.items)}",
            f"items still containing a parent lemma's stem after masking: "
            f"{share(self.stems_after_masking, self.items)}",
        ]


def parse_data_noun(path: Path) -> dict[str, Synset]:
    """The noun synsets of a WordNet `data.noun` file, by offset."""
    synsets: dict[str, Synset] = {}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.startswith("  ") or not line.strip():  # the licence header
                continue
            head, _, gloss = line.rstrip("\n").partition(" | ")
            fields = head.split()
            try:
                offset, word_count = fields[0], int(fields[3], 16)
                lemmas = tuple(fields[4 : 4 + 2 * word_count : 2])
                pointer_count = int(fields[4 + 2 * word_count])
                pointers = fields[5 + 2 * word_count : 5 + 2 * word_count + 4 * pointer_count]
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{number}: not a WordNet synset line") from None
            if len(lemmas) != word_count or len(pointers) != 4 * pointer_count:
                raise ValueError(f"{path}:{number}: fewer words or pointers than its counts say")
            parents = [pointers[i + 1] for i in range(0, len(pointers), 4) if pointers[i] in PARENT_POINTERS]
            synsets[offset] = Synset(offset, lemmas, tuple(dict.fromkeys(parents)), gloss.strip())
    return synsets


def read_irregular_plurals(path: Path | None) -> dict[str, list[str]]:
    """`noun.exc` turned round: base form -> its irregular inflections (lowercase, spaces for underscores)."""
    plurals: dict[str, list[str]] = defaultdict(list)
    if path is None:
        return plurals
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            inflected, *bases = line.split()
            for base in bases:
                plurals[_spaced(base).lower()].append(_spaced(inflected).lower())
    return plurals


def definition_of(gloss: str) -> str:
    """The gloss without its example sentences, which follow the first `; "`."""
    return gloss.split('; "', 1)[0].strip()


def _spaced(lemma: str) -> str:
    return lemma.replace("_", " ")


def _inflections(lemma: str, irregular: dict[str, list[str]]) -> set[str]:
    word = _spaced(lemma).lower()
    forms = {word, word + "s", word + "es", *irregular.get(word, ())}
    if word.endswith("y"):
        forms.add(word[:-1] + "ies")
    return forms


def _whole_word_pattern(forms: set[str]) -> re.Pattern[str]:
    """Any of `forms` as whole words, longest first; a space or hyphen inside a form matches either."""
    ordered = sorted(forms, key=lambda form: (-len(form), form))
    alternatives = ["[\\s-]".join(re.escape(part) for part in re.split(r"[ -]", form)) for form in ordered]
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


def _stems(lemmas: tuple[str, ...]) -> list[str]:
    stems = []
    for lemma in lemmas:
        stem = _spaced(lemma).lower()
        stem = stem[:-2] if stem.endswith("es") else stem[:-1] if stem.endswith(("s", "y")) else stem
        if len(stem) >= MIN_STEM_LENGTH:
            stems.append(stem)
    return stems


def build_rows(
    synsets: dict[str, Synset], irregular: dict[str, list[str]], min_items: int = MIN_ITEMS_PER_CLASS
) -> tuple[list[tuple[str, str]], BuildStats]:
    """The `(text, label)` rows of the benchmark, in file order, and the counts of each step."""
    stats = BuildStats()
    children: dict[str, list[Synset]] = defaultdict(list)
    for synset in synsets.values():
        if len(synset.parents) == 1:
            children[synset.parents[0]].append(synset)
    candidates = sorted(parent for parent, items in children.items() if len(items) >= min_items)
    stats.candidate_classes = len(candidates)

    masked: dict[str, list[tuple[str, str, bool]]] = {}  # parent -> (masked text, original definition, changed)
    for parent in candidates:
        lemmas = synsets[parent].lemmas
        mask = _whole_word_pattern({form for lemma in lemmas for form in _inflections(lemma, irregular)})
        own_name = _whole_word_pattern({_spaced(lemma).lower() for lemma in lemmas})
        texts = []
        for item in sorted(children[parent], key=lambda synset: synset.offset):
            stats.candidate_items += 1
            definition = definition_of(item.gloss)
            stats.candidate_leaking_before_masking += bool(own_name.search(definition))
            if not definition:
                stats.empty_definitions += 1
                continue
            text, replaced = mask.subn(MASK_TOKEN, definition)
            texts.append((text, definition, replaced > 0))
        masked[parent] = texts

    classes_of_text: dict[str, set[str]] = defaultdict(set)
    for parent, texts in masked.items():
        for text, _, _ in texts:
            classes_of_text[text].add(parent)
    shared = {text for text, parents in classes_of_text.items() if len(parents) > 1}
    stats.cross_class_texts = len(shared)

    rows: list[tuple[str, str]] = []
    for parent in candidates:
        kept, seen = [], set()
        for text, definition, changed in masked[parent]:
            if text in shared:
                stats.cross_class_items += 1
            elif text in seen:
                stats.duplicates_within_class += 1
            else:
                seen.add(text)
                kept.append((text, definition, changed))
        if len(kept) < min_items:
            stats.small_classes_dropped += 1
            stats.small_class_items_dropped += len(kept)
            continue
        lemmas = synsets[parent].lemmas
        label = f"{lemmas[0]}.n.{parent}"
        own_name = _whole_word_pattern({_spaced(lemma).lower() for lemma in lemmas})
        stems = _stems(lemmas)
        stats.classes += 1
        for text, definition, changed in kept:
            stats.items += 1
            stats.leaking_before_masking += bool(own_name.search(definition))
            stats.masked_items += changed
            unmasked_rest = text.replace(MASK_TOKEN, " ").lower()
            stats.stems_after_masking += any(stem in unmasked_rest for stem in stems)
            rows.append((text, label))
    return rows, stats


def write_csv_gz(rows: list[tuple[str, str]], out: Path) -> None:
    """Write `text,label` rows as a byte-reproducible gzip CSV, atomically (temporary file, then rename)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as compressed:
                with io.TextIOWrapper(compressed, encoding="utf-8", newline="") as text:
                    writer = csv.writer(text, lineterminator="\n")
                    writer.writerow(("text", "label"))
                    writer.writerows(rows)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make the dataset unreadable to others
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build(wordnet_dir: Path, out: Path, min_items: int = MIN_ITEMS_PER_CLASS) -> BuildStats:
    """Read `data.noun` (and `noun.exc` when present) from `wordnet_dir` and write the benchmark to `out`."""
    wordnet_dir = Path(wordnet_dir)
    exceptions = wordnet_dir / "noun.exc"
    synsets = parse_data_noun(wordnet_dir / "data.noun")
    rows, stats = build_rows(synsets, read_irregular_plurals(exceptions if exceptions.exists() else None), min_items)
    write_csv_gz(rows, out)
    return stats


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet-dir", type=Path, default=DEFAULT_WORDNET_DIR, help="holds data.noun, noun.exc")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the gzip CSV to write")
    parser.add_argument("--min-items", type=int, default=MIN_ITEMS_PER_CLASS, help="items a class needs")
    args = parser.parse_args(argv)
    data_noun = args.wordnet_dir / "data.noun"
    if not data_noun.exists():
        parser.error(f"{data_noun} not found (apt-get install wordnet-base)")
    stats = build(args.wordnet_dir, args.out, args.min_items)
    print(f"data.noun sha256: {_sha256(data_noun)}")
    for line in stats.lines():
        print(line)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes, sha256 {_sha256(args.out)})")


if __name__ == "__main__":
    main()
