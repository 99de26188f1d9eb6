"""A loss's identity covers the code it runs: its module and the modules it imports from its own package."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

import losses
from losses.identity import CodeScope, code_identity

LOSSES = Path(losses.__file__).parent
FAMILIES = ("infonce", "pair", "proxy", "softmax", "triplet")


@pytest.fixture()
def zoo_copy(tmp_path) -> Path:
    """A copy of the losses package to edit (the identities of the copy are the real ones until edited)."""
    shutil.copytree(LOSSES, tmp_path / "losses", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _identities(root: Path) -> dict[str, str]:
    scope = CodeScope(root, "losses")
    return {family: code_identity(f"losses.{family}", root / "losses" / f"{family}.py", scope)
            for family in FAMILIES}


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_the_copy_has_the_identities_of_the_real_losses(zoo_copy):
    assert _identities(zoo_copy) == {family: losses.identity(name) for family, name in (
        ("infonce", "supcon"), ("pair", "contrastive"), ("proxy", "proxy_nca"), ("softmax", "arcface"),
        ("triplet", "batch_hard"))}
    assert losses.identity("batch_hard") == losses.identity("batch_all")  # one module, one identity


def test_a_changed_shared_helper_changes_every_loss_that_imports_it_and_no_other(zoo_copy):
    before = _identities(zoo_copy)
    _edit(zoo_copy / "losses" / "common.py", "return same & ~eye, ~same", "return same & ~eye, ~same & ~eye")
    after = _identities(zoo_copy)
    changed = {family for family in FAMILIES if after[family] != before[family]}
    assert changed == {"infonce", "pair", "triplet"}  # the families that import losses.common; not proxy, softmax


def test_comments_and_docstrings_change_no_identity(zoo_copy):
    before = _identities(zoo_copy)
    common = zoo_copy / "losses" / "common.py"
    _edit(common, '"""(positive, negative) boolean [B, B]', '"""Reworded: (positive, negative) boolean [B, B]')
    _edit(common, "    same = labels[:, None] == labels[None, :]\n",
          "    # a comment that was not there\n    same = labels[:, None] == labels[None, :]  # and one more\n")
    _edit(zoo_copy / "losses" / "triplet.py", '"""Batch triplet losses', '"""Triplet losses of the batch')
    assert _identities(zoo_copy) == before


def test_the_registry_is_not_part_of_a_loss_identity(zoo_copy):
    """The registry checks and builds losses but computes no loss value (as for plug-ins, which import it
    from outside their own package)."""
    before = _identities(zoo_copy)
    _edit(zoo_copy / "losses" / "registry.py", "RESERVED_NAMES = frozenset({\"none\"})",
          "RESERVED_NAMES = frozenset({\"none\", \"all\"})")
    assert _identities(zoo_copy) == before


def _plugin_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "my_helpers.py").write_text("def scale(x):\n    return 2.0 * x\n")
    (folder / "my_plugin_loss.py").write_text(textwrap.dedent('''\
        import torch
        from my_helpers import scale

        from losses import declare_loss


        @declare_loss(space={}, defaults={}, description="made up", paper="none")
        class Scaled(torch.nn.Module):
            def forward(self, embeddings, labels):
                return scale(embeddings).pow(2).mean()
        '''))
    return folder


def test_a_file_plugin_whose_helper_module_changes_gets_a_new_identity(tmp_path):
    folder = _plugin_folder(tmp_path)
    spec = f"{folder / 'my_plugin_loss.py'}:Scaled"
    first = losses.identity(spec)
    (folder / "my_helpers.py").write_text("# a comment\ndef scale(x):\n    return 2.0 * x  # same code\n")
    assert losses.identity(spec) == first
    (folder / "my_helpers.py").write_text("def scale(x):\n    return 3.0 * x\n")
    second = losses.identity(spec)
    assert second != first
    (folder / "unrelated.py").write_text("X = 1\n")  # a module it does not import: no part of it
    assert losses.identity(spec) == second


def test_a_package_plugin_covers_its_relative_imports(tmp_path, monkeypatch):
    package = tmp_path / "site" / "their_pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "numerics.py").write_text("EPS = 1e-6\n")
    (package / "loss.py").write_text(textwrap.dedent('''\
        import torch

        from losses import declare_loss

        from .sub import numerics


        @declare_loss(space={}, defaults={}, description="made up", paper="none")
        class Theirs(torch.nn.Module):
            def forward(self, embeddings, labels):
                return embeddings.pow(2).mean() + numerics.EPS
        '''))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = "their_pkg.loss:Theirs"
    first = losses.identity(spec)
    (package / "sub" / "numerics.py").write_text("EPS = 1e-7\n")
    assert losses.identity(spec) != first
