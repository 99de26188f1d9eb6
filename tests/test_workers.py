"""Workers sharing one study, and the faults they must survive, with real processes and a real PostgreSQL.

Every test runs `harness` as separate processes (killed with SIGKILL where the test says so); the
PostgreSQL tests use the throwaway server of tests/postgres_server.py, never a mock.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy.exc import OperationalError

from harness.benchmark import loss_section, run_key
from harness.evaluate import units_study_name
from harness.image.data import dataset_version, load_dataset
from harness.protocol import load_protocol
from harness.studies.storage import open_storage
from harness.studies.study import StudyIdentity, join_study

pytestmark = pytest.mark.slow

TINY = Path(__file__).parent / "tiny.toml"
BAD_LOSSES = '''
import torch
from optuna.distributions import FloatDistribution
from losses import declare_loss


def _declared(description):
    return declare_loss(space={"margin": FloatDistribution(0.0, 1.0)}, defaults={"margin": 0.5},
                        description=description, paper="a test's own loss")


class _Base(torch.nn.Module):
    def __init__(self, margin=0.5):
        super().__init__()
        self.margin = margin
        self.scale = torch.nn.Parameter(torch.ones(()))


@_declared("one value per sample, not a scalar")
class PerSample(_Base):
    def forward(self, embeddings, labels):
        return embeddings.pow(2).sum(dim=1) * self.scale


@_declared("raises when the margin is large")
class RaisesWhenLarge(_Base):
    def forward(self, embeddings, labels):
        if self.margin > 0.5:
            raise ValueError(f"margin {self.margin} is too large for this loss")
        return (embeddings.pow(2).sum() * self.scale - len(labels)) ** 2


@_declared("always raises")
class AlwaysRaises(_Base):
    def forward(self, embeddings, labels):
        raise RuntimeError("this loss is broken")


@_declared("finite values, but a NaN gradient on the call before the first validation when the margin is large")
class NaNGradientBeforeValidation(_Base):
    calls = 0

    def forward(self, embeddings, labels):
        self.calls += 1
        value = (embeddings.pow(2).sum() * self.scale - len(labels)) ** 2
        if self.margin > 0.5 and self.calls == 6:  # tiny.toml validates at iteration 6
            # sqrt's derivative at 0 is infinite, times abs's 0 there: NaN, while the value stays finite
            value = value + (embeddings - embeddings.detach()).abs().sqrt().sum()
        return value


TRAININGS = [0]


@_declared("NaN gradients from the fifth training in this process on: the test units of a 1-trial search")
class NaNFromTheFifthTraining(_Base):
    def __init__(self, margin=0.5):
        super().__init__(margin)
        TRAININGS[0] += 1
        self.poisoned = TRAININGS[0] >= 5

    def forward(self, embeddings, labels):
        value = (embeddings.pow(2).sum() * self.scale - len(labels)) ** 2
        return value + (embeddings - embeddings.detach()).abs().sqrt().sum() if self.poisoned else value


@_declared("NaN when the margin is large")
class NaNWhenLarge(_Base):
    def forward(self, embeddings, labels):
        value = (embeddings.pow(2).sum() * self.scale - len(labels)) ** 2
        return value + float("nan") if self.margin > 0.5 else value
'''


@pytest.fixture(scope="module")
def glyphs_root(tmp_path_factory):
    """Glyphs rendered once, so that concurrent workers only read them."""
    root = tmp_path_factory.mktemp("worker-data")
    load_dataset("glyphs", image_size=16, root=root, progress=False)
    return root


@pytest.fixture
def bad_losses(tmp_path):
    path = tmp_path / "badlosses.py"
    path.write_text(BAD_LOSSES)
    return path


def _command(command: str, loss: str, tmp_path: Path, glyphs_root: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", command, "--loss", loss, "--protocol", str(TINY),
            "--data-root", str(glyphs_root), "--results", str(tmp_path / "results"),
            "--reports", str(tmp_path / "reports"), "--no-progress", "--jobs", "1", *extra]  # a later --jobs wins


def _start(command: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def _run(command: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _protocol(trials: int | None = None, reps: int | None = None):
    return load_protocol(TINY).with_overrides(trials=trials, reproductions=reps)


def _wait_for(condition, timeout: float = 300, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if condition():
                return
        except (KeyError, ValueError, OperationalError):  # the study does not exist yet, or is being written
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _records(tmp_path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "results" / "runs").glob("*/record.json"))]


def _key(protocol, loss: str, glyphs_root: Path | None = None, version: str | None = None):
    """The run key a worker of this protocol and loss makes (the dataset version read from glyphs_root)."""
    version = version or dataset_version("glyphs", image_size=16, root=glyphs_root)
    return run_key("glyphs", version, protocol, loss_section(loss))


def _queue_margins(storage_url: str, loss: str, protocol, glyphs_root: Path, margins) -> str:
    """Create the loss's study as a worker would, with these margins queued as its first trials."""
    key = _key(protocol, loss, glyphs_root)
    name = key.study_name
    study = join_study(open_storage(storage_url), name, StudyIdentity(key, protocol), stage="search")
    for margin in margins:
        study.enqueue_trial({"margin": margin})
    return name


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.postgres
def test_three_workers_on_postgres_run_exactly_the_protocols_trials(tmp_path, glyphs_root, postgres_url,
                                                                    postgres_server):
    trials = 4
    command = _command("worker", "batch_hard", tmp_path, glyphs_root, "--trials", str(trials), "--reps", "1",
                       "--storage", postgres_url, "--heartbeat", "1")
    workers = [_start(command, tmp_path) for _ in range(3)]
    ended = [_finish(w) for w in workers]
    assert [code for code, _, _ in ended] == [0, 0, 0], [err for _, _, err in ended]

    protocol = _protocol(trials, 1)
    study = optuna.load_study(study_name=_key(protocol, "batch_hard", glyphs_root).study_name, storage=postgres_url)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == trials and len(study.trials) == trials
    assert len({json.dumps(t.params, sort_keys=True) for t in complete}) == trials  # no parameter set twice
    assert all(f"fold{f}_val_map_at_r" in t.user_attrs for t in complete for f in range(4))
    assert len({t.user_attrs["worker"]["pid"] for t in complete}) >= 2  # the work was shared

    print(f"3 workers: {len(study.trials)} trials asked, {len(complete)} complete, "
          f"{len({json.dumps(t.params, sort_keys=True) for t in complete})} distinct parameter sets, trials per "
          f"worker {sorted(Counter(t.user_attrs['worker']['pid'] for t in complete).values())}")
    (record,) = _records(tmp_path)  # written once, by whichever worker finished last
    assert record["search"]["trials_counted"] == trials and len(record["test"]["reproductions"]) == 1
    assert record["search"]["storage"] == postgres_url.replace(postgres_server.password, "***")
    everything = "".join(out + err for _, out, err in ended) + "".join(
        p.read_text(errors="replace") for p in (tmp_path / "results").rglob("*") if p.suffix in (".json", ".csv"))
    assert postgres_server.password not in everything


