"""Where studies live: the three Optuna storages, their locks, and URLs safe to print.

- `sqlite:///path/studies.db` (the default, results/studies.db): one worker at a time.
- `journal:path/studies.journal`: Optuna's journal file, for several workers on one machine.
- `postgresql://user@host[:port]/db` (or `mysql://...`): Optuna's RDB storage, for workers on many machines,
  with heartbeats so that a killed worker's trial is failed and queued again.

Every storage also gives a lock that serialises the moment a worker takes work from a study (so the
protocol's trial count is never exceeded, however many processes join) and a way to find the trials
whose worker died. A URL is only ever shown with its password removed.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import os
import re
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from harness.errors import HarnessError
from harness.redact import redact

__all__ = ["Storage", "open_storage", "redact", "retry_callback", "worker_identity", "WORKER", "MULTI_WORKER_HINT"]

JOURNAL_PREFIX = "journal:"
MULTI_WORKER_HINT = ("for several workers on one machine use --storage journal:results/studies.journal, "
                     "across machines --storage postgresql://USER@HOST/DATABASE")
WORKER = "worker"  # user attribute: host and pid of the process running the trial


def worker_identity() -> dict:
    """Which process runs a trial: lets a worker on the same machine tell a dead one from a live one."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def retry_callback():
    """Optuna's callback that queues a failed stale trial again with its params and attributes (the
    folds it had finished). Renamed in Optuna 4.9; the older name serves the rest of the pinned range."""
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(max_retry=None)


@dataclass
class Storage:
    """An opened Optuna storage and what the harness needs beside it."""

    url: str  # as given (may hold a password: never print it, use `shown`)
    kind: str  # "sqlite", "journal" or "rdb"
    optuna_storage: optuna.storages.BaseStorage
    lock_path: Path | None = None  # file storages: the lock file beside the study file
    heartbeat_seconds: int | None = None

    @property
    def shown(self) -> str:
        return redact(self.url)

    @property
    def poll_seconds(self) -> float:
        """How often an idle worker looks again for work: a local file is cheap to read, a server less so."""
        return 0.5 if self.kind != "rdb" else float(min(2, self.heartbeat_seconds or 2))

    @property
    def several_workers(self) -> bool:
        return self.kind != "sqlite"

    @contextmanager
    def lock(self, study_name: str) -> Iterator[None]:
        """Held while a worker looks at a study and takes work from it: one process at a time."""
        if self.lock_path is not None:
            with _file_lock(self.lock_path, blocking=True):
                yield
            return
        engine = self.optuna_storage.engine
        key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)
        from sqlalchemy import text

        if engine.dialect.name == "postgresql":
            take, give, argument = "SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)", {"key": key}
        elif engine.dialect.name in ("mysql", "mariadb"):
            take, give = "SELECT GET_LOCK(:name, -1)", "SELECT RELEASE_LOCK(:name)"
            argument = {"name": f"harness-{key & 0xFFFFFFFFFFFF:x}"}
        else:
            raise HarnessError(f"storage {self.shown}: several workers need PostgreSQL or MySQL, "
                               f"not {engine.dialect.name}")
        # a session lock on a connection of its own: the server drops it if this process dies
        with engine.connect() as connection:
            connection.execute(text(take), argument)
            try:
                yield
            finally:
                connection.execute(text(give), argument)
                connection.commit()

    @contextmanager
    def sole_worker(self, study_name: str) -> Iterator[None]:
        """SQLite holds one worker per study: a second process is refused with what to use instead."""
        if self.kind != "sqlite":
            yield
            return
        digest = hashlib.sha256(study_name.encode()).hexdigest()[:16]
        path = self.lock_path.with_name(f"{self.lock_path.name}.{digest}.worker")
        try:
            with _file_lock(path, blocking=False):
                yield
        except BlockingIOError:
            raise HarnessError(f"another process is already working on study {study_name} in {self.shown}, "
                               f"and SQLite takes one worker at a time; {MULTI_WORKER_HINT}") from None

    def recover_dead_trials(self, study: optuna.Study) -> list[int]:
        """Fail the running trials whose worker is gone and queue them again (call under `lock`).

        PostgreSQL/MySQL: Optuna's heartbeat (a trial silent for the grace period is stale). Journal: a
        running trial of this machine whose process no longer exists. SQLite: the one worker allowed
        holds the study, so every running trial it finds was left by a process that died.
        """
        if self.kind == "rdb":
            before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
            return sorted(before - after)
        me = worker_identity()
        dead = []
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = trial.user_attrs.get(WORKER, {})
            if self.kind == "journal" and (worker.get("host") != me["host"] or _alive(worker.get("pid", -1))):
                continue
            if worker.get("pid") == me["pid"] and worker.get("host") == me["host"]:
                continue  # our own, being run right now
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            failed = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
            if failed.state == TrialState.FAIL:
                retry_callback()(study, failed)
                dead.append(trial.number)
        return dead

    def first_beat(self, trial_id: int) -> None:
        if self.kind == "rdb" and self.heartbeat_seconds:
            self.optuna_storage.record_heartbeat(trial_id)

    @contextmanager
    def heartbeat(self, trial_id: int) -> Iterator[None]:
        """Record the running trial's heartbeat in the background (RDB storages; a no-op elsewhere)."""
        if self.kind != "rdb" or not self.heartbeat_seconds:
            yield
            return
        stop = threading.Event()

        def beat() -> None:
            while True:
                try:
                    self.optuna_storage.record_heartbeat(trial_id)
                except Exception:  # a dropped connection: the next beat retries; the grace period covers it
                    pass
                if stop.wait(self.heartbeat_seconds):
                    return

        thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


