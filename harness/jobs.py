"""Trainings in parallel processes, each on a fixed number of threads, so no figure depends on how many run.

On the CPU a training's arithmetic depends on how many threads split its products (measured: the
same fold on 1 and on 2 threads gives a different validation MAP@R after 60 iterations). So every
training runs on exactly THREADS_PER_TRAINING threads, whether alone in this process (`--jobs 1`) or
in one of N worker processes (`--jobs N`), and the same command and seed give the same table for
any N, on any machine. Side by side, two 1-thread processes do about 1.5x the iterations of one
2-thread process on 2 cores. On a CUDA machine each worker process takes one GPU, round robin.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import multiprocessing
import os
import signal
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["THREADS_PER_TRAINING", "Jobs", "default_jobs", "training_threads"]

THREADS_PER_TRAINING = 1


def default_jobs() -> int:
    """Every GPU this process sees (CUDA_VISIBLE_DEVICES respected) or, without one, every core it may use."""
    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return len(os.sched_getaffinity(0))


@contextmanager
def training_threads() -> Iterator[None]:
    """PyTorch and FAISS on THREADS_PER_TRAINING threads while a training runs in this process."""
    import faiss

    torch_threads, faiss_threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(THREADS_PER_TRAINING)
    faiss.omp_set_num_threads(THREADS_PER_TRAINING)
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)
        faiss.omp_set_num_threads(faiss_threads)


def _start_worker(slots: Any) -> None:
    """A worker process: fixed threads, its own GPU, dies with its parent, leaves Ctrl-C to the parent."""
    import faiss

    torch.set_num_threads(THREADS_PER_TRAINING)
    faiss.omp_set_num_threads(THREADS_PER_TRAINING)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent hears Ctrl-C, queues the work again and ends us
    try:  # Linux: killed with the parent, even by kill -9, instead of training on for nobody
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    with slots.get_lock():
        slot = slots.value
        slots.value += 1
    if torch.cuda.is_available():
        torch.cuda.set_device(slot % torch.cuda.device_count())


class Jobs:
    """Runs trainings: here, one at a time (jobs=1), or in `jobs` spawned worker processes.

    `submit` returns a Future either way (here it is already done), so callers have one code path.
    Leaving the `with` block on an exception (Ctrl-C, SIGTERM, a failed unit) ends the workers at once.
    """

    def __init__(self, jobs: int = 1) -> None:
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, got {jobs}")
        self.jobs = jobs
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def __enter__(self) -> Jobs:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.close(now=error is not None)

    def submit(self, function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if self.jobs == 1:
            future: Future = Future()
            with training_threads():
                try:
                    future.set_result(function(*args, **kwargs))
                except Exception as error:  # KeyboardInterrupt and SystemExit propagate, as without jobs
                    future.set_exception(error)
            return future
        if self._pool is None:
            context = multiprocessing.get_context("spawn")  # a clean interpreter: no inherited threads or locks
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.jobs, mp_context=context, initializer=_start_worker, initargs=(context.Value("i", 0),))
        return self._pool.submit(function, *args, **kwargs)

    def as_completed(self, tasks: Iterable[tuple[Hashable, Callable[..., Any], tuple]]
                     ) -> Iterator[tuple[Hashable, Future]]:
        """(key, finished future) of each (key, function, args) task, as they finish, with at most `jobs`
        running. A task is drawn from `tasks` only when a slot is free, so a caller that stops early (a
        failed fold) never starts the rest, and `tasks` may take its work from a study as it goes."""
        tasks = iter(tasks)
        running: dict[Future, Hashable] = {}
        try:
            while True:
                while len(running) < self.jobs and (task := next(tasks, None)) is not None:
                    key, function, args = task
                    running[self.submit(function, *args)] = key
                if not running:
                    return
                done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: str(running[f])):
                    yield running.pop(future), future
        finally:
            for future in running:
                future.cancel()

    def close(self, *, now: bool = False) -> None:
        """Wait for the workers to finish, or (`now`) cancel what has not started and end them."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if now:
            processes = list(getattr(pool, "_processes", {}).values())  # Python < 3.14 has no terminate_workers
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            for process in processes:
                process.join()
        else:
            pool.shutdown(wait=True)
