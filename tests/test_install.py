"""The installed package: build the wheel, install it into a fresh venv, run a benchmark elsewhere.

The wheel is built from a copy of the repository's tracked files (so the working tree gets no
`build/` or `*.egg-info`), installed without its dependencies into a new venv that borrows them
from the running environment through a `.pth` line, and run from a directory that is neither the
repository nor the venv. The package must find its protocols and reference figures as package
data, write `results/`, `reports/` and `datasets/` under the current directory, and never write
inside itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TINY_PROTOCOL = Path(__file__).parent / "tiny.toml"
TIMEOUT = 600  # seconds for any one command; the benchmark renders glyphs and trains a few folds

WHEEL_MUST_HOLD = ("harness/protocols/quick.toml", "harness/protocols/reality_check.toml",
                   "harness/protocols/smoke.toml", "harness/reference/reality_check_2020.csv",
                   "losses/__init__.py", "harness/cli.py")
WHEEL_MUST_NOT_HOLD = ("tests/", "results/", "datasets/", "reports/", "benchmarks/", "examples/")
# what setuptools leaves behind in the tree it builds from
BUILD_DROPPINGS = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache",
                   "results", "reports", "datasets")


def _run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, (f"{' '.join(map(str, command))} (in {cwd}) exited {done.returncode}\n"
                                  f"--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}")
    return done


def _base_python() -> Path:
    """The interpreter the running environment was made from, so the new venv matches it."""
    base = getattr(sys, "_base_executable", None)
    if base and Path(base).exists() and Path(base).resolve() != Path(sys.executable).resolve():
        return Path(base)
    config = Path(sys.prefix) / "pyvenv.cfg"
    if config.exists():
        settings = dict(line.split("=", 1) for line in config.read_text().splitlines() if "=" in line)
        settings = {k.strip(): v.strip() for k, v in settings.items()}
        if settings.get("executable") and Path(settings["executable"]).exists():
            return Path(settings["executable"])
        if settings.get("home"):
            for name in (f"python{sys.version_info.major}.{sys.version_info.minor}",
                         f"python{sys.version_info.major}", "python"):
                if (Path(settings["home"]) / name).exists():
                    return Path(settings["home"]) / name
    return Path(base or sys.executable)


def _dependency_dirs() -> list[str]:
    """The running environment's site-packages: where the new venv finds torch and the rest."""
    dirs = [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return list(dict.fromkeys(d for d in dirs if Path(d).is_dir()))


def _copy_tracked_files(destination: Path) -> None:
    """The repository as git knows it (working-tree contents), without build droppings or outputs."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, timeout=60)
    except OSError:
        listed = None
    if listed is not None and listed.returncode == 0 and listed.stdout:
        for name in listed.stdout.decode().split("\0"):
            source = REPO / name
            if name and source.is_file():  # a tracked file deleted in the working tree is skipped
                (destination / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination / name)
    else:  # not a git checkout (an sdist, say): the tree without what a build or a run leaves
        shutil.copytree(REPO, destination, ignore=shutil.ignore_patterns(*BUILD_DROPPINGS), dirs_exist_ok=True)


def _snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under root, bytecode caches aside."""
    files = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if "__pycache__" in relative.parts or not path.is_file():
            continue
        files[relative.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def _changes(before: dict[str, str], after: dict[str, str]) -> dict[str, list[str]]:
    return {"added": sorted(after.keys() - before.keys()), "removed": sorted(before.keys() - after.keys()),
            "modified": sorted(k for k in before.keys() & after.keys() if before[k] != after[k])}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel of the repository, built offline from a copy of its tracked files."""
    try:
        import venv  # noqa: F401
    except ImportError:
        pytest.skip("the venv module is unavailable")
    pip = subprocess.run([sys.executable, "-m", "pip", "wheel", "--help"], capture_output=True, timeout=120)
    if pip.returncode != 0:
        pytest.skip(f"`pip wheel` is unavailable: {pip.stderr.decode(errors='replace').strip()[-300:]}")
    source = tmp_path_factory.mktemp("source")
    _copy_tracked_files(source)
    out = tmp_path_factory.mktemp("wheelhouse")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", out, source], cwd=source, env=env)
    wheels = sorted(out.glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel, got {[w.name for w in wheels]}"
    return wheels[0]


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict:
    """A new venv with the wheel installed (no dependencies) and the running environment's appended."""
    base = _base_python()
    probe = subprocess.run([str(base), "-c", "import venv, ensurepip"], capture_output=True, timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"{base} cannot make a venv with pip: {probe.stderr.decode(errors='replace').strip()[-300:]}")
    prefix = tmp_path_factory.mktemp("venv") / "env"
    outside = tmp_path_factory.mktemp("outside")  # never the repository: '' on sys.path must not find it
    _run([base, "-m", "venv", prefix], cwd=outside)
    python, bindir = prefix / "bin" / "python", prefix / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
           and not k.startswith("PIP_")}
    env.update(VIRTUAL_ENV=str(prefix), PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}", HF_HUB_OFFLINE="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PIP_NO_INDEX="1")
    # installed before the dependencies are appended: pip must not see the running environment's
    # (editable) dml-harness and call the wheel "already installed"
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], cwd=outside, env=env)
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=outside, env=env).stdout.strip())
    assert (purelib / "harness" / "cli.py").is_file() and (purelib / "losses" / "__init__.py").is_file()
    (purelib / "_dml_harness_test_dependencies.pth").write_text("".join(f"{d}\n" for d in _dependency_dirs()))
    return {"prefix": prefix, "python": python, "harness": bindir / "harness", "purelib": purelib, "env": env,
            "outside": outside}


