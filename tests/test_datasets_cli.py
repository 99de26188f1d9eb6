"""`harness datasets`, `harness splits --dataset`, downloads through the CLI, and bad dataset input:
one line on stderr, exit code 2, nothing written under results/."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path

import torch
from dataset_fixtures import corrupt_image, make_cars, make_csv_set, make_cub, make_image_folder, make_inshop, make_sop
from test_download import server  # noqa: F401  (the local HTTP server fixture)

from harness.cli import main
from harness.image.data import cub200
from harness.image.data.listing import Archive

SMOKE = ["--protocol", "smoke"]


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(code, err, pattern):
    """Exit code 2 and one error line (a small copy also gets its one-line count warning first)."""
    assert code == 2, err
    lines = [line for line in err.splitlines() if not line.startswith("harness: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), err
    assert re.search(pattern, lines[0]), err


def test_datasets_lists_present_and_missing_sets(tmp_path, capsys):
    root = tmp_path / "data"
    make_cub(root)
    make_inshop(root, eval_dir=False)
    code, out, _ = _run(capsys, "datasets", "--data-root", root)
    assert code == 0
    lines = {line.split(":", 1)[0]: line for line in out.splitlines()}
    assert set(lines) == {"glyphs", "cub200", "cars196", "sop", "inshop", "wordnet"}
    assert re.search(r"wordnet: missing: looked in .*data/wordnet/definitions.csv.gz; it is committed",
                     lines["wordnet"])
    assert re.search(r"cub200: present in .*CUB_200_2011, 120 images, 40 classes, differs from the official counts "
                     r"\(11,788 images, 200 classes\), version cub200-[0-9a-f]{12}", lines["cub200"])
    assert re.search(r"inshop: present in .*, 144 images, 36 classes", lines["inshop"])
    assert re.search(r"cars196: missing: looked in .*data/cars196; .*cars_annos.mat", lines["cars196"])
    assert "glyphs: embedded" in lines["glyphs"]
    # the version is computed once and cached: listing again gives the same one without rehashing
    again = _run(capsys, "datasets", "--data-root", root)[1]
    assert again == out and list((root / ".cache" / "versions").glob("cub200-*.json"))


def test_splits_of_cub_equal_the_references_worked_example(tmp_path, capsys):
    root = tmp_path / "data"
    make_cub(root, num_classes=200, per_class=1, size=(12, 10))
    code, out, _ = _run(capsys, "splits", "--dataset", "cub200", "--data-root", root)
    split = json.loads(out)
    assert code == 0 and split["test"] == list(range(100, 200))
    # T = 100, V = 25: fold 0 validates on 75-99, fold 1 on 0-24, fold 2 on 25-49, fold 3 on 50-74
    assert [fold["val"] for fold in split["folds"]] == [list(range(75, 100)), list(range(25)), list(range(25, 50)),
                                                       list(range(50, 75))]
    assert all(sorted(f["train"] + f["val"]) == list(range(100)) for f in split["folds"])
    # the fixture lists the ids shuffled: positions follow the numeric class id, 1..200
    assert split["classes"] == [f"{i:03d}.Class_{i}" for i in range(1, 201)]


def test_splits_of_inshop_run_over_the_train_items(tmp_path, capsys):
    root = tmp_path / "data"
    make_inshop(root, train_items=24, test_items=12)
    split = json.loads(_run(capsys, "splits", "--dataset", "inshop", "--data-root", root)[1])
    assert split["test"] == list(range(24, 36))  # the query/gallery items
    assert [len(f["val"]) for f in split["folds"]] == [6] * 4  # V = floor(T/4)
    assert len(split["classes"]) == 36 and all(c.startswith("id_") for c in split["classes"])


def _cub_archive(tmp_path: Path) -> bytes:
    """A real CUB layout (the generated copy), packed like the official archive."""
    make_cub(tmp_path / "src")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(tmp_path / "src" / "cub200" / "CUB_200_2011", arcname="CUB_200_2011")
    return buffer.getvalue()


def test_download_fetches_checks_and_unpacks_then_the_set_loads(tmp_path, capsys, monkeypatch, server):  # noqa: F811
    state, url = server
    archive = _cub_archive(tmp_path)
    state.files["/CUB_200_2011.tgz"] = archive
    monkeypatch.setattr(cub200, "ARCHIVES", (Archive("CUB_200_2011.tgz", hashlib.md5(archive).hexdigest(),
                                                     f"{url}/CUB_200_2011.tgz"),))
    root = tmp_path / "data"
    code, out, err = _run(capsys, "datasets", "download", "cub200", "--data-root", root, "--no-progress")
    assert code == 0, err
    assert (root / "cub200" / "CUB_200_2011" / "images.txt").is_file()
    assert "cub200: present" in _run(capsys, "datasets", "--data-root", root)[1]
    # a second download is a no-op: nothing is fetched again
    requests = len(state.requests)
    assert _run(capsys, "datasets", "download", "cub200", "--data-root", root, "--no-progress")[0] == 0
    assert len(state.requests) == requests


def test_download_with_a_wrong_md5_is_one_line_and_unpacks_nothing(tmp_path, capsys, monkeypatch, server):  # noqa: F811
    state, url = server
    state.files["/CUB_200_2011.tgz"] = _cub_archive(tmp_path)
    monkeypatch.setattr(cub200, "ARCHIVES", (Archive("CUB_200_2011.tgz", "0" * 32, f"{url}/CUB_200_2011.tgz"),))
    root = tmp_path / "data"
    code, _, err = _run(capsys, "datasets", "download", "cub200", "--data-root", root, "--no-progress")
    _one_error_line(code, err, "md5")
    assert not (root / "cub200" / "CUB_200_2011").exists()


def test_download_without_a_public_url_says_how_to_get_it(tmp_path, capsys):
    code, _, err = _run(capsys, "datasets", "download", "cars196", "--data-root", tmp_path)
    _one_error_line(code, err, "no public download.*car_ims.tgz")
    code, _, err = _run(capsys, "datasets", "download", "mnist", "--data-root", tmp_path)
    _one_error_line(code, err, "unknown dataset 'mnist' to download; known: cub200, cars196, sop, inshop")


# ---- bad input to a benchmark: checked before anything is written under results/ -----------------------------

def _bench(capsys, tmp_path, dataset, *extra):
    results, reports = tmp_path / "results", tmp_path / "reports"
    code, out, err = _run(capsys, "benchmark", "--loss", "batch_hard", "--dataset", dataset,
                          "--data-root", tmp_path / "data", "--results", results, "--reports", reports,
                          "--no-progress", *extra)
    assert not results.exists() and not reports.exists(), "bad input must write nothing under results/"
    return code, err


def test_missing_dataset_says_where_it_looked_and_how_to_get_it(tmp_path, capsys):
    code, err = _bench(capsys, tmp_path, "cub200", *SMOKE)
    _one_error_line(code, err, r"dataset cub200 not found: looked for images.txt in .*data/cub200.*"
                               r"harness datasets download cub200")


def test_missing_image_is_named_with_the_count(tmp_path, capsys):
    folder = make_cub(tmp_path / "data")
    for name in sorted((folder / "CUB_200_2011" / "images").rglob("*.jpg"))[:3]:
        name.unlink()
    code, err = _bench(capsys, tmp_path, "cub200", *SMOKE)
    _one_error_line(code, err, r"cub200: 3 of 120 listed images are missing, the first: .*\.jpg")


def test_undecodable_image_is_named(tmp_path, capsys):
    folder = make_cub(tmp_path / "data")
    bad = sorted((folder / "CUB_200_2011" / "images").rglob("*.jpg"))[4]
    corrupt_image(bad)
    code, err = _bench(capsys, tmp_path, "cub200", *SMOKE)
    _one_error_line(code, err, f"cannot decode image {re.escape(str(bad))}")


def test_annotation_that_does_not_parse_names_file_and_line(tmp_path, capsys):
    folder = make_cub(tmp_path / "data")
    listing = folder / "CUB_200_2011" / "images.txt"
    lines = listing.read_text().splitlines()
    lines[6] = "seven"
    listing.write_text("\n".join(lines) + "\n")
    code, err = _bench(capsys, tmp_path, "cub200", *SMOKE)
    _one_error_line(code, err, r"images.txt, line 7")


def test_inshop_row_with_unknown_status(tmp_path, capsys):
    folder = make_inshop(tmp_path / "data")
    listing = folder / "Eval" / "list_eval_partition.txt"
    listing.write_text(listing.read_text().replace(" gallery", " galery", 1))
    code, err = _bench(capsys, tmp_path, "inshop", *SMOKE)
    _one_error_line(code, err, "unknown evaluation_status 'galery'")


def test_csv_without_label_column(tmp_path, capsys):
    csv_path = make_csv_set(tmp_path / "own")
    csv_path.write_text(csv_path.read_text().replace("label", "class", 1))
    code, err = _bench(capsys, tmp_path, csv_path, *SMOKE)
    _one_error_line(code, err, "label")


def test_folder_with_one_class(tmp_path, capsys):
    folder = make_image_folder(tmp_path / "own", num_classes=1)
    code, err = _bench(capsys, tmp_path, folder, *SMOKE)
    _one_error_line(code, err, "1 class")


def test_too_few_classes_for_the_batch(tmp_path, capsys):
    folder = make_image_folder(tmp_path / "own", num_classes=16)  # 4 folds of 6 train classes; a batch needs 8
    code, err = _bench(capsys, tmp_path, folder, *SMOKE)
    _one_error_line(code, err, "a fold trains on only 6 classes, but a batch of the protocol needs 8")


def _smoke_variant(tmp_path, old: str, new: str) -> Path:
    text = (Path(__file__).parents[1] / "harness" / "protocols" / "smoke.toml").read_text()
    assert old in text
    path = tmp_path / "variant.toml"
    path.write_text(text.replace(old, new))
    return path


def test_unknown_backbone_is_caught_before_any_write(tmp_path, capsys):
    make_cub(tmp_path / "data")
    protocol = _smoke_variant(tmp_path, 'backbone = "bn_inception"', 'backbone = "bn_incepton"')
    code, err = _bench(capsys, tmp_path, "cub200", "--protocol", protocol)
    _one_error_line(code, err, "unknown backbone 'bn_incepton'; the harness's own: bn_inception")


def test_weights_that_do_not_fit_name_the_first_mismatch(tmp_path, capsys):
    make_cub(tmp_path / "data")
    from harness.image.backbones import bn_inception

    state = bn_inception().state_dict()
    state["conv1_7x7_s2.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(state, tmp_path / "wrong.pth")
    protocol = _smoke_variant(tmp_path, "pretrained = false", f"pretrained = false\nweights = '{tmp_path}/wrong.pth'")
    code, err = _bench(capsys, tmp_path, "cub200", "--protocol", protocol)
    _one_error_line(code, err, r"'conv1_7x7_s2.weight' has shape \[64, 3, 5, 5\] in the file")


def test_pretrained_weights_with_the_wrong_normalisation(tmp_path, capsys):
    protocol = _smoke_variant(tmp_path, 'channel_order = "BGR"', 'channel_order = "RGB"')
    text = protocol.read_text().replace("pretrained = false", "pretrained = true")
    protocol.write_text(text)
    code, err = _bench(capsys, tmp_path, "cub200", "--protocol", protocol)
    _one_error_line(code, err, r"pretrained bn_inception weights expect images.channel_order = BGR")


def test_image_dataset_with_the_glyph_protocol(tmp_path, capsys):
    make_sop(tmp_path / "data")
    code, err = _bench(capsys, tmp_path, "sop")  # the default protocol, quick
    _one_error_line(code, err, 'dataset sop needs "resized_crop"')


def test_cars_layouts_are_both_accepted_by_the_listing(tmp_path, capsys):
    for layout in ("annos", "devkit"):
        make_cars(tmp_path / layout, layout=layout)
        assert "cars196: present" in _run(capsys, "datasets", "--data-root", tmp_path / layout)[1]