@contextmanager
def _file_lock(path: Path, *, blocking: bool) -> Iterator[None]:
    """An advisory lock on `path` (created if absent); the kernel releases it when the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_file(path: Path) -> Path:
    """The harness's lock beside a study file (not `<file>.lock`: Optuna's journal lock is that file)."""
    return path.with_name(path.name + ".harness-lock")


def _rdb_error(url: str, error: Exception) -> HarnessError:
    """One line naming host, database and user (never the password) and the server's reason."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    if parsed.password:
        reason = reason.replace(str(parsed.password), "***")
    where = f"{parsed.host or 'localhost'}{f':{parsed.port}' if parsed.port else ''}"
    return HarnessError(f"cannot open the study database '{parsed.database}' on {where} as user "
                        f"'{parsed.username}': {redact(reason)}")


def open_storage(url: str, *, heartbeat_seconds: int = 60) -> Storage:
    """Open (creating where needed) the storage a URL names; a bad URL or an unreachable server is one line."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX):].removeprefix("//")).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = optuna.storages.journal.JournalFileBackend(
            str(path), lock_obj=optuna.storages.journal.JournalFileOpenLock(str(path)))
        return Storage(url, "journal", optuna.storages.JournalStorage(backend), lock_path=_lock_file(path))
    if url.startswith("sqlite:"):
        match = re.match(r"sqlite:///(.+)", url)
        if not match or match[1].startswith(":memory:"):
            raise HarnessError(f"storage {url}: give a file, sqlite:///path/to/studies.db")
        path = Path(match[1]).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
        except Exception as error:
            raise HarnessError(f"cannot open the study file {path}: {error}") from None
        return Storage(url, "sqlite", storage, lock_path=_lock_file(path))
    if "://" not in url:
        raise HarnessError(f"storage {redact(url)} is not a URL: use sqlite:///path/studies.db (one worker), "
                           "journal:path/studies.journal (several on one machine) or postgresql://USER@HOST/DATABASE")
    heartbeat = {"heartbeat_interval": heartbeat_seconds, "grace_period": 3 * heartbeat_seconds}
    parameters = inspect.signature(optuna.storages.RDBStorage).parameters
    callback_argument = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in parameters
                         else "failed_trial_callback")
    engine_kwargs = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    from sqlalchemy.exc import OperationalError

    for attempt in range(4):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat,
                                                     **{callback_argument: retry_callback()})
            return Storage(url, "rdb", storage, heartbeat_seconds=heartbeat_seconds)
        except ImportError as error:
            raise HarnessError(f"storage {redact(url)}: its database driver is not installed ({error})") from None
        except OperationalError as error:  # unreachable, refused credentials, no such database
            raise _rdb_error(url, error) from None
        except Exception as error:  # workers starting at once race to create Optuna's tables: try again
            if attempt == 3:
                raise _rdb_error(url, error) from None
            time.sleep(1 + attempt)
    raise AssertionError("unreachable")