@pytest.mark.postgres
def test_a_worker_killed_mid_fold_leaves_its_trial_to_another(tmp_path, glyphs_root, postgres_url):
    trials = 3
    command = _command("worker", "batch_hard", tmp_path, glyphs_root, "--trials", str(trials), "--reps", "1",
                       "--storage", postgres_url, "--heartbeat", "1")
    name = _key(_protocol(trials, 1), "batch_hard", glyphs_root).study_name
    first = _start(command, tmp_path)

    def second_trial_has_a_fold():
        study = optuna.load_study(study_name=name, storage=postgres_url)
        return len(study.trials) >= 2 and "fold0_val_map_at_r" in study.trials[1].user_attrs
    _wait_for(second_trial_has_a_fold, what="trial 1's first fold")
    first.send_signal(signal.SIGKILL)  # in the middle of trial 1's second fold
    first.wait()
    study = optuna.load_study(study_name=name, storage=postgres_url)
    killed = study.trials[1]
    assert study.trials[0].state == TrialState.COMPLETE and killed.state == TrialState.RUNNING

    code, out, err = _finish(_start(command, tmp_path))
    assert code == 0, err
    study = optuna.load_study(study_name=name, storage=postgres_url)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == trials
    assert study.trials[0].state == TrialState.COMPLETE  # nothing finished was lost
    assert study.trials[1].state == TrialState.FAIL  # failed by its stale heartbeat ...
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") == 1)  # ... and run again
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert retry.user_attrs["fold0_val_map_at_r"] == killed.user_attrs["fold0_val_map_at_r"]
    assert len(_records(tmp_path)) == 1
    print(f"killed trial 1 ({killed.params}) after fold 0; trials now {[t.state.name for t in study.trials]}, "
          f"trial {retry.number} retried it and kept fold 0 = {retry.user_attrs['fold0_val_map_at_r']:.4f}")


