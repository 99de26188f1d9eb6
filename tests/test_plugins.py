"""A researcher's own loss: by file path, by module path, by entry point; the README example end to end."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import losses
from losses import LossError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "my_loss.py"
SPEC = "examples/my_loss.py:CosineContrastiveLoss"


def _package(tmp_path: Path) -> Path:
    """my_pkg/my_module.py holding the example loss, importable from tmp_path."""
    (tmp_path / "my_pkg").mkdir()
    (tmp_path / "my_pkg" / "__init__.py").write_text("")
    shutil.copy(EXAMPLE, tmp_path / "my_pkg" / "my_module.py")
    return tmp_path


def test_readme_shows_the_example_file_verbatim():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Benchmark your own loss"):]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert block == EXAMPLE.read_text()
    assert f"make benchmark LOSS={SPEC}" in section


def test_file_path_loss_builds_and_declares_its_space(monkeypatch):
    monkeypatch.chdir(REPO)
    info = losses.info(SPEC)
    assert info.name == SPEC and set(info.space) == {"neg_margin"}
    module = losses.build(SPEC, embedding_dim=8, num_classes=4, neg_margin=0.1)
    embeddings = torch.nn.functional.normalize(torch.randn(8, 8), dim=1).requires_grad_()
    value = module(embeddings, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    value.backward()
    assert torch.isfinite(value) and embeddings.grad.abs().sum() > 0
    assert len(losses.identity(SPEC)) == 64
    # the same checks as the zoo
    with pytest.raises(LossError, match="no hyperparameter margin; accepted: neg_margin"):
        losses.build(SPEC, embedding_dim=8, num_classes=4, margin=0.1)
    with pytest.raises(LossError, match=r"neg_margin=5.0 is out of range; expected \[-0.5, 0.9\]"):
        losses.build(SPEC, embedding_dim=8, num_classes=4, neg_margin=5.0)


def test_module_path_loss(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(_package(tmp_path)))
    info = losses.info("my_pkg.my_module:CosineContrastiveLoss")
    assert info.cls.__name__ == "CosineContrastiveLoss" and info.defaults == {"neg_margin": 0.3}


def test_entry_point_loss(tmp_path, monkeypatch):
    root = _package(tmp_path)
    dist = root / "my_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[dml_harness.losses]\ncosine_contrastive = my_pkg.my_module:CosineContrastiveLoss\n")
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    assert "cosine_contrastive" in losses.available()
    assert losses.info("cosine_contrastive").name == "cosine_contrastive"
    assert losses.search_space("cosine_contrastive").keys() == {"neg_margin"}


def test_bad_plugin_specs_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(_package(tmp_path)))
    (tmp_path / "undeclared.py").write_text("import torch\nclass Plain(torch.nn.Module):\n    pass\n")
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    cases = {
        "no_such_module:X": "cannot import module 'no_such_module'",
        f"{tmp_path}/missing.py:X": "file not found",
        "my_pkg.my_module:Nope": "has no class Nope; declared losses there: CosineContrastiveLoss",
        f"{tmp_path}/undeclared.py:Plain": "declares no search space; decorate the class with @losses.declare_loss",
        f"{tmp_path}/broken.py:X": "failed to import: RuntimeError: boom",
        "nosuchloss": "unknown loss 'nosuchloss'; known losses: .*batch_hard.*import path",
    }
    for spec, message in cases.items():
        with pytest.raises(LossError, match=message):
            losses.info(spec)


@pytest.mark.slow
def test_readme_example_runs_end_to_end_and_a_changed_loss_gets_its_own_row(tmp_path):
    """The README's command on the tiny protocol, then again after editing the loss's file."""
    work = tmp_path / "work"
    (work / "examples").mkdir(parents=True)
    shutil.copy(EXAMPLE, work / "examples" / "my_loss.py")
    results, reports = tmp_path / "results", tmp_path / "reports"

    def benchmark():
        command = [str(Path(sys.executable).parent / "harness"), "benchmark", "--loss", SPEC,
                   "--protocol", str(REPO / "tests" / "tiny.toml"), "--results", str(results),
                   "--reports", str(reports), "--data-root", str(tmp_path / "data"), "--no-progress"]
        done = subprocess.run(command, cwd=work, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = benchmark()
    assert SPEC in out and "neg_margin=" in out
    with (work / "examples" / "my_loss.py").open("a") as handle:
        handle.write("\n# edited: a comment is not code, so the row stands as it is\n")
    benchmark()
    (csv,) = (results / "leaderboard").glob("*.csv")
    assert len(pd.read_csv(csv)) == 1
    with (work / "examples" / "my_loss.py").open("a") as handle:
        handle.write("\nEDITED = True  # a changed loss must not replace the old row\n")
    benchmark()
    table = pd.read_csv(csv)
    assert list(table["loss"]) == [SPEC, SPEC]
    assert table["loss_class"].str.endswith(":CosineContrastiveLoss").all()
    assert table["loss_identity"].nunique() == 2 and table["current"].tolist() == [True, False]
    studies = {json.loads((results / "runs" / run / "record.json").read_text())["search"]["study"]
               for run in table["run_id"]}
    assert len(studies) == 2  # the edited loss ran a study of its own, not the old one's
