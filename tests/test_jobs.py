"""Trainings side by side: fixed threads per training, the same figures for any --jobs, early stops, ends."""

from __future__ import annotations

import os
import socket
import time

import optuna
import pytest
import torch
from optuna.trial import TrialState

from harness.benchmark import run_benchmark
from harness.errors import LossRaised
from harness.jobs import THREADS_PER_TRAINING, Jobs, default_jobs
from harness.studies.storage import WORKER, open_storage


def _threads_and_pid() -> tuple[int, int]:
    return torch.get_num_threads(), os.getpid()


def _fails(number: int) -> int:
    if number == 1:
        raise LossRaised(f"task {number} failed", "ValueError: task failed")
    return number


def _sleeps(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_a_training_here_runs_on_the_fixed_threads_and_gives_them_back():
    before = torch.get_num_threads()
    with Jobs(1) as jobs:
        threads, pid = jobs.submit(_threads_and_pid).result()
    assert (threads, pid) == (THREADS_PER_TRAINING, os.getpid())
    assert torch.get_num_threads() == before


@pytest.mark.slow
def test_worker_processes_run_on_the_fixed_threads_and_keep_the_error_of_a_failed_task():
    with Jobs(2) as jobs:
        results = dict(jobs.as_completed((n, _threads_and_pid, ()) for n in range(4)))
        failed = jobs.submit(_fails, 1).exception()
    assert {future.result()[0] for future in results.values()} == {THREADS_PER_TRAINING}
    assert os.getpid() not in {future.result()[1] for future in results.values()}
    assert isinstance(failed, LossRaised) and failed.error == "ValueError: task failed"


def test_stopping_early_starts_no_further_task():
    started = []

    def tasks():
        for number in range(4):
            started.append(number)
            yield number, _fails, (number,)

    with Jobs(1) as jobs:
        with pytest.raises(LossRaised):
            for _, future in jobs.as_completed(tasks()):
                future.result()
    assert started == [0, 1]


@pytest.mark.slow
def test_leaving_on_an_error_ends_the_workers_at_once():
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with Jobs(2) as jobs:
            jobs.submit(_sleeps, 60)
            time.sleep(3)  # the workers have started the task
            processes = list(jobs._pool._processes.values())
            raise KeyboardInterrupt
    assert time.monotonic() - start < 30
    assert processes and not any(process.is_alive() for process in processes)


def test_jobs_must_be_positive_and_default_to_the_cores_here():
    with pytest.raises(ValueError, match="at least 1"):
        Jobs(0)
    assert default_jobs() == (torch.cuda.device_count() if torch.cuda.is_available()
                              else len(os.sched_getaffinity(0)))


def test_a_journal_worker_recovers_the_trials_of_a_dead_process_on_this_machine_only(tmp_path):
    storage = open_storage(f"journal:{tmp_path / 'studies.journal'}")
    study = optuna.create_study(study_name="s", storage=storage.optuna_storage)
    dead, alive, elsewhere = study.ask(), study.ask(), study.ask()
    host = socket.gethostname()
    finished = os.fork()
    if finished == 0:
        os._exit(0)
    os.waitpid(finished, 0)  # a pid that surely no longer runs
    dead.set_user_attr(WORKER, {"host": host, "pid": finished})
    alive.set_user_attr(WORKER, {"host": host, "pid": os.getppid()})
    elsewhere.set_user_attr(WORKER, {"host": "another-machine", "pid": finished})

    assert storage.recover_dead_trials(study) == [dead.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states[dead.number] == TrialState.FAIL and states[alive.number] == TrialState.RUNNING
    assert states[elsewhere.number] == TrialState.RUNNING
    assert study.get_trials()[-1].state == TrialState.WAITING  # queued again


@pytest.mark.slow
def test_the_same_figures_for_any_number_of_jobs(tmp_path, tiny_protocol, data_root):
    """The promise of --jobs: one table, whatever N (folds and test units side by side, fixed threads)."""
    records = {jobs: run_benchmark(loss_name="batch_hard", dataset="glyphs", protocol=tiny_protocol,
                                   results_dir=tmp_path / f"jobs{jobs}", reports_dir=tmp_path / f"reports{jobs}",
                                   data_root=data_root, progress=False, jobs=jobs)[0] for jobs in (1, 3)}
    one, three = records[1], records[3]
    assert one.test == three.test  # every fold's figures, separated and concatenated
    assert [{**t, "worker": None} for t in one.search["trials"]] == [
        {**t, "worker": None} for t in three.search["trials"]]
    assert (one.environment["jobs"], three.environment["jobs"]) == (1, 3)
    assert one.environment["threads_per_training"] == THREADS_PER_TRAINING
    print(f"--jobs 1 and --jobs 3: concatenated MAP@R {one.test['summary']['concatenated_map_at_r']['mean']:.6f}"
          f" and {three.test['summary']['concatenated_map_at_r']['mean']:.6f}")