def _children(pid: int) -> set[int]:
    return {int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()}


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_run_killed_in_the_test_stage_resumes_to_the_same_figures(tmp_path, glyphs_root):
    """One job to a reference; two jobs killed with SIGKILL in the test stage (its trainings die with it),
    then resumed: the same figures. One trial: the search before the test stage is not what is tested."""
    reference_dir, interrupted_dir = tmp_path / "reference", tmp_path / "interrupted"
    for directory in (reference_dir, interrupted_dir):
        directory.mkdir()
    command = _command("benchmark", "batch_hard", reference_dir, glyphs_root, "--trials", "1", "--reps", "3")
    assert _run(command, reference_dir).returncode == 0
    (reference,) = _records(reference_dir)

    command = _command("benchmark", "batch_hard", interrupted_dir, glyphs_root, "--trials", "1", "--reps", "3",
                       "--jobs", "2")
    storage = f"sqlite:///{interrupted_dir / 'results' / 'studies.db'}"
    protocol = _protocol(trials=1, reps=3)
    test_name = units_study_name(_key(protocol, "batch_hard", glyphs_root))
    first = _start(command, interrupted_dir)

    def some_units_done():
        study = optuna.load_study(study_name=test_name, storage=storage)
        return len(study.get_trials(states=(TrialState.COMPLETE,))) >= 3
    _wait_for(some_units_done, what="three test units")
    trainings = _children(first.pid)
    first.send_signal(signal.SIGKILL)
    first.wait()
    _wait_for(lambda: not any(_running(pid) for pid in trainings), timeout=30, what="the trainings to end")
    assert len(trainings) >= 2  # its two job processes (and multiprocessing's resource tracker)
    before = optuna.load_study(study_name=test_name, storage=storage).get_trials(states=(TrialState.COMPLETE,))
    assert 3 <= len(before) < 12 and not _records(interrupted_dir)
    record_command = ["record" if part == "benchmark" else part for part in command]
    unfinished = _run(record_command, interrupted_dir)  # trains nothing, so it cannot write the record yet
    assert unfinished.returncode == 1 and "of 12 test units of batch_hard are done" in _one_line(unfinished.stderr)

    done = _run(command, interrupted_dir)
    assert done.returncode == 0, done.stderr
    (resumed,) = _records(interrupted_dir)
    assert _run(record_command, interrupted_dir).returncode == 0 and len(_records(interrupted_dir)) == 1
    assert resumed["test"] == reference["test"]  # every figure, per fold and concatenated
    assert resumed["search"]["trials"] == [{**t, "worker": r["worker"]} for t, r in
                                           zip(reference["search"]["trials"], resumed["search"]["trials"],
                                               strict=True)]
    units = optuna.load_study(study_name=test_name, storage=storage).get_trials(states=(TrialState.COMPLETE,))
    assert len(units) == 12  # the finished units were kept, not trained again
    assert {t.number for t in before} <= {t.number for t in units}
    print(f"killed (--jobs 2, its {len(trainings)} child processes ended with it) with {len(before)} of 12 test "
          f"units done; resumed to 12, concatenated MAP@R "
          f"{resumed['test']['summary']['concatenated_map_at_r']['mean']:.6f} = uninterrupted "
          f"{reference['test']['summary']['concatenated_map_at_r']['mean']:.6f}")


def test_several_workers_on_a_journal_file_and_a_nan_trial(tmp_path, glyphs_root, bad_losses):
    """Two workers on one machine share a journal file; a trial whose loss is NaN fails alone."""
    loss = f"{bad_losses}:NaNWhenLarge"
    storage_url = f"journal:{tmp_path / 'results' / 'studies.journal'}"
    protocol = _protocol(trials=4, reps=1)
    name = _queue_margins(storage_url, loss, protocol, glyphs_root, (0.9, 0.1, 0.2, 0.3))
    command = _command("worker", loss, tmp_path, glyphs_root, "--trials", "4", "--reps", "1",
                       "--storage", storage_url)
    ended = [_finish(w) for w in [_start(command, tmp_path) for _ in range(2)]]
    assert [code for code, _, _ in ended] == [0, 0], [err for _, _, err in ended]
    study = optuna.load_study(study_name=name, storage=open_storage(storage_url).optuna_storage)
    by_margin = {t.params["margin"]: t for t in study.trials}
    assert len(study.trials) == 4 and by_margin[0.9].state == TrialState.FAIL
    assert "became nan" in by_margin[0.9].user_attrs["fail_reason"]
    assert all(by_margin[m].state == TrialState.COMPLETE for m in (0.1, 0.2, 0.3))
    (record,) = _records(tmp_path)
    assert record["search"]["best_params"]["margin"] in (0.1, 0.2, 0.3)


