"""The whole benchmark, end to end, on generated copies of every layout a researcher may have on disk: listed,
decoded into the image cache, split, searched, tested, recorded and tabled. In-Shop is scored query against
gallery. Three of them also go through the README's own command, `make benchmark ... PROTOCOL=smoke`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
from dataset_fixtures import make_cars, make_csv_set, make_cub, make_image_folder, make_inshop, make_sop

from harness.benchmark import run_benchmark
from harness.protocol import load_protocol
from harness.records import load_record

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

LAYOUTS = {
    "cub200": lambda root: ("cub200", make_cub(root)),
    "cub200-contents-only": lambda root: ("cub200", make_cub(root, with_top_folder=False)),
    "cars196-annos": lambda root: ("cars196", make_cars(root, layout="annos")),
    "cars196-devkit": lambda root: ("cars196", make_cars(root, layout="devkit")),
    "sop": lambda root: ("sop", make_sop(root)),
    "inshop-eval": lambda root: ("inshop", make_inshop(root, eval_dir=True)),
    "inshop-top-Img": lambda root: ("inshop", make_inshop(root, eval_dir=False, img_under_Img=True)),
    "image-folder": lambda root: (str(make_image_folder(root / "own")), None),
    "csv": lambda root: (str(make_csv_set(root / "own")), None),
}


# Through make: a registered dataset, In-Shop (scored query against gallery) and a researcher's own set, on the
# smoke protocol (about 45 s each). Every layout, these too, also runs the whole benchmark in-process on a
# test-sized protocol with the same image pipeline (a few seconds each).
THROUGH_MAKE = ["cub200", "inshop-eval", "csv"]
TINY_IMAGES = Path(__file__).parent / "tiny_images.toml"


def _check_run(results: Path, reports: Path, data_root: Path, dataset: str, protocol: str, backbone: str) -> None:
    """The record, table and report of one batch_hard run of `dataset` on the generated copy under data_root."""
    (record_path,) = results.glob("runs/*/record.json")
    record = load_record(record_path)
    assert record.status == "complete" and record.protocol["name"] == protocol
    assert record.protocol["model"]["backbone"] == backbone
    data = record.dataset
    assert data["official"] is False  # a small copy, or a researcher's own set
    if dataset.startswith("/"):
        assert data["warning"] is None and data["name"] == Path(dataset).stem  # no official counts to differ from
    else:
        assert data["name"] == dataset and "the official release" in data["warning"]
    assert data["version"].startswith(data["name"] + "-")
    assert len(record.search["trials"]) == 1 and len(record.test["reproductions"]) == 1
    if dataset == "inshop":
        # the search saw only the 24 train items; the test half is the 12 query/gallery items
        assert (data["trainval_classes"], data["test_classes"]) == (24, 12)
        assert data["test_items"] == 12 * 4
    else:
        assert data["trainval_classes"] == data["num_classes"] // 2
    for mode in ("separated", "concatenated"):
        assert 0 <= record.test["summary"][f"{mode}_map_at_r"]["mean"] <= 1

    (table_path,) = results.glob("leaderboard/*.csv")
    # not the official copy: its rows get a table of their own, named by the data version
    assert f"__{protocol}__" in table_path.name and "__data-" in table_path.name
    table = pd.read_csv(table_path)
    assert list(table["loss"]) == ["batch_hard"] and table.loc[0, "dataset_version"] == data["version"]
    assert (reports / table_path.with_suffix(".md").name).is_file()
    assert list((data_root / ".cache" / "images").glob("*-72px/COMPLETE"))  # decoded once, at 72 px


@pytest.mark.parametrize("layout", THROUGH_MAKE)
def test_smoke_benchmark_through_make(tmp_path, layout):
    data_root = tmp_path / "data"
    dataset, _ = LAYOUTS[layout](data_root)
    results, reports = tmp_path / "results", tmp_path / "reports"
    run = subprocess.run(["make", "--no-print-directory", "benchmark", "LOSS=batch_hard", f"DATASET={dataset}",
                          "PROTOCOL=smoke", f"DATA_ROOT={data_root}", f"RESULTS={results}", f"REPORTS={reports}"],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "| batch_hard |" in run.stdout  # the table the command prints
    _check_run(results, reports, data_root, dataset, "smoke", "bn_inception")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_runs_the_whole_benchmark(tmp_path, layout):
    data_root = tmp_path / "data"
    dataset, _ = LAYOUTS[layout](data_root)
    results, reports = tmp_path / "results", tmp_path / "reports"
    run_benchmark(loss_name="batch_hard", dataset=dataset, protocol=load_protocol(TINY_IMAGES),
                  results_dir=results, reports_dir=reports, data_root=data_root, progress=False)
    _check_run(results, reports, data_root, dataset, "tiny_images", "test_efficientnet")