def test_wheel_holds_the_packages_and_their_data_and_nothing_else(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    missing = [name for name in WHEEL_MUST_HOLD if name not in names]
    assert not missing, f"{wheel.name} lacks {missing}"
    stray = sorted(name for name in names if name.startswith(WHEEL_MUST_NOT_HOLD))
    assert not stray, f"{wheel.name} holds files that are not the package: {stray[:20]}"
    # every shipped protocol and reference file in the repository is in the wheel
    data = [p.relative_to(REPO).as_posix() for pattern in ("harness/protocols/*.toml", "harness/reference/*.csv",
                                                           "harness/reference/*.md") for p in REPO.glob(pattern)]
    assert data and not [name for name in data if name not in names], f"package data missing: {data}"
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    with zipfile.ZipFile(wheel) as archive:
        assert "harness = harness.cli:main" in archive.read(entry_points).decode()


def test_installed_package_runs_from_any_directory_and_writes_nothing_inside_itself(installed, tmp_path):
    python, harness, purelib, env = installed["python"], installed["harness"], installed["purelib"], installed["env"]
    work = tmp_path / "work"
    work.mkdir()
    # the installed wheel, not the repository nor the running environment's editable install
    where = _run([python, "-c", "import harness, losses, torch; print(harness.__file__); print(losses.__file__)"],
                 cwd=work, env=env).stdout.split()
    for path in where:
        assert Path(path).resolve().is_relative_to(purelib.resolve()), f"imported {path}, not the wheel in {purelib}"

    before = _snapshot(installed["prefix"])
    protocol = work / "tiny.toml"
    shutil.copy(TINY_PROTOCOL, protocol)

    help_text = _run([harness, "--help"], cwd=work, env=env).stdout
    assert "benchmark" in help_text and "quick" in help_text and "batch_hard" in help_text
    names = _run([harness, "losses", "--names"], cwd=work, env=env).stdout.split()
    assert "batch_hard" in names
    _run([harness, "datasets", "--data-root", tmp_path / "elsewhere"], cwd=work, env=env)
    out = _run([harness, "benchmark", "--loss", "batch_hard", "--protocol", protocol, "--no-progress"],
               cwd=work, env=env).stdout
    assert "batch_hard" in out

    (record_path,) = (work / "results" / "runs").glob("*/record.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "complete" and record["loss"]["name"] == "batch_hard"
    assert list((work / "results" / "leaderboard").glob("*.csv")), "no leaderboard CSV in ./results/leaderboard"
    assert list((work / "reports").glob("*.md")), "no report in ./reports"
    assert (work / "datasets" / "glyphs").is_dir(), "the glyphs were not rendered into ./datasets/glyphs"

    after = _snapshot(installed["prefix"])
    changes = _changes(before, after)
    package_dirs = tuple(f"{(purelib / name).relative_to(installed['prefix']).as_posix()}/"
                         for name in ("harness", "losses"))
    in_package = {kind: [p for p in paths if p.startswith(package_dirs)] for kind, paths in changes.items()}
    assert not any(in_package.values()), f"the run wrote inside the installed package: {in_package}"
    assert not any(changes.values()), f"the run wrote inside the venv: {changes}"