def test_a_network_made_nan_before_a_validation_step_fails_that_trial_alone(tmp_path, glyphs_root, bad_losses):
    """The issue's case: the loss stays finite, its gradient is NaN on one call, the step after it would make the
    weights NaN right before a validation. That trial fails for good with its reason; the study completes its
    trial count, and the run exits 0 with a record (it used to exit 2 as if the input were bad, and loop)."""
    loss = f"{bad_losses}:NaNGradientBeforeValidation"
    storage_url = f"sqlite:///{tmp_path / 'results' / 'studies.db'}"
    name = _queue_margins(storage_url, loss, _protocol(trials=3, reps=1), glyphs_root, (0.9, 0.1, 0.2))
    done = _run(_command("benchmark", loss, tmp_path, glyphs_root, "--trials", "3", "--reps", "1"), tmp_path)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name=name, storage=storage_url)
    states = {t.params["margin"]: (t.state.name, t.user_attrs.get("fail_reason")) for t in study.trials}
    print("trial states:", states)
    assert states[0.1][0] == states[0.2][0] == "COMPLETE" and states[0.9][0] == "FAIL"
    assert "gave non-finite gradients at iteration 6" in states[0.9][1] and "fold 0" in states[0.9][1]
    (record,) = _records(tmp_path)
    assert record["search"]["trials_counted"] == 3 and record["search"]["best_params"]["margin"] in (0.1, 0.2)
    assert "harness: error" not in done.stderr


def test_a_test_unit_that_goes_non_finite_is_named_and_is_not_bad_input(tmp_path, glyphs_root, bad_losses):
    done = _run(_command("benchmark", f"{bad_losses}:NaNFromTheFifthTraining", tmp_path, glyphs_root,
                         "--trials", "1", "--reps", "1"), tmp_path)
    assert done.returncode == 1, done.stderr
    line = _one_line(done.stderr)
    assert line.startswith("harness: run failed: ") and "test unit (reproduction 0, fold 0) failed" in line, line
    assert "non-finite gradients" in line
    assert not (tmp_path / "results" / "runs").exists()


def test_sqlite_takes_one_worker_and_says_what_to_use(tmp_path, glyphs_root):
    storage = open_storage(f"sqlite:///{tmp_path / 'results' / 'studies.db'}")
    name = _key(_protocol(), "batch_hard", glyphs_root).study_name
    with storage.sole_worker(name):  # as if another benchmark of this loss were running
        done = _run(_command("worker", "batch_hard", tmp_path, glyphs_root), tmp_path)
    assert done.returncode == 2
    line = _one_line(done.stderr)
    assert "SQLite takes one worker at a time" in line and "journal:" in line and "postgresql://" in line


@pytest.mark.postgres
@pytest.mark.parametrize("problem", ["refused credentials", "unreachable"])
def test_a_database_it_cannot_reach_is_one_line_and_nothing_is_written(tmp_path, glyphs_root, postgres_server,
                                                                        postgres_url, problem):
    database = postgres_url.rsplit("/", 1)[1]
    url = (postgres_url.replace(postgres_server.password, "not-the-password") if problem == "refused credentials"
           else f"postgresql://harness:some-password@127.0.0.1:9/{database}")
    done = _run(_command("benchmark", "batch_hard", tmp_path, glyphs_root, "--storage", url), tmp_path)
    assert done.returncode == 2
    line = _one_line(done.stderr)
    assert database in line and "127.0.0.1" in line and "'harness'" in line
    assert "not-the-password" not in done.stderr and "some-password" not in done.stderr
    assert ("authentication failed" if problem == "refused credentials" else "refused") in line
    assert not (tmp_path / "results").exists() and not (tmp_path / "reports").exists()


@pytest.mark.parametrize("difference", ["protocol", "dataset version", "loss identity"])
def test_a_worker_that_differs_from_the_study_is_refused(tmp_path, glyphs_root, difference):
    storage_url = f"journal:{tmp_path / 'results' / 'studies.journal'}"
    protocol = _protocol()
    key = _key(protocol, "batch_hard", glyphs_root)
    name = key.study_name
    if difference == "protocol":  # an unfinished study of the same protocol name with 3 trials
        there = _protocol(trials=3)
        key = _key(there, "batch_hard", glyphs_root)
        name, identity = key.study_name, StudyIdentity(key, there)
    elif difference == "dataset version":
        identity = StudyIdentity(_key(protocol, "batch_hard", version="glyphs-0123456789ab"), protocol)
    else:
        key = dataclasses.replace(key, loss_identity="0" * 64)
        name, identity = key.study_name, StudyIdentity(key, protocol)
    join_study(open_storage(storage_url), name, identity, stage="search")

    done = _run(_command("worker", "batch_hard", tmp_path, glyphs_root, "--storage", storage_url), tmp_path)
    assert done.returncode == 2
    line = _one_line(done.stderr)
    expected = {"protocol": "search.trials = 3 there, 2 here", "dataset version": "glyphs-0123456789ab there",
                "loss identity": "loss identity 000000000000 there"}[difference]
    assert line.startswith("harness: error: refusing to join") and expected in line, line


def test_a_loss_that_returns_a_vector_ends_the_run_in_one_line(tmp_path, glyphs_root, bad_losses):
    done = _run(_command("benchmark", f"{bad_losses}:PerSample", tmp_path, glyphs_root), tmp_path)
    assert done.returncode == 2
    line = _one_line(done.stderr)
    assert f"loss '{bad_losses}:PerSample' returned a tensor of shape (32,)" in line and "scalar" in line


def test_a_loss_that_raises_fails_its_trial_and_the_study_goes_on(tmp_path, glyphs_root, bad_losses):
    loss = f"{bad_losses}:RaisesWhenLarge"
    storage_url = f"sqlite:///{tmp_path / 'results' / 'studies.db'}"
    protocol = _protocol(trials=3, reps=1)
    _queue_margins(storage_url, loss, protocol, glyphs_root, (0.1, 0.8, 0.2))
    done = _run(_command("benchmark", loss, tmp_path, glyphs_root, "--trials", "3", "--reps", "1"), tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" in done.stderr and "ValueError: margin 0.8 is too large for this loss" in done.stderr
    (record,) = _records(tmp_path)
    failed = [t for t in record["search"]["trials"] if t["state"] == "FAIL"]
    assert len(failed) == 1 and failed[0]["params"] == {"margin": 0.8}
    assert failed[0]["fail_error"] == "ValueError: margin 0.8 is too large for this loss"
    assert "fold 0" in failed[0]["fail_reason"] and record["search"]["trials_counted"] == 3


def test_a_loss_whose_every_trial_raises_alike_stops_the_run(tmp_path, glyphs_root, bad_losses):
    done = _run(_command("benchmark", f"{bad_losses}:AlwaysRaises", tmp_path, glyphs_root, "--trials", "5"),
                tmp_path)
    assert done.returncode == 1  # not the input's fault: the loss's own
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("harness: run failed: loss ") and "every trial so far (2) failed with the same error" in line
    assert line.endswith("RuntimeError: this loss is broken")
    assert not (tmp_path / "results" / "runs").exists()


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a read-only and a full file system (CI runs as root)")
@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_a_results_folder_it_cannot_write_is_one_line_and_the_tables_stay(tmp_path, glyphs_root, fault):
    """The baseline's record and tables are written after the loss's; its write fails, the old files stay."""
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    assert _run(_command("benchmark", "batch_hard", tmp_path, glyphs_root, "--storage", storage,
                         "--reps", "1"), tmp_path).returncode == 0
    results, reports = tmp_path / "results", tmp_path / "reports"
    before = {p: p.read_bytes() for p in [*(results / "leaderboard").glob("*"), *reports.rglob("*")] if p.is_file()}
    target = results / "runs" if fault == "read-only" else results / "leaderboard"
    saved = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}
    try:
        if fault == "read-only":
            _mount("--bind", str(target), str(target))
            _mount("-o", "remount,bind,ro", str(target))
        else:  # a 256 KiB file system holding the old tables, filled to the last byte
            _mount("-t", "tmpfs", "-o", "size=256k", "tmpfs", str(target))
            for file_name, content in saved.items():
                (target / file_name).write_bytes(content)
            try:
                with open(target / "filler", "wb") as handle:
                    while True:
                        handle.write(b"\0" * 1024)
                        handle.flush()
            except OSError:  # full
                pass
        done = _run(_command("benchmark", "none", tmp_path, glyphs_root, "--storage", storage, "--reps", "1"),
                    tmp_path)
        after = {p: p.read_bytes() for p in before}
    finally:
        subprocess.run(["umount", str(target)], capture_output=True)  # a mount that failed leaves nothing to undo
    assert done.returncode == 2
    line = _one_line(done.stderr)
    reason = "Read-only file system" if fault == "read-only" else "No space left on device"
    assert line.startswith("harness: error: cannot write ") and reason in line, line
    assert after == before  # the previous leaderboard CSV and report are untouched
